# Shoal's one task runner. `make demo` and `make test` set everything up from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install services test-services images service-image wasm-runtime demo stop test lint typecheck unit faults reliability fuzz bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

services:
	bash scripts/ensure-rabbitmq.sh
	bash scripts/ensure-docker.sh

test-services: services
	bash scripts/ensure-postgres.sh

images: services
	bash runtime-images/build.sh

service-image: install services
	bash deploy/build.sh

# Compiles the python runtime for wasm once per node (minutes), ahead of the first such job.
wasm-runtime: install
	$(BIN)/python -m shoal.executor.engines.wasm.modules

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not rabbitmq and not docker"

test: install test-services images service-image wasm-runtime lint typecheck
	$(BIN)/pytest

demo: install services images
	bash scripts/demo.sh

stop:
	@for f in .demo/*.pid; do \
		[ -f "$$f" ] || continue; \
		pid=$$(cat "$$f"); \
		kill "$$pid" 2>/dev/null && echo "stopped $$(basename "$$f" .pid) (pid $$pid)"; \
		rm -f "$$f"; \
	done

# The fault suite alone (SHOAL_FAULTS=long for the long version; `make test` runs the short one).
faults: install test-services images
	$(BIN)/pytest -m faults tests/faults

# Runs the long fault suite (and the fuzzers, when present) and writes RELIABILITY.md.
reliability: install test-services images
	$(BIN)/python scripts/reliability.py

# The fuzz tier (tests/fuzz) with many more cases than make test runs; no services needed.
fuzz: install
	SHOAL_FUZZ_PROFILE=thorough $(BIN)/pytest tests/fuzz --timeout=3600

bench: install services images
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

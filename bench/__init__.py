"""Benchmarks: each module prints one Markdown section; ``python -m bench.run`` runs all."""

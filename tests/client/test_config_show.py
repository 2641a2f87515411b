"""``shoal config show``: effective settings, their sources, secrets masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shoal.client.config_command import masked

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
default_profile = "home"

[profiles.home]
broker_url = "amqp://alice:hunter2@home:5672/"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment (no SHOAL_* of the test's own) with a config file."""
    (tmp_path / "shoal").mkdir()
    (tmp_path / "shoal" / "config.toml").write_text(CONFIG)
    kept = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOAL_")}
    return {**kept, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path)}


def shoal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal.client.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings(env: dict[str, str], *args: str) -> dict[str, dict[str, Any]]:
    done = shoal(env, *args, "--output-format", "json")
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout
    assert "s3cret" not in done.stdout
    return {s["variable"]: s for s in json.loads(done.stdout)["settings"]}


def test_client_settings_name_the_profile_and_the_environment(
    env: dict[str, str], tmp_path: Path
) -> None:
    found = settings({**env, "SHOAL_RPC_TIMEOUT": "3"}, "config", "show")
    broker = found["SHOAL_BROKER_URL"]
    assert broker["value"] == "amqp://alice:***@home:5672/"
    assert broker["source"] == f"profile 'home' in {tmp_path / 'shoal' / 'config.toml'}"
    assert found["SHOAL_RPC_TIMEOUT"] == {
        "setting": "rpc_timeout",
        "variable": "SHOAL_RPC_TIMEOUT",
        "value": 3.0,
        "source": "environment (SHOAL_RPC_TIMEOUT)",
    }
    assert found["SHOAL_CONNECT_TIMEOUT"]["source"] == "default"


def test_requester_settings_mask_every_password(env: dict[str, str]) -> None:
    variables = {
        "SHOAL_DATABASE_URL": "postgresql+asyncpg://shoal:s3cret@db/shoal",
        "SHOAL_SUBMIT_PREFETCH": "64",
    }
    found = settings(
        {**env, **variables}, "--broker", "amqp://req:s3cret@rabbit/", "config", "show", "requester"
    )
    assert found["SHOAL_BROKER_URL"]["value"] == "amqp://req:***@rabbit/"
    assert found["SHOAL_BROKER_URL"]["source"] == "--broker"
    assert found["SHOAL_DATABASE_URL"]["value"] == "postgresql+asyncpg://shoal:***@db/shoal"
    assert found["SHOAL_SUBMIT_PREFETCH"]["value"] == 64
    assert found["SHOAL_SUBMIT_PREFETCH"]["source"] == "environment (SHOAL_SUBMIT_PREFETCH)"
    assert found["SHOAL_HEARTBEAT_EVERY"] == {
        "setting": "heartbeat_every",
        "variable": "SHOAL_HEARTBEAT_EVERY",
        "value": 10.0,
        "source": "default",
    }


def test_executor_settings_as_a_table(env: dict[str, str]) -> None:
    variables = {
        "SHOAL_SLOTS": "3",
        "SHOAL_UPSTREAM_PROXY": "http://p:s3cret@proxy:3128",
        "SHOAL_PULL_POLICY": "if-missing",
    }
    done = shoal({**env, **variables}, "config", "show", "executor")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert rows["VARIABLE"] == ["VALUE", "SOURCE"]
    assert rows["SHOAL_SLOTS"] == ["3", "environment", "(SHOAL_SLOTS)"]
    assert rows["SHOAL_UPSTREAM_PROXY"][0] == "http://p:***@proxy:3128"
    assert rows["SHOAL_TMP_SIZE"] == ["512Mi", "default"]
    assert rows["SHOAL_PULL_POLICY"] == ["if-missing", "environment", "(SHOAL_PULL_POLICY)"]
    assert rows["SHOAL_BROKER_URL"][0] == "amqp://alice:***@home:5672/"
    assert "s3cret" not in done.stdout


def test_a_bad_value_names_its_variable(env: dict[str, str]) -> None:
    done = shoal({**env, "SHOAL_SLOTS": "many"}, "config", "show", "executor")
    assert done.returncode == 2
    assert done.stderr.startswith("UsageError: SHOAL_SLOTS: ")


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("broker_url", "amqp://u:p@h/", "amqp://u:***@h/"),
        ("broker_url", "amqp://h/", "amqp://h/"),
        ("broker_url", "amqp://only-user@h/", "amqp://only-user@h/"),
        (
            "broker_url",
            ",".join(f"amqp://shoal-executor:pw@r{n}:5672/" for n in (1, 2, 3)),
            ",".join(f"amqp://shoal-executor:***@r{n}:5672/" for n in (1, 2, 3)),
        ),
        ("broker_url", "amqp://e@r1/,amqp://e:pw1@r2/", "amqp://e@r1/,amqp://e:***@r2/"),
        ("broker_url", "amqp://e:a,b@r1/, amqps://e:c@r2/", "amqp://e:***@r1/,amqps://e:***@r2/"),
        ("api_token", "abc", "***"),
        ("api_token", "", ""),
        ("registry_password", "pw", "***"),
        ("allowed_images", ["a:*", "b"], ["a:*", "b"]),
        ("slots", 3, 3),
    ],
)
def test_masked(name: str, value: Any, shown: Any) -> None:
    assert masked(name, value) == shown


@pytest.mark.parametrize("text", ["user@example.com", "python:3.12@sha256:ab", "a:b@c d"])
def test_what_is_not_a_url_is_kept(text: str) -> None:
    assert masked("allowed_images", text) == text


def test_a_list_of_broker_urls_shows_each_masked(env: dict[str, str]) -> None:
    listed = "amqp://shoal-executor:hunter2@r1:5672/,amqp://shoal-executor:hunter2@r2:5672/"
    found = settings({**env, "SHOAL_BROKER_URL": listed}, "config", "show", "executor")
    assert found["SHOAL_BROKER_URL"]["value"] == listed.replace("hunter2", "***")

"""The README's reference and the services' ``--help`` say what the code does: every
setting with its default, the job states, the CLI's and the launcher's exit codes."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.client.settings import ClientSettings
from shoal.client.settings_help import settings_rows
from shoal.executor.settings import DockerEngineSettings, ExecutorSettings
from shoal.model import JobState
from shoal.requester.settings import RequesterSettings
from shoal.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
REFERENCE = README[README.index("## Reference") :]


def test_the_settings_tables_are_generated_from_the_classes() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/settings-reference.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_cli_setting_is_in_the_reference() -> None:
    for field in dataclasses.fields(ClientSettings):
        assert f"| `SHOAL_{field.name.upper()}` |" in REFERENCE


@pytest.mark.parametrize(
    ("service", "settings_class"),
    [("requester", RequesterSettings), ("executor", ExecutorSettings)],
)
def test_serve_help_lists_every_setting_with_its_default(
    service: str, settings_class: type[RequesterSettings | ExecutorSettings]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shoal.client.main", "serve", service, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    shown = "".join(done.stdout.split())  # help wraps lines anywhere, even in a path

    def squeezed(text: str) -> str:
        return "".join(text.split())

    for env, text in settings_rows(settings_class):
        assert squeezed(f"{env} {text}") in shown
    if service == "requester":
        assert squeezed("SHOAL_LIST_LIMIT Jobs `job list` shows by default [default: 50]") in shown
    else:
        assert (
            squeezed(
                "SHOAL_DEFAULT_MEMORY Memory a job gets when it does not ask (--memory) "
                "[default: 512Mi]"
            )
            in shown
        )
        docker = shown.split(squeezed("Settings, Docker engine only (environment variables):"))
        assert squeezed("SHOAL_TMP_SIZE Size of the /tmp tmpfs") in docker[1]


def _settings_classes(root: type[CommonSettings]) -> list[type[CommonSettings]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_settings_classes(sub))
    return found


@pytest.mark.parametrize(
    "settings_class", _settings_classes(CommonSettings), ids=lambda c: c.__name__
)
def test_every_setting_has_a_description(settings_class: type[CommonSettings]) -> None:
    missing = [
        f"SHOAL_{name.upper()}"
        for name, field in settings_class.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_the_docker_engine_settings_have_their_own_table() -> None:
    general, docker = README.split("Executor, Docker engine only")
    general = general.split("Executor (`shoal serve executor`), every engine:")[1]
    docker = docker.split("<!-- settings end -->")[0]
    for name in DockerEngineSettings.model_fields:
        assert f"| `SHOAL_{name.upper()}` |" in docker
        assert f"`SHOAL_{name.upper()}`" not in general
    assert "| `SHOAL_SLOTS` |" in general


def test_every_job_state_is_explained() -> None:
    listed = re.findall(r"^\| `(\w+)` \| ", REFERENCE.split("### Job IDs")[0], re.MULTILINE)
    assert sorted(listed) == sorted(state.value for state in JobState)


def test_every_exit_code_of_the_cli_is_in_the_reference() -> None:
    sources = ["shoal/errors.py", "shoal/outcomes.py", "client/failures.py"]
    codes = {
        int(code)
        for source in sources
        for code in re.findall(r"^EXIT_\w+ = (\d+)$", (ROOT / source).read_text(), re.MULTILINE)
    }
    table = REFERENCE.split("### Exit codes of `shoal`")[1].split("###")[0]
    listed = {int(code) for code in re.findall(r"^\| `(\d+)` \|", table, re.MULTILINE)}
    assert codes <= listed, codes - listed
    assert "(#exit-codes-of-shoal)" in README.split("## Reference")[0]


def test_the_launchers_exit_codes_are_the_ones_listed() -> None:
    launcher = (ROOT / "runtime-images" / "python" / "launcher.py").read_text()
    codes = {int(code) for code in re.findall(r"^EXIT_\w+ = (\d+)$", launcher, re.MULTILINE)}
    section = REFERENCE.split("### Exit codes of the python runtime image's launcher")[1]
    table = section.split("###")[0]
    assert {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)} == codes

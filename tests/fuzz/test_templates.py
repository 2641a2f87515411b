"""Template variables (``--key=value``) through the client's rendering: the job carries each
value verbatim, or the command line is refused with a ``UsageError`` — never template
injection, broken JSON or a crash.

Values include quotes, braces, Jinja syntax, newlines, NUL, any unicode, and lone surrogates
(what Python makes of argv bytes that are not UTF-8).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.client.prepare import ExecOptions, prepare_job, split_argv
from shoal.errors import TemplateError, UsageError
from shoal.model import Job
from shoal.wire import Submission, decode, encode
from tests.fuzz.profiles import fuzz

PROBE = """{#- every kind of place a value can go -#}
{
  "name": {{ name }},
  "labels": {"value": {{ value }}, "joined": {{ value ~ other }}, "text": {{ value | string }}},
  "tasks": [{
    "engine": {"type": "docker", "params": {"image": "alpine", "parameters": {{ arguments }}}},
    "env": {"OTHER": {{ other }}}
  }]
}
"""

hostile = st.sampled_from(
    ["{{ 7 * 7 }}", "{% for x in range(9) %}", "{#", "#}", "}}", '"}, "x": "', "\\", '\\"',
     "\n", "\r\n", "\x00", "\u2028", "é", "\U0001f600", "\udcff", "${HOME}", "'", "{{", ""]
)  # fmt: skip
values = st.one_of(
    hostile,
    st.lists(hostile, max_size=4).map("".join),
    st.text(alphabet=st.characters(codec=None), max_size=16),  # surrogates included
)
words = st.text(alphabet=st.characters(codec=None), max_size=8)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("templates")
    (folder / "probe.tpl").write_text(PROBE, encoding="utf-8")
    return folder


def _utf8(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sent(job: Job) -> Job:
    """The job as the requester would read it from the submission."""
    return decode(encode(Submission(job=job)), Submission).job


@fuzz(weight=2)
@given(
    value=values,
    other=values,
    arguments=st.lists(words.filter(lambda w: w == "-" or not w.startswith("-")), max_size=3),
)
def test_values_are_carried_verbatim(
    probe_dir: Path, value: str, other: str, arguments: list[str]
) -> None:
    before = ["probe", f"--value={value}", f"--other={other}", *arguments]
    job_type, args, variables = split_argv(before, [])
    assert variables == {"value": value, "other": other}
    options = ExecOptions(job_type=job_type, arguments=args, variables=variables)
    if not _utf8(value, other, *arguments):
        with pytest.raises(UsageError, match="not UTF-8"):
            prepare_job(options, [probe_dir])
        return
    job = _sent(prepare_job(options, [probe_dir]))
    assert job.labels == {"value": value, "joined": value + other, "text": value}
    assert job.task.env == {"OTHER": other}
    assert job.task.engine.params["parameters"] == arguments


@fuzz()
@given(version=values, arguments=st.lists(words, max_size=3), after=st.lists(words, max_size=3))
def test_the_python_template_keeps_version_and_argv(
    version: str, arguments: list[str], after: list[str]
) -> None:
    job_type, args, variables = split_argv(["python", f"--version={version}"], [*arguments])
    options = ExecOptions(job_type=job_type, arguments=[*args, *after], variables=variables)
    if not _utf8(version, *arguments, *after):
        with pytest.raises(UsageError, match="not UTF-8"):
            prepare_job(options)
        return
    job = _sent(prepare_job(options))
    assert job.task.engine.params["version"] == version
    assert job.task.engine.params["arguments"] == [*arguments, *after]


@fuzz()
@given(
    key=st.one_of(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
        st.sampled_from(["name", "command", "arguments"]),  # set by shoal exec itself
    ),
    value=values,
)
def test_an_option_the_template_does_not_take_is_refused(key: str, value: str) -> None:
    job_type, args, variables = split_argv(["duckdb", f"--{key}={value}"], [])
    with pytest.raises(UsageError) as refused:
        prepare_job(ExecOptions(job_type=job_type, arguments=args, variables=variables))
    assert isinstance(refused.value, TemplateError) or not _utf8(value)
    assert "\n" not in str(refused.value)

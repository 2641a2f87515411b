"""Every way a CLI command can fail, as one line ``Type: message`` on stderr and an exit code.

- A ``ShoalError``: its class name and message; its ``exit_code`` (``shoal.errors``).
- click's own usage errors (no such command or option, a missing argument, a bad value):
  ``UsageError``, exit 2, with click's message in Shoal's style.
- Ctrl-C: ``Interrupted``, exit 130 (128 + SIGINT, as shells report it).
- Standard output closed by its reader (``shoal job list | head -1``): no line, exit 141
  (128 + SIGPIPE, what a shell reports for a program that the closed pipe stopped).
- An ``OSError`` no command turned into a ``ShoalError`` (a full disk, a file that cannot be
  written): ``OSError``, exit 74 (``EX_IOERR``).
- Anything else is a bug in Shoal: ``InternalError`` naming the exception, exit 70
  (``EX_SOFTWARE``).

``SHOAL_DEBUG=1`` prints the traceback of any error but click's before its line.

A message never spans lines: newlines and runs of spaces in it become one space.
"""

from __future__ import annotations

import os
import re
import sys

import click

from shoal.errors import EXIT_USAGE, ShoalError

EXIT_IO = 74
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141
DEBUG_VARIABLE = "SHOAL_DEBUG"

_SPACES = re.compile(r"\s+")


def one_line(text: str) -> str:
    """``text`` on one line."""
    return _SPACES.sub(" ", text).strip()


def usage_message(error: click.ClickException) -> str:
    """click's message in Shoal's style, pointing at the command's ``--help`` when it has no
    suggestion of its own: ``no such command 'lsit' — did you mean 'list'?``."""
    message = one_line(error.format_message()).rstrip(".")
    message = message[:1].lower() + message[1:]
    message = message.replace(". Did you mean", " — did you mean").replace(
        " (Did you mean one of:", " — did you mean one of:"
    )
    message = message.removesuffix(")") if "did you mean one of:" in message else message
    ctx = getattr(error, "ctx", None)
    if "did you mean" not in message and isinstance(ctx, click.Context):
        message += f" (see '{ctx.command_path} --help')"
    return message


def debugging() -> bool:
    """Whether ``SHOAL_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def report(error: BaseException) -> int:
    """Print ``error`` as one line on stderr and return its exit code."""
    if isinstance(error, BrokenPipeError):
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    if isinstance(error, ShoalError):
        line, code = f"{type(error).__name__}: {one_line(error.message)}", error.exit_code
    elif isinstance(error, click.ClickException):
        line, code = f"UsageError: {usage_message(error)}", EXIT_USAGE
    elif isinstance(error, click.Abort | KeyboardInterrupt):
        line, code = "Interrupted: stopped before the command finished", EXIT_INTERRUPTED
    elif isinstance(error, OSError):
        line, code = f"OSError: {one_line(_os_message(error))}", EXIT_IO
    else:
        detail = one_line(str(error)) or "no message"
        line = (
            f"InternalError: {type(error).__name__}: {detail} "
            f"(a bug in shoal; {DEBUG_VARIABLE}=1 shows the traceback)"
        )
        code = EXIT_INTERNAL
    if debugging() and not isinstance(error, click.ClickException):
        import traceback

        traceback.print_exception(error)
    click.echo(line, err=True)
    return code


def _silence_stdout() -> None:
    """Point standard output at ``/dev/null``: its reader is gone, and flushing what is
    still buffered at exit must not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout: nothing left to flush into a pipe
        pass
    finally:
        os.close(devnull)


def _os_message(error: OSError) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    return f"{reason}: {error.filename}" if error.filename else reason

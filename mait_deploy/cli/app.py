"""The typer app, its error handling and the small parsers every command shares."""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, Callable

import typer
from rich.console import Console
from rich.text import Text

from mait_deploy._deps import as_missing_dependency
from mait_deploy._interrupts import (
    interrupt_requested,
    raise_if_interrupted,
    remember_interrupts,
)
from mait_deploy._runtime_logs import quiet_third_party
from mait_deploy.errors import MaitDeployError, UnsupportedOption, printable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Take MaiT image transformers to embedded devices: export, compile, run, profile.")
# Off a terminal (pipes, CI logs) rich would fold tables to 80 columns; give them room instead.
# markup=False everywhere: file names, labels and error messages are the user's text and may contain "[...]".
console = Console(width=None if sys.stdout.isatty() else 160, markup=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160, markup=False)


_state = {"debug": False}


def print_error(message: str) -> None:
    """One line on stderr, the message printed as it is (no markup; control characters escaped, so a name quoted in
    it cannot add a line)."""
    err_console.print(Text.assemble(("error: ", "bold red"), printable(message)), highlight=False, soft_wrap=True)


def fail_with_report(report: Any, message: str, code: int = 1) -> typer.Exit:
    """--json and a failure after the work was done: one JSON document on stdout (the report, with the error and
    exit code in it), one error line on stderr. Returns the Exit to raise."""
    print_error(message)
    payload = dict(report) if isinstance(report, dict) else {"results": report}
    print_json({**payload, "error": printable(message), "exit_code": code})
    return typer.Exit(code=code)


def usage_error(message: str, code: int, as_json: bool) -> int:
    """A usage error click found (unknown option, bad value): one line, and the JSON object under --json."""
    line = " ".join(message.split())
    print_error(line)
    if as_json:
        print_json({"error": printable(line), "exit_code": code})
    return code


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("mait-deploy")
        except PackageNotFoundError:  # a checkout on sys.path, not installed
            text = "unknown (not installed)"
        console.print(f"mait-deploy {text}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
         version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                      help="Print mait-deploy's version and exit."),
         verbose: bool = typer.Option(False, "--verbose", help="Let the converters and runtimes print their own "
                                                               "logs (silenced by default).")) -> None:
    _state["debug"] = debug
    if not verbose:
        quiet_third_party()


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print a MaitDeployError as one line and exit non-zero (a traceback only with --debug); exit 130 on Ctrl-C."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json") is True  # --json: the error is a JSON object on stdout too

        def fail(message: str, code: int) -> typer.Exit:
            print_error(message)
            if as_json:
                print_json({"error": printable(message), "exit_code": code})
            return typer.Exit(code=code)

        try:
            with remember_interrupts():
                try:
                    result = func(*args, **kwargs)
                except BaseException as err:
                    # A Ctrl-C a library turned into its own error (torch.onnx: "export failed") is an interrupt.
                    if interrupt_requested() and not isinstance(err, KeyboardInterrupt) and not _state["debug"]:
                        raise KeyboardInterrupt from err
                    raise
                raise_if_interrupted()  # one a library swallowed outright
                return result
        except MaitDeployError as err:
            if _state["debug"]:
                raise
            raise fail(str(err), err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print(Text.assemble(("interrupted", "bold red"), " (no partial output was left behind)"))
            if as_json:
                print_json({"error": "interrupted", "exit_code": 130})
            raise typer.Exit(code=130) from None
        except ImportError as err:  # a plain import of an optional tool this install lacks (e.g. torch)
            missing = as_missing_dependency(err)
            if missing is None or _state["debug"]:
                raise
            raise fail(str(missing), missing.exit_code) from None
        except OSError as err:  # a full disk, a read-only folder...: the atomic writers already cleaned up
            if _state["debug"]:
                raise
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            raise fail(f"{err.strerror or err}{where}", 1) from None
        except (typer.Exit, SystemExit):
            raise
        except MemoryError:
            if _state["debug"]:
                raise
            raise fail("out of memory (the input asks for more than this device has)", 1) from None
        except Exception as err:  # noqa: BLE001  a library's own error type: still one line, never a traceback
            if _state["debug"]:
                raise
            text = " ".join(str(err).split()) or repr(err)
            raise fail(f"{type(err).__name__}: {text[:300]} (--debug shows where)", 1) from None

    return wrapper


def parse_key_values(pairs: list[str], flag: str = "-O") -> dict[str, Any]:
    """KEY=VALUE strings -> dict; values are JSON when they parse (true, 3, 0.5), else plain strings. A key given
    twice is an error (which one was meant?), never the last one silently."""

    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UnsupportedOption(f"{flag}: expected KEY=VALUE, got {pair!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if key in result:
            raise UnsupportedOption(f"{flag} {key} is given twice ({result[key]!r} and {parsed!r}); give it once")
        result[key] = parsed
    return result


def parse_batch(text: str | None) -> int | str | None:
    """--batch: None, 'dynamic' or a positive integer."""

    if text is None or text == "dynamic":
        return text
    try:
        return int(text)
    except ValueError:
        raise UnsupportedOption(f"--batch takes a positive integer or 'dynamic', got {text!r}") from None


def default_of(cls: Any, name: str) -> Any:
    """A field's default in an options dataclass: the CLI states no default of its own. Tuples are given as the
    comma list the option parses."""
    import dataclasses

    field = cls.__dataclass_fields__[name]
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


class _StepLines:
    """Progress off a terminal (a pipe, a CI log): one line per step on stderr with the seconds since the start,
    where a spinner would print nothing."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._last = ""

    def __enter__(self) -> "_StepLines":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, message: str) -> None:
        if message != self._last:
            self._last = message
            err_console.print(f"[{time.perf_counter() - self._started:6.1f} s] {message}", highlight=False,
                              soft_wrap=True)


def status_spinner() -> Any:
    """Progress for long steps on stderr (stdout stays clean for --json): a spinner on a terminal, a line per step
    elsewhere. Use its ``update(message)``."""
    if err_console.is_terminal:
        return err_console.status("working", spinner="dots")
    return _StepLines()

"""The ``mait-deploy`` command. Each command is a few lines over one public library function; a backend may add
its own commands (``Backend.cli``)."""

from mait_deploy import backends

# isort: off
from mait_deploy.cli import host_commands, compare_commands, device_commands, remote_commands  # noqa: F401  (they register their commands, in help order)
# isort: on
from mait_deploy.cli.app import app, usage_error

backends.register_cli(app)


def main() -> None:
    """The console script: the app, with click's usage errors (an unknown option, a bad value) as one line and
    exit 2, and under --json a JSON error object too, like every other error."""
    import sys

    try:  # typer >= 0.20 carries its own click
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exceptions

    try:
        code = app(prog_name="mait-deploy", standalone_mode=False)
    except KeyboardInterrupt:  # Ctrl-C while click was still parsing
        code = 130
    except click_exceptions.ClickException as err:
        code = usage_error(err.format_message(), err.exit_code, as_json="--json" in sys.argv[1:])
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]

"""The ``mait-deploy`` command. Each command is a few lines over one public library function; a backend may add
its own commands (``Backend.cli``)."""

from mait_deploy import backends

# isort: off
from mait_deploy.cli import host_commands, compare_commands, device_commands, remote_commands  # noqa: F401  (they register their commands, in help order)
# isort: on
from mait_deploy.cli.app import app

backends.register_cli(app)

__all__ = ["app"]

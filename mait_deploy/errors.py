"""Errors raised to users. Every message is meant to be printed on one line by the CLI."""

from __future__ import annotations


class MaitDeployError(Exception):
    """Base class: the CLI prints ``str(error)`` on one line and exits non-zero."""

    exit_code = 1


class MissingDependency(MaitDeployError):
    """An optional dependency is not installed; names the pip extra that brings it."""

    def __init__(self, module: str, extra: str, detail: str = "") -> None:
        self.module = module
        self.extra = extra
        hint = f"pip install 'mait-deploy[{extra}]'"
        message = f"'{module}' is not installed; install the '{extra}' extra: {hint}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class CheckpointError(MaitDeployError):
    """A checkpoint is missing, corrupt, unsafe or does not match its config."""


class ConfigError(MaitDeployError):
    """A model or mask configuration is invalid."""


class ExportError(MaitDeployError):
    """The export to ONNX (or a later conversion) failed."""


class ValidationError(MaitDeployError):
    """A produced artifact does not compute what the reference computes."""


class UnsupportedOption(MaitDeployError):
    """An option that the chosen target or command cannot honour."""

    exit_code = 2


class DataError(MaitDeployError):
    """Calibration or evaluation data cannot be used."""


class BundleError(MaitDeployError):
    """A bundle is missing, incomplete, tampered with or from an unknown schema."""


class RemoteError(MaitDeployError):
    """An inventory, an SSH connection or a step on a remote board failed."""

"""Errors raised to users. Every message is meant to be printed on one line by the CLI."""

from __future__ import annotations

import re


class MaitDeployError(Exception):
    """Base class: the CLI prints ``str(error)`` on one line and exits non-zero."""

    exit_code = 1


def install_hint(extra: str) -> str:
    """How to install an extra: mait-deploy is installed from its checkout or a wheel built from it (it is not on
    PyPI; docs/usage.md)."""
    return (f"pip install \".[{extra}]\" in a mait-deploy checkout, "
            f"or \"mait_deploy-<version>-py3-none-any.whl[{extra}]\"")


class MissingDependency(MaitDeployError):
    """An optional dependency is not installed; names the pip extra that brings it, or, for a module no extra can
    bring (``hint``: e.g. TensorRT, which comes with the device's SDK), where it comes from."""

    def __init__(self, module: str, extra: str, detail: str = "", hint: str | None = None) -> None:
        self.module = module
        self.extra = extra
        message = f"'{module}' is not installed; " + (hint or f"install the '{extra}' extra: {install_hint(extra)}")
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


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")


def printable(text: str) -> str:
    """User text (a label, a file name, a message quoting them) safe on one output line and in JSON: control
    characters, backslashes and the bytes of a non-UTF-8 file name (surrogate escapes) become \\xNN, so no name
    can forge an output line. The native runner's mait::printable does the same."""
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00 if 0xDC80 <= code <= 0xDCFF else code:02x}" if code < 0xD800 or code >= 0xDC80 \
            else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(escape, text)


def shorten(text: str, limit: int = 60) -> str:
    """``text``, cut to ``limit`` characters with "..." when longer: a user's value quoted in a one-line error
    (a 10,000-character label or a YAML bomb's expansion must not become the line)."""
    return text if len(text) <= limit else text[:limit] + "..."


_ERROR_LINE = re.compile(r"^(Fatal Python error: .+|ERROR: .+|[\w.]*(?:Error|Exception|Interrupt|Exit)\b.*)$")


def failure_line(stderr: str, default: str = "no message") -> str:
    """The line of a failed child process's stderr that says why: its last exception line (a traceback's last
    line, "Fatal Python error: ...", pip's "ERROR: ..."), else its last non-blank line."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    reasons = [line for line in lines if _ERROR_LINE.match(line)]
    return ((reasons or lines or [default])[-1])[:300]

"""Import optional heavy dependencies on demand, with a one-line error naming the extra.

Nothing here ever installs a package.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from mait_deploy.errors import MissingDependency


def require(module: str, extra: str, hint: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the pip extra to install (or, with ``hint``,
    where a module no extra brings comes from)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        # A module that is present but fails to import (e.g. a binary built for another numpy)
        # is reported with its own reason so the user is not told to install what they have.
        missing = getattr(err, "name", None)
        top = module.split(".")[0]
        if missing is not None and missing.split(".")[0] == top:
            raise MissingDependency(module, extra, hint=hint) from err
        raise MissingDependency(module, extra, detail=f"import failed: {err}", hint=hint) from err


def is_available(module: str) -> bool:
    """True when ``module`` is installed. Found, not imported: torch, nncf and litert_torch take seconds to import,
    and listing what a host can build must not (a module that is present but broken fails, with its reason, where
    it is used: ``require``)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of pip distributions by name ("not installed" for a missing one), for reports."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def extra_for(module: str) -> str | None:
    """The pip extra that brings an optional top-level module, read from this package's own metadata (the
    extras in pyproject.toml): the smallest extra listing a distribution of that name, None if none does."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        requirements = requires("mait-deploy") or []
    except PackageNotFoundError:
        return None
    by_extra: dict[str, set[str]] = {}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.\-]+).*extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        if match:
            by_extra.setdefault(match.group(2), set()).add(match.group(1).lower().replace("-", "_"))
    candidates = [extra for extra, names in by_extra.items() if module.lower() in names]
    return min(candidates, key=lambda extra: (len(by_extra[extra]), extra)) if candidates else None


def as_missing_dependency(err: ImportError) -> MissingDependency | None:
    """The one-line error for an optional module that a plain ``import`` found missing (None: not one of ours)."""
    name = (getattr(err, "name", None) or "").split(".")[0]
    extra = extra_for(name) if name else None
    return MissingDependency(name, extra) if extra else None

"""Import optional heavy dependencies on demand, with a one-line error naming the extra.

Nothing here ever installs a package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mait_deploy.errors import MissingDependency


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        # A module that is present but fails to import (e.g. a binary built for another numpy)
        # is reported with its own reason so the user is not told to install what they have.
        missing = getattr(err, "name", None)
        top = module.split(".")[0]
        if missing is not None and missing.split(".")[0] == top:
            raise MissingDependency(module, extra) from err
        raise MissingDependency(module, extra, detail=f"import failed: {err}") from err


def is_available(module: str) -> bool:
    """True when ``module`` can be imported (it is imported to find out)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


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

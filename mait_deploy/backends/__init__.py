"""The backend registry: one line per backend, everything else derived from it.

A backend is a folder here: ``__init__.py`` declares a :class:`Backend` (cheap to import: names and strings only),
``target.py`` builds bundles on the host (may import torch, onnx, converters) and ``runner.py`` runs them on the
device (numpy + its one runtime). The CLI's choices, deploy's availability table, report lines and plot colours
all come from these declarations; no other module names a backend. This module imports neither the host side nor
the device side: ``host.catalog`` loads a backend's target, ``device.runner.runner_class`` its runner.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mait_deploy._deps import is_available
from mait_deploy.errors import MissingDependency, UnsupportedOption, install_hint


@dataclass(frozen=True)
class HostSide:
    """What the host needs to build a backend's bundles and score them at the gate."""

    extra: str  # the pip extra that brings it
    modules: tuple[str, ...]  # importable modules the host needs to build (and gate) a bundle
    # The runner that scores the artifact at the accuracy gate when the host cannot run this backend's own (a
    # registry name; "" means this backend's own runner).
    gate_runtime: str = ""


@dataclass(frozen=True)
class DeviceSide:
    """What a device needs to run a backend's bundles from Python."""

    extra: str  # the pip extra a device installs (written to manifest.runtime.extra)
    module: str = ""  # what the device runner imports (`remote setup` checks it imports on a board)
    system_runtime: bool = False  # the runtime comes with the board's OS (a board venv then sees system packages)
    # Requirements a device installs without their dependencies (`remote setup` adds them with --no-deps): a wheel
    # that is the runtime's C/C++ SDK, whose Python side (and what it depends on) the device never imports.
    sdk_wheels: tuple[str, ...] = ()
    # The device runs the bundles through the native runner's library (the runtime's Python package needs torch):
    # `remote` builds the runner on the board and hands the library to the Python device side.
    runs_native: bool = False


@dataclass(frozen=True)
class NativeSide:
    """The native C++ runner (mait_deploy/native, `mait-deploy app`) for a backend: where the runtime's C/C++ SDK
    comes from (``sdk``; the backend then has native/backend.cpp + find.cmake in its folder), or why there is no
    native runner and what a user of that device does instead (``absent``)."""

    sdk: str = ""
    absent: str = ""


@dataclass(frozen=True)
class Backend:
    """What the rest of mait-deploy knows about a backend, by concern: its host side, its device side, its native
    side."""

    name: str
    target: str  # "module:Class" of the host-side Target
    runner: str  # "module:Class" of the device-side Runner
    host: HostSide
    device: DeviceSide
    native: NativeSide = NativeSide()
    colour: str = "grey"  # in plots
    summary: str = ""  # one line for `mait-deploy targets`
    cli: str = ""  # "module:function" that adds the backend's own commands to the typer app, if it has any

    @property
    def gates_with(self) -> str:
        """The registry name of the runner that scores this backend's artifacts at the gate."""
        return self.host.gate_runtime or self.name

    def missing_on_host(self) -> list[str]:
        return [module for module in self.host.modules if not is_available(module)]


# name -> module that defines BACKEND. Imported only when asked for.
REGISTRY: dict[str, str] = {
    "onnxruntime": "mait_deploy.backends.onnxruntime",
    "openvino": "mait_deploy.backends.openvino",
    "litert": "mait_deploy.backends.litert",
    "tensorrt": "mait_deploy.backends.tensorrt",
    "executorch": "mait_deploy.backends.executorch",
}
_registered: dict[str, Backend] = {}
ENTRY_POINT_GROUP = "mait_deploy.backends"  # installed plug-ins: name = "package.module" holding BACKEND
_discovered = False


def _discover() -> None:
    """Add installed plug-in backends (entry points) to the registry, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        REGISTRY.setdefault(entry.name, entry.value)


def register(backend: Backend) -> None:
    """Add a backend at run time (a plug-in package, or a test's example backend)."""
    _registered[backend.name] = backend
    REGISTRY.setdefault(backend.name, "")


def unregister(name: str) -> None:
    _registered.pop(name, None)
    for cls in [cls for cls, registered in _names_by_class.items() if registered == name]:
        del _names_by_class[cls]
    if REGISTRY.get(name) == "":
        del REGISTRY[name]


def names() -> tuple[str, ...]:
    _discover()
    return tuple(REGISTRY)


def get(name: str) -> Backend:
    _discover()
    if name not in REGISTRY:
        raise UnsupportedOption(f"unknown target {name!r}; known: {', '.join(REGISTRY)}")
    if name not in _registered:
        _registered[name] = importlib.import_module(REGISTRY[name]).BACKEND
    return _registered[name]


def load(spec: str) -> Any:
    """What a "module:attribute" spec names (a backend's Target or Runner class, its CLI hook), imported now: the
    registry imports no side of a backend until asked (``host.catalog.target``, ``device.runner.runner_class``)."""
    module, attribute = spec.split(":")
    return getattr(importlib.import_module(module), attribute)


_names_by_class: dict[type, str] = {}


def name_of(cls: type) -> str:
    """The registered name of a target or runner class (or of the nearest registered class it derives from): the
    registry is the one place a backend's name is written; ``Target.name`` and ``Runner.runtime_name`` ask here."""
    if cls not in _names_by_class:
        specs = {}
        for name in names():
            backend = get(name)
            specs[backend.target] = specs[backend.runner] = name
        found = next((specs[f"{base.__module__}:{base.__qualname__}"] for base in cls.__mro__
                      if f"{base.__module__}:{base.__qualname__}" in specs), None)
        if found is None:
            return "base"  # the abstract base classes, or a class no backend registers
        _names_by_class[cls] = found
    return _names_by_class[cls]


def native_folder(name: str) -> Path | None:
    """A backend's native runner backend (its folder's ``native/``: backend.cpp + find.cmake), if it brings one:
    every runtime's native code lives there, none in mait_deploy/native."""
    import importlib.util
    from pathlib import Path

    module = REGISTRY.get(name) if name in names() else None
    spec = importlib.util.find_spec(module) if module else None
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) / "native" if locations else None
    return folder if folder is not None and (folder / "backend.cpp").is_file() else None


def register_cli(app: Any) -> None:
    """Let every backend that has its own commands add them to the CLI."""
    for name in names():
        spec = get(name).cli
        if spec:
            load(spec)(app)


def require_host(name: str) -> None:
    """Raise MissingDependency, naming the host extra, when this host lacks a module that building backend
    ``name``'s bundles needs: a build checks it before its slow work (the export), not when it gets there."""
    backend = get(name)
    missing = backend.missing_on_host()
    if missing:
        raise MissingDependency(missing[0], backend.host.extra)


def availability() -> dict[str, str]:
    """name -> '' when this host can build the backend's bundles, else why not (the missing modules + extra)."""
    result = {}
    for name in names():
        backend = get(name)
        missing = backend.missing_on_host()
        result[name] = (f"{', '.join(missing)} not installed ({install_hint(backend.host.extra)})"
                        if missing else "")
    return result

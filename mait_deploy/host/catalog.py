"""The host's view of the registered backends: each one's compile target, and what `mait-deploy targets` says of it.

The registry (``mait_deploy.backends``) holds names and declarations only and imports neither side; the host loads
a backend's ``Target`` here, the device its ``Runner`` through ``device.runner.runner_class``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mait_deploy import backends
from mait_deploy.device.runner import runner_class

if TYPE_CHECKING:  # the target module is loaded by name, as a plug-in's is
    from mait_deploy.host.compile.target import Target


def target(name: str) -> Target:
    """The host-side compile target of backend ``name`` (imports the backend's host module)."""
    plugin: Target = backends.load(backends.get(name).target)()
    return plugin


def describe(name: str) -> dict[str, Any]:
    """What `mait-deploy targets` says of one backend: extras, whether this host can build and run its bundles
    (why not, when it cannot), and every option its target (``-O``) and its runner take."""
    backend = backends.get(name)
    plugin = target(name)
    missing = backends.availability()[name]
    runnable, why_not = plugin.host_can_run() if not missing else (False, missing)
    return {"target": name, "summary": backend.summary, "device_extra": backend.device.extra,
            "host_extra": backend.host.extra, "build_here": missing or "ok",
            "run_here": "ok" if runnable else why_not, "precisions": list(plugin.capabilities.precisions),
            "compile_options": [option.to_dict() for option in plugin.declared_options],
            "runtime_options": [option.to_dict() for option in runner_class(name).declared_options]}

"""What a board is and whether its runtimes import: ``python -m mait_deploy.device.probe [RUNTIME...]`` prints JSON.

Run by ``mait-deploy remote setup`` on each board after installing; a runtime that fails to import is reported
with its error, not raised.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mait_deploy import backends


def probe(runtimes: list[str]) -> dict[str, Any]:
    """Platform facts and, per runtime name, its import time and version or the import error."""
    from mait_deploy.device.profiling.isa import cpu_isa

    libc, libc_version = platform.libc_ver()
    try:
        own_version = version("mait-deploy")
    except PackageNotFoundError:
        own_version = "unknown"
    result: dict[str, Any] = {
        "machine": platform.machine(), "system": platform.system(), "release": platform.release(),
        "python": platform.python_version(), "implementation": sys.implementation.name,
        "libc": f"{libc} {libc_version}".strip(), "mait_deploy": own_version, "isa": cpu_isa(), "runtimes": {}}
    for name in runtimes:
        started = time.perf_counter()
        try:
            backend = backends.get(name)
            importlib.import_module(backend.device.module or backend.runner.split(":")[0])
            distribution = backend.device.module.split(".")[0].replace("_", "-")
            try:
                runtime_version = version(distribution)
            except PackageNotFoundError:
                runtime_version = getattr(sys.modules.get(backend.device.module.split(".")[0]), "__version__", "?")
            result["runtimes"][name] = {"ok": True, "version": runtime_version,
                                        "import_s": round(time.perf_counter() - started, 2)}
        except Exception as err:  # any import failure is a fact about this board, reported, not raised
            result["runtimes"][name] = {"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
    return result


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1:])))

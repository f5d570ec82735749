"""Import OpenVINO with its usage telemetry off.

``import openvino`` imports ``openvino.tools.ovc``, which sends a Google Analytics event from a forked process
(``openvino_telemetry``) unless the user opted out with its script; so does every ``convert_model``, and NNCF sends
its own. mait-deploy sends nothing from a user's machine or board (and the fork, after JAX or any runtime has
started threads, is what printed "os.fork() was called ... JAX is multithreaded" in the tests): with
``openvino_telemetry`` unimportable, ovc and NNCF fall back to the no-op stubs they ship for that case.
"""

from __future__ import annotations

import sys
from types import ModuleType

from mait_deploy._deps import require


def import_openvino() -> ModuleType:
    """``openvino`` (raising MissingDependency naming the extra), imported with telemetry off."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> ImportError -> stub
    return require("openvino", extra="openvino")

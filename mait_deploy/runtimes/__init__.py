"""Device-side runners: numpy + one runtime, never torch. Backends are imported only when chosen."""

from __future__ import annotations

import importlib

from ..errors import UnsupportedOption

# target name -> (module, class). The module imports its runtime inside _load, so listing costs nothing.
RUNNERS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("mait_deploy.runtimes.onnxruntime", "OnnxRuntimeRunner"),
    "openvino": ("mait_deploy.runtimes.openvino", "OpenVinoRunner"),
    "tensorrt": ("mait_deploy.runtimes.tensorrt", "TensorRtRunner"),
    "litert": ("mait_deploy.runtimes.litert", "LiteRtRunner"),
}


def runner_class(runtime: str) -> type:
    if runtime not in RUNNERS:
        raise UnsupportedOption(f"unknown runtime {runtime!r}; known: {', '.join(sorted(RUNNERS))}")
    module, name = RUNNERS[runtime]
    return getattr(importlib.import_module(module), name)

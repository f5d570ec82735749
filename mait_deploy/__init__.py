"""mait-deploy: take MaiT image transformers to embedded devices.

The public API is loaded lazily so that ``import mait_deploy`` stays light: the host-side functions import torch
and onnx only when called, and the device side (load_bundle, verify_bundle, profile) needs numpy and one runtime.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "export_onnx": "mait_deploy.host.export.onnx",
    "quantize_qdq": "mait_deploy.host.compile.qdq",
    "compile_model": "mait_deploy.host.compile.api",
    "deploy": "mait_deploy.host.deploy.pipeline",
    "load_bundle": "mait_deploy.device.bundle",
    "verify_bundle": "mait_deploy.device.bundle",
    "profile": "mait_deploy.device.profiling.measure",
    "load_checkpoint": "mait_deploy.host.model.checkpoint",
    "save_checkpoint": "mait_deploy.host.model.checkpoint",
    "import_timm_cait": "mait_deploy.host.model.checkpoint",
    "import_timm_deit": "mait_deploy.host.model.timm_import",
    "create_model": "mait_deploy.host.model.mait",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mait_deploy' has no attribute {name!r}")

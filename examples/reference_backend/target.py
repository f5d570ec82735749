"""Host side: the verified FP32 ONNX, copied into the bundle as it is."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from mait_deploy.host.compile.onnx_common import check_mask_constants, onnx_io_specs
from mait_deploy.host.compile.spec import BuiltArtifact, TargetCapabilities
from mait_deploy.host.compile.target import Target

ARTIFACT = "model.onnx"


class ReferenceTarget(Target):
    capabilities = TargetCapabilities(precisions=("fp32",), dynamic_batch=True, devices=("cpu",))

    def _build(self, source: Any, options: Any, staging: Path, calibration: Any,
               progress: Callable[[str], None]) -> BuiltArtifact:
        shutil.copyfile(source.onnx_path, staging / ARTIFACT)
        inputs, outputs = onnx_io_specs(source.config)
        return BuiltArtifact(artifact=ARTIFACT, inputs=inputs, outputs=outputs, batch="dynamic",
                             runtime_options={}, report={"graph": check_mask_constants(staging / ARTIFACT,
                                                                                    source)})

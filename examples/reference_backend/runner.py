"""Device side: numpy + the onnx package's reference interpreter."""

from __future__ import annotations

from typing import Any

import numpy as np

from mait_deploy._deps import require
from mait_deploy.device.runner import Runner


class ReferenceRunner(Runner):

    def _load(self) -> None:
        reference = require("onnx.reference", extra="export")
        self._session = reference.ReferenceEvaluator(str(self.bundle_dir / self.manifest.artifact.path))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.array(self._session.run(None, {self.input_name: batch})[0], dtype=np.float32)

    def _close(self) -> None:
        self._session = None

    def runtime_info(self) -> dict[str, Any]:
        onnx = require("onnx", extra="export")
        return {"runtime": self.runtime_name, "version": onnx.__version__}

"""ONNX Runtime runner (CPU by default; any execution provider ORT offers on the device)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._deps import require
from ..errors import UnsupportedOption
from .base import Runner


class OnnxRuntimeRunner(Runner):
    runtime_name = "onnxruntime"

    def _load(self) -> None:
        ort = require("onnxruntime", extra="onnxruntime")
        options = ort.SessionOptions()
        if self.options.threads:
            options.intra_op_num_threads = self.options.threads
        providers = self.options.extra.get("providers") or ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise UnsupportedOption(f"execution provider(s) {', '.join(unknown)} not available here; "
                                    f"available: {', '.join(available)}")
        self._session = ort.InferenceSession(str(self.bundle_dir / self.manifest.artifact.path), options,
                                             providers=providers)
        self._input_type = self._session.get_inputs()[0].type

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._input_type == "tensor(float16)":
            batch = batch.astype(np.float16)
        return self._session.run(None, {self.input_name: batch})[0]

    def throughput_run(self, batch: np.ndarray, iterations: int, requests: int | None) -> tuple[int, int]:
        """ONNX Runtime's own async API (InferenceSession.run_async) with ``requests`` calls in flight."""
        import threading
        import time

        requests = requests or max(2, (self.options.threads or 1))
        if self._input_type == "tensor(float16)":
            batch = batch.astype(np.float16)
        slots = threading.Semaphore(requests)
        errors: list[str] = []

        def finished(outputs: Any, user_data: Any, error: str) -> None:
            if error:
                errors.append(error)
            slots.release()

        started = time.perf_counter_ns()
        for index in range(iterations):
            slots.acquire()
            self._session.run_async(None, {self.input_name: batch}, finished, index)
        for _ in range(requests):
            slots.acquire()
        elapsed = time.perf_counter_ns() - started
        if errors:
            raise RuntimeError(f"onnxruntime run_async failed: {errors[0]}")
        return elapsed, requests

    def _close(self) -> None:
        self._session = None

    def runtime_info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": self.runtime_name, "version": ort.__version__,
                "providers": self._session.get_providers() if self.is_active else None,
                "threads": self.options.threads}

"""OpenVINO runner (CPU by default; GPU/NPU/AUTO where present).

The CPU plugin runs in bf16 by default on CPUs with BF16 (this changes the numbers, ~1e-2 on a ViT), so the
runner sets the inference precision from the bundle (f32 for FP32 and INT8 bundles, f16 for FP16 bundles on
devices with FP16 compute, else f32) unless the user asks otherwise; ``runtime_info`` says what actually ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._deps import require
from ..errors import UnsupportedOption
from .base import Runner

PRECISION_HINTS = ("f32", "bf16", "f16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


def default_precision(bundle_precision: str, capabilities: list[str]) -> tuple[str, str]:
    """(inference precision, why) for a bundle precision on a device with these OPTIMIZATION_CAPABILITIES."""
    if bundle_precision == "fp16":
        if "FP16" in capabilities:
            return "f16", "FP16 bundle on a device with FP16 compute"
        return "f32", "FP16 bundle; this device has no FP16 compute, weights are decompressed to f32"
    return "f32", f"{bundle_precision.upper()} bundle: float parts in f32 (the CPU default would be bf16)"


class OpenVinoRunner(Runner):
    runtime_name = "openvino"

    def _options(self) -> dict[str, Any]:
        extra = self.options.extra
        precision = extra.get("inference_precision")
        if precision is not None and precision not in PRECISION_HINTS:
            raise UnsupportedOption(f"inference precision {precision!r}: use {', '.join(PRECISION_HINTS)}")
        hint = str(extra.get("performance_hint") or "LATENCY").upper()
        if hint not in PERFORMANCE_HINTS:
            raise UnsupportedOption(f"performance hint {hint!r}: use {', '.join(PERFORMANCE_HINTS)}")
        return {"device": str(extra.get("device") or "CPU"), "inference_precision": precision,
                "performance_hint": hint, "num_streams": extra.get("num_streams")}

    def _load(self) -> None:
        ov = require("openvino", extra="openvino")
        wanted = self._options()
        core = ov.Core()
        device = wanted["device"]
        available = core.available_devices
        base = device.split(":", 1)[-1].split(",")[0] if device.startswith(("AUTO", "MULTI", "HETERO")) else device
        if not device.startswith(("AUTO", "MULTI", "HETERO")) and base not in available:
            raise UnsupportedOption(f"OpenVINO device {device!r} is not available here; available: "
                                    f"{', '.join(available) or 'none'} (or AUTO)")
        config: dict[str, Any] = {"PERFORMANCE_HINT": wanted["performance_hint"]}
        precision, self._precision_reason = wanted["inference_precision"], "asked for"
        if precision is None and not device.startswith(("AUTO", "MULTI", "HETERO")):
            capabilities = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
            precision, self._precision_reason = default_precision(self.manifest.precision, capabilities)
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        if wanted["num_streams"] is not None:
            config["NUM_STREAMS"] = str(wanted["num_streams"])
        model = core.read_model(str(self.bundle_dir / self.manifest.artifact.path))
        self._compiled = core.compile_model(model, device, config)
        self._request = self._compiled.create_infer_request()
        self._device = device

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch})
        return self._request.get_output_tensor(0).data.copy()

    def throughput_run(self, batch: np.ndarray, iterations: int, requests: int | None) -> tuple[int, int]:
        """OpenVINO's AsyncInferQueue with the compiled model's optimal number of infer requests."""
        import time

        import openvino as ov

        requests = requests or int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(self._compiled, requests)
        started = time.perf_counter_ns()
        for _ in range(iterations):
            queue.start_async({0: batch})
        queue.wait_all()
        return time.perf_counter_ns() - started, requests

    def _close(self) -> None:
        self._request = None
        self._compiled = None

    @property
    def compiled_model(self) -> Any:
        """The ov.CompiledModel (for throughput mode: OpenVINO's own AsyncInferQueue)."""
        self.activate()
        return self._compiled

    def runtime_info(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {"runtime": self.runtime_name, "version": ov.get_version()}
        if self.is_active:
            compiled = self._compiled
            info.update(device=self._device, precision_reason=self._precision_reason)
            for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS"):
                try:
                    value = compiled.get_property(key)
                    info[key.lower()] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
                except RuntimeError:  # not every device reports every property
                    info[key.lower()] = "n/a"
        return info

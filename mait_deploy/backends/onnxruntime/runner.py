"""ONNX Runtime runner (CPU by default; any execution provider ORT offers on the device).

``simulate_int8`` (runner option) runs a Q/DQ model with Q/DQ fusion disabled (``session.disable_quant_qdq``):
QuantizeLinear and DequantizeLinear run as float ops and the compute ops in float on exactly the dequantized int8
values. That is the int8 arithmetic of a device with int32 accumulation (TensorRT on a GPU, VNNI, Arm dot
product), independent of this CPU's int8 kernels, which saturate on x86 without VNNI.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

import numpy as np

from mait_deploy._deps import require
from mait_deploy.device.profiling.layers import LayerTime
from mait_deploy.device.runner import Runner
from mait_deploy.errors import BundleError, UnsupportedOption
from mait_deploy.options import Option


class OnnxRuntimeRunner(Runner):
    declared_options = (
        Option("providers", list, None, "execution providers in order (default: CPUExecutionProvider)"),
        Option("simulate_int8", bool, False, "run Q/DQ as float ops on the exact int8 values (the int32-accumulating "
               "arithmetic of TensorRT, VNNI or Arm dot products), not this CPU's int8 kernels"),
        Option("int8_format", str, None, "recorded by the build: the bundle's int8 format", choices=("u8s8", "u8u8")),
    )

    def _session_options(self) -> Any:
        ort = require("onnxruntime", extra="onnxruntime")
        options = ort.SessionOptions()
        if self.settings["simulate_int8"]:
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        if self.options.threads:
            options.intra_op_num_threads = self.options.threads
        return options

    def _load(self) -> None:
        ort = require("onnxruntime", extra="onnxruntime")
        options = self._session_options()
        providers = self.settings["providers"] or ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise UnsupportedOption(f"execution provider(s) {', '.join(unknown)} not available here; "
                                    f"available: {', '.join(available)}")
        self._session = ort.InferenceSession(str(self.bundle_dir / self.manifest.artifact.path), options,
                                             providers=providers)
        model_input = self._session.get_inputs()[0]
        if model_input.name != self.input_name:  # the manifest describes another model than this artifact
            raise BundleError(f"{self.bundle_dir}: the manifest's input is {self.input_name!r}; "
                              f"{self.manifest.artifact.path} takes {model_input.name!r}")
        self._input_type = model_input.type

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

    def layer_times(self, inputs: np.ndarray, iterations: int, warmup: int) -> list[Any]:
        """ONNX Runtime's session profiling on a session made like this runner's: each node's kernel time in the
        runs after the warm-up, in execution order."""
        import json
        import tempfile

        ort = require("onnxruntime", extra="onnxruntime")
        if not self._active:
            self.activate()
        if self._input_type == "tensor(float16)":
            inputs = inputs.astype(np.float16)
        with tempfile.TemporaryDirectory(prefix="mait-ort-profile-") as folder:
            options = self._session_options()
            options.enable_profiling = True
            options.profile_file_prefix = f"{folder}/profile"
            session = ort.InferenceSession(str(self.bundle_dir / self.manifest.artifact.path), options,
                                           providers=self._session.get_providers())
            for _ in range(warmup + iterations):
                session.run(None, {self.input_name: inputs})
            with open(session.end_profiling(), encoding="utf-8") as handle:
                events = json.load(handle)
        runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
        after = runs[warmup - 1]["ts"] + runs[warmup - 1]["dur"] if warmup and len(runs) >= warmup else 0
        fp16 = self._input_type == "tensor(float16)"
        totals: dict[str, LayerTime] = {}
        for event in sorted(events, key=lambda e: e.get("ts", 0)):
            name = event.get("name", "")
            if event.get("cat") != "Node" or not name.endswith("_kernel_time") or event["ts"] < after:
                continue
            op = event.get("args", {}).get("op_name", "")
            node = name[: -len("_kernel_time")]
            layer = totals.setdefault(node, LayerTime(
                node, op, 0.0, kernel=event.get("args", {}).get("provider", ""),
                precision=_ORT_PRECISION.get(op, "fp16" if fp16 else "float"),
                is_norm=op in ("LayerNormalization", "SkipLayerNormalization")))
            layer.ms += event["dur"] / 1000 / iterations
        return list(totals.values())

    def _close(self) -> None:
        self._session = None

    def runtime_info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": self.runtime_name, "version": ort.__version__,
                "providers": self._session.get_providers() if self.is_active else None,
                "threads": self.options.threads, "simulate_int8": self.settings["simulate_int8"],
                "u8s8_exact": u8s8_exact(), "int8_warning": self.int8_warning()}

    def int8_warning(self) -> str | None:
        """Why this device may score a u8s8 bundle lower than its gate did (None when it should not)."""
        if self.settings["int8_format"] == "u8s8" and not self.settings["simulate_int8"] \
                and not u8s8_exact():
            return ("this bundle is u8s8 and this CPU's u8s8 int8 kernels saturate (x86 without VNNI): expect a "
                    "larger accuracy drop than at the gate; rebuild with -O int8_format=u8u8 for this device")
        return None


# ONNX Runtime CPU kernels that compute in integers, and the conversions around them.
_ORT_PRECISION = {**{op: "int8" for op in ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm",
                                          "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearAdd",
                                          "QLinearMul", "QLinearSoftmax", "QLinearConcat", "QAttention",
                                          "QLinearGlobalAveragePool", "QLinearLeakyRelu", "QLinearSigmoid")},
                  **{op: "q/dq" for op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")}}

# MatMulInteger(uint8 [1, 64], int8 [64, 1]) -> int32, serialized (built with onnx.helper, opset 13): the device
# side has no onnx package to build it with.
_U8S8_PROBE = base64.b64decode(
    "CAg6ZQoYCgFhCgFiEgF5Ig1NYXRNdWxJbnRlZ2VyEgp1OHM4X3Byb2JlWhMKAWESDgoMCAISCAoCCAEKAghAWhMKAWISDgoMCAMSCAoCCEAKAggB"
    "YhMKAXkSDgoMCAYSCAoCCAEKAggBQgQKABAN")


@functools.lru_cache(maxsize=1)
def u8s8_exact() -> bool:
    """Whether this machine's ONNX Runtime u8s8 int8 kernels are exact: 255 x 127 summed over 64 products
    overflows an int16 pair sum, so a saturating kernel (x86 VPMADDUBSW without VNNI) returns less. A functional
    test, not a flag lookup: it is right under emulators and hypervisors that mask CPU features."""
    ort = require("onnxruntime", extra="onnxruntime")
    session = ort.InferenceSession(_U8S8_PROBE, providers=["CPUExecutionProvider"])
    a = np.full((1, 64), 255, dtype=np.uint8)
    b = np.full((64, 1), 127, dtype=np.int8)
    return int(session.run(None, {"a": a, "b": b})[0][0, 0]) == 255 * 127 * 64

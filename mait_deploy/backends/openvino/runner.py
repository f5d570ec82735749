"""OpenVINO runner (CPU by default; GPU/NPU/AUTO where present).

The CPU plugin runs in bf16 by default on CPUs with BF16 (this changes the numbers, ~1e-2 on a ViT), so the
runner sets the inference precision from the bundle (f32 for FP32 and INT8 bundles, f16 for FP16 bundles on
devices with FP16 compute, else f32) unless the user asks otherwise; ``runtime_info`` says what actually ran.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from mait_deploy.backends.openvino._import import import_openvino
from mait_deploy.device.profiling.layers import LayerTime
from mait_deploy.device.profiling.measure import rss_mb
from mait_deploy.device.runner import Runner
from mait_deploy.errors import UnsupportedOption
from mait_deploy.options import Option

PRECISION_HINTS = ("f32", "bf16", "f16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


def default_precision(bundle_precision: str, capabilities: list[str]) -> tuple[str, str]:
    """(inference precision, why) for a bundle precision on a device with these OPTIMIZATION_CAPABILITIES."""
    if bundle_precision == "bf16":
        return "bf16", "BF16 bundle: computed in bfloat16 (its gate and golden outputs were)"
    if bundle_precision == "fp16":
        if "FP16" in capabilities:
            return "f16", "FP16 bundle on a device with FP16 compute"
        return "f32", "FP16 bundle; this device has no FP16 compute, weights are decompressed to f32"
    return "f32", f"{bundle_precision.upper()} bundle: float parts in f32 (the CPU default would be bf16)"


def check_precision_supported(precision: str, device: str, capabilities: list[str]) -> None:
    """A bf16/f16 hint the device cannot compute would silently run f32: refuse it instead."""
    needed = {"bf16": "BF16", "f16": "FP16"}.get(precision)
    if needed and needed not in capabilities:
        raise UnsupportedOption(f"inference precision {precision} is not available on OpenVINO {device} here "
                                f"(its capabilities: {', '.join(capabilities)})")


def _kernel_precision(exec_type: str) -> str:
    """What an OpenVINO CPU kernel computed in, from its exec type ("jit_avx512_I8", "brgemm_avx512_bf16"...)."""
    name = exec_type.lower()
    if "i8" in name or "u8" in name:
        return "int8"
    if "bf16" in name:
        return "bf16"
    if "f16" in name:
        return "fp16"
    return "float"


SHAPE_MODES = ("static", "dynamic")
STATIC_CACHE_MB = 1024  # memory the compiled static-batch models may take together (each measured as compiled)


@dataclass
class _Compiled:
    model: Any  # ov.CompiledModel
    request: Any  # ov.InferRequest
    input_tensor: Any = None  # our input tensor, made once per shape and set on the request
    input_shape: tuple[int, ...] = ()  # its shape as a tuple (reading ov.Tensor.shape costs ~13 us per call)
    footprint_mb: float = 0.0  # what compiling it added to the process (static_cache_mb counts these)


class OpenVinoRunner(Runner):
    """Runs an OpenVINO IR.

    With ``shapes="static"`` (the default) a dynamic-batch IR is reshaped and compiled for each batch size it is
    called with, as benchmark_app's ``-shape`` does, and keeps every one it compiled while they fit in
    ``static_cache_mb`` (each measured by the process's memory growth when it was compiled; the least recently
    used goes first): batch sizes that alternate never recompile (with two kept, 1/8/32 in turn recompiled on
    every call: 249 ms a call instead of 2 ms, measured on an AMX Xeon). The CPU plugin
    runs a static shape ~20% faster than the dynamic one at batch 1 on the demo model (1.01 vs 1.25 ms measured).
    The first call at a new batch size pays the compile (0.2-0.3 s for the demo model). ``shapes="dynamic"``
    compiles once for every batch size."""

    throughput_options = {"performance_hint": "THROUGHPUT"}
    declared_options = (
        Option("device", str, "CPU", "the OpenVINO device (CPU, GPU, NPU, AUTO...)"),
        Option("inference_precision", str, None, "the plugin's compute precision (default: the bundle's; the CPU "
               "plugin's own default is bf16 on BF16 CPUs and f16 on Arm)", choices=PRECISION_HINTS),
        Option("performance_hint", str, "LATENCY", "OpenVINO's performance hint", choices=PERFORMANCE_HINTS),
        Option("num_streams", int, None, "inference streams (default: the hint's choice)", minimum=1),
        Option("shapes", str, "static", "static: compile each batch size it is called with; dynamic: once for "
               "every batch size", choices=SHAPE_MODES),
        Option("static_cache_mb", int, STATIC_CACHE_MB, "static shapes: memory the compiled batch sizes may take "
               "together (least recently used first out)", minimum=1),
    )

    def _load(self) -> None:
        ov = import_openvino()
        wanted = self.settings
        core = ov.Core()
        device = wanted["device"]
        available = core.available_devices
        virtual = device.startswith(("AUTO", "MULTI", "HETERO"))
        if not virtual and device not in available:
            raise UnsupportedOption(f"OpenVINO device {device!r} is not available here; available: "
                                    f"{', '.join(available) or 'none'} (or AUTO)")
        config: dict[str, Any] = {"PERFORMANCE_HINT": wanted["performance_hint"]}
        precision, self._precision_reason = wanted["inference_precision"], "asked for"
        if not virtual:
            capabilities = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
            if precision is None:
                precision, self._precision_reason = default_precision(self.manifest.precision, capabilities)
            check_precision_supported(precision, device, capabilities)
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        if wanted["num_streams"] is not None:
            config["NUM_STREAMS"] = str(wanted["num_streams"])
        self._core, self._config, self._device = core, config, device
        self._model = core.read_model(str(self.bundle_dir / self.manifest.artifact.path))
        self._static = wanted["shapes"] == "static" and self._model.is_dynamic()
        self._by_shape: OrderedDict[tuple[int, ...], _Compiled] = OrderedDict()
        self.compiles = 0  # compilations of a static shape (a test counts them: alternating sizes add none)
        # One compile up front checks the device and config now: batch 1 in static mode (the usual on a device),
        # else the IR as it is (dynamic mode, or an IR with a static shape).
        self._default = None
        if self._static:
            self._current = self._compiled_for((1, *self.sample_shape))
        else:
            compiled = core.compile_model(self._model, device, config)
            self._default = self._current = _Compiled(compiled, compiled.create_infer_request())

    def _compiled_for(self, shape: tuple[int, ...]) -> _Compiled:
        if not self._static:
            return self._default
        entry = self._by_shape.get(shape)
        if entry is None:
            before = rss_mb()
            model = self._model.clone()
            model.reshape({model.input(0): list(shape)})
            compiled = self._core.compile_model(model, self._device, self._config)
            entry = _Compiled(compiled, compiled.create_infer_request())
            # Compiling and making its request: what keeping this shape costs (the weights are copied per shape).
            entry.footprint_mb = max(0.0, rss_mb() - before)
            self.compiles += 1
            self._by_shape[shape] = entry
            budget = self.settings["static_cache_mb"]
            while len(self._by_shape) > 1 and sum(e.footprint_mb for e in self._by_shape.values()) > budget:
                self._by_shape.popitem(last=False)
        self._by_shape.move_to_end(shape)
        return entry

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        entry = self._current = self._compiled_for(batch.shape)
        # Copy into an input tensor set on the request once per shape, then infer() without inputs:
        # infer({0: batch}) builds a result dict and copies twice, ~50 us more per call (5% of the demo model at
        # batch 1).
        if entry.input_shape != batch.shape:
            import openvino as ov

            entry.input_tensor = ov.Tensor(entry.model.input(0).get_element_type(), ov.Shape(list(batch.shape)))
            entry.request.set_input_tensor(entry.input_tensor)
            entry.input_shape = batch.shape
        entry.input_tensor.data[...] = batch
        entry.request.infer()
        return entry.request.get_output_tensor(0).data.copy()

    @property
    def runtime_latency_ms(self) -> float:
        """OpenVINO's own measure of the last inference (InferRequest.latency, what benchmark_app reports)."""
        return float(self._current.request.latency)

    def throughput_run(self, batch: np.ndarray, iterations: int, requests: int | None) -> tuple[int, int]:
        """OpenVINO's AsyncInferQueue with the compiled model's optimal number of infer requests."""
        import time

        import openvino as ov

        compiled = self._compiled_for(batch.shape).model
        requests = requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, requests)
        started = time.perf_counter_ns()
        for _ in range(iterations):
            queue.start_async({0: batch})
        queue.wait_all()
        return time.perf_counter_ns() - started, requests

    def layer_times(self, inputs: np.ndarray, iterations: int, warmup: int) -> list[Any]:
        """OpenVINO's performance counters (PERF_COUNT) on a model compiled for them, with this runner's config."""
        import openvino as ov

        if not self._active:
            self.activate()
        model = self._model
        if self._model.is_dynamic():
            model = self._model.clone()
            model.reshape({model.input(0): list(inputs.shape)})
        compiled = self._core.compile_model(model, self._device, {**self._config, "PERF_COUNT": True})
        request = compiled.create_infer_request()
        totals: dict[str, LayerTime] = {}
        for index in range(warmup + iterations):
            request.infer({0: inputs})
            if index < warmup:
                continue
            for info in request.get_profiling_info():
                if info.status == ov.ProfilingInfo.Status.EXECUTED:  # not NOT_RUN / OPTIMIZED_OUT
                    layer = totals.setdefault(info.node_name, LayerTime(
                        info.node_name, info.node_type, 0.0, kernel=info.exec_type,
                        precision=_kernel_precision(info.exec_type), is_norm=info.node_type == "MVN"))
                    layer.ms += info.real_time.total_seconds() * 1000 / iterations
        return list(totals.values())  # in execution order (the counters' order)

    def _close(self) -> None:
        self._by_shape.clear()
        self._default = self._current = None
        self._model = self._core = None

    def runtime_info(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {"runtime": self.runtime_name, "version": ov.get_version()}
        if self.is_active:
            compiled = self._current.model
            info.update(device=self._device, precision_reason=self._precision_reason,
                        shapes="static" if self._static else "dynamic",
                        static_batches=[shape[0] for shape in self._by_shape],
                        static_cache_mb=round(sum(e.footprint_mb for e in self._by_shape.values()), 1))
            for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS"):
                try:
                    value = compiled.get_property(key)
                    info[key.lower()] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
                except RuntimeError:  # not every device reports every property
                    info[key.lower()] = "n/a"
        return info

"""TensorRT target (host side): the ONNX to build from, the build plan, and the equivalent trtexec command.

The engine itself is built on the device (``mait-deploy build-engine`` or on first load): an engine is tied to
the GPU model and TensorRT version that built it, and building needs an NVIDIA GPU. INT8 is explicit quantization
(TensorRT deprecated implicit calibration in 10.1): a Q/DQ ONNX from the same calibration code as the ONNX
Runtime target, with TensorRT's symmetric preset, checked against TensorRT's placement rules here and through the
accuracy gate with ONNX Runtime on the CPU, its int8 arithmetic simulated exactly (Q/DQ as float ops) so that
the gate measures the model, not this host's int8 kernels.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy._deps import require
from mait_deploy.backends.tensorrt.runner import TENSORRT_SOURCE, _cuda, gpu_info
from mait_deploy.device.data.sources import Dataset
from mait_deploy.device.manifest import Manifest
from mait_deploy.errors import MaitDeployError as _Error
from mait_deploy.errors import UnsupportedOption, ValidationError
from mait_deploy.host.compile.activations import calibration_batch
from mait_deploy.host.compile.onnx_common import check_mask_constants, onnx_io_specs
from mait_deploy.host.compile.qdq import (
    DEFAULT_OP_TYPES,
    LAYOUT_OPS,
    QdqOptions,
    describe_qdq,
    quantize_qdq,
)
from mait_deploy.host.compile.sensitivity import nodes_for_layers
from mait_deploy.host.compile.source import ModelSource
from mait_deploy.host.compile.spec import BuiltArtifact, CompileOptions, TargetCapabilities
from mait_deploy.host.compile.target import Target
from mait_deploy.host.export import graph
from mait_deploy.host.export.onnx import INPUT_NAME, convert_onnx_fp16
from mait_deploy.options import Option
from mait_deploy.precision import FP16, FP32, INT8, PORTABLE_PRECISIONS

ARTIFACT = "model.onnx"
FP16_TYPED = "model_fp16.onnx"  # for TensorRT >= 11, which builds strongly typed networks only


@dataclass(frozen=True)
class BuildPlan:
    """What the device-side builder requests; stored in the manifest (runtime.options.plan)."""

    precision: str
    input_name: str
    sample_shape: tuple[int, ...]
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mb: int = 1024
    builder_optimization_level: int = 3
    dla_core: int | None = None
    gpu_fallback: bool = True
    timing_cache: bool = True
    onnx: str = ARTIFACT
    onnx_strongly_typed_fp16: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise UnsupportedOption(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                                    f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if self.workspace_mb < 16:
            raise UnsupportedOption(f"workspace_mb must be >= 16, got {self.workspace_mb}")
        if not 0 <= self.builder_optimization_level <= 5:
            raise UnsupportedOption("builder_optimization_level must be 0 to 5")
        if self.dla_core is not None and self.dla_core < 0:
            raise UnsupportedOption(f"dla_core must be >= 0, got {self.dla_core}")
        if self.dla_core is not None and self.precision == FP32:
            raise UnsupportedOption("DLA runs fp16 or int8 only; use --precision fp16 or int8 with dla_core")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: (batch, *self.sample_shape)
                for name, batch in (("min", self.min_batch), ("opt", self.opt_batch), ("max", self.max_batch))}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample_shape"] = list(self.sample_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildPlan":
        values = dict(data)
        values["sample_shape"] = tuple(values["sample_shape"])
        return cls(**values)


def tensorrt_qdq_options(method: str = "minmax") -> QdqOptions:
    """TensorRT's explicit quantization: symmetric INT8 everywhere (zero point 0), Q/DQ only on the inputs of
    MatMul/Gemm/Conv, no int32 bias DQ, one Q/DQ pair per consumer."""
    return QdqOptions(method=method, activation_symmetric=True, weight_symmetric=True, quantize_bias=False,
                      dedicated_qdq_pairs=True, compute_inputs_only=True)


def trtexec_command(plan: BuildPlan, engine: str = "model.engine") -> str:
    """The equivalent trtexec line (TensorRT 10.x flags), for users who build with trtexec."""
    dims = {k: "x".join(map(str, v)) for k, v in plan.shapes().items()}
    parts = ["trtexec", f"--onnx={plan.onnx}", f"--saveEngine={engine}",
             f"--minShapes={plan.input_name}:{dims['min']}", f"--optShapes={plan.input_name}:{dims['opt']}",
             f"--maxShapes={plan.input_name}:{dims['max']}", f"--memPoolSize=workspace:{plan.workspace_mb}M",
             f"--builderOptimizationLevel={plan.builder_optimization_level}"]
    if plan.precision in (FP16, INT8):
        parts.append("--fp16")
    if plan.precision == INT8:
        parts.append("--int8")  # with Q/DQ nodes this enables their INT8 kernels; no calibration happens
    if plan.dla_core is not None:
        parts.append(f"--useDLACore={plan.dla_core}")
        if plan.gpu_fallback:
            parts.append("--allowGPUFallback")
    if plan.timing_cache:
        parts.append("--timingCacheFile=timing.cache")
    return " ".join(parts)


def check_explicit_quantization(model: Any) -> dict[str, Any]:
    """TensorRT's placement rules for explicit quantization, checked on the Q/DQ ONNX:
    opset >= 13; every zero point 0 (symmetric INT8); scales finite and positive; weight scales per output
    channel (axis 1 for MatMul [K, N] weights, 0 for Conv and for Gemm with transB=1); activation scales per
    tensor; Q/DQ feed only MatMul/Gemm/Conv; the bias Add, Softmax, LayerNorm and GELU stay in float."""
    from onnx import numpy_helper

    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        problems.append(f"opset {opset} < 13")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    produced_by = graph.producers(model)
    users = graph.consumers(model)
    weights = activations = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = inits.get(node.input[1])
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None:
            problems.append(f"{node.name}: scale is not a constant")
            continue
        if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            problems.append(f"{node.name}: scale not finite and positive")
        if zero is not None and (zero.dtype != np.int8 or np.any(zero != 0)):
            problems.append(f"{node.name}: zero point must be int8 zeros, got {zero.dtype}")
        if node.op_type != "DequantizeLinear":
            continue
        consumers = users.get(node.output[0], [])
        bad = [c.op_type for c in consumers if c.op_type not in DEFAULT_OP_TYPES + LAYOUT_OPS]
        if bad:
            problems.append(f"{node.name}: DQ feeds {bad}; only MatMul/Gemm/Conv inputs may be quantized")
        is_weight = node.input[0] in inits
        if is_weight:
            weights += 1
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            for consumer in (c for c in consumers if c.op_type in DEFAULT_OP_TYPES):
                expected = _output_channel_axis(consumer, inits[node.input[0]].ndim)
                if scale.size > 1 and axis != expected:
                    problems.append(f"{node.name}: per-channel axis {axis}, expected {expected} for "
                                    f"{consumer.op_type}")
            if scale.size == 1:
                problems.append(f"{node.name}: weight scale is per-tensor, expected per-channel")
        else:
            activations += 1
            if scale.size != 1:
                problems.append(f"{node.name}: activation scale must be per-tensor")
            source = produced_by.get(node.input[0])
            if source is None or source.op_type != "QuantizeLinear":
                problems.append(f"{node.name}: activation DQ without its Q")
    for node in model.graph.node:
        if node.op_type in ("Softmax", "LayerNormalization", "Erf", "Add"):
            fed = [produced_by[n].op_type for n in node.input if n in produced_by]
            if "DequantizeLinear" in fed:
                problems.append(f"{node.name} ({node.op_type}) consumes a quantized tensor")
    if problems:
        raise ValidationError("Q/DQ ONNX breaks TensorRT's explicit-quantization rules: " + "; ".join(problems[:4])
                              + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""))
    return {"opset": opset, "weight_dq": weights, "activation_dq": activations, "symmetric": True}


def _output_channel_axis(consumer: Any, ndim: int) -> int:
    if consumer.op_type == "Gemm":
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if consumer.op_type == "Conv":
        return 0
    return ndim - 1  # MatMul weight [K, N]: output channels on the last axis


class TensorRtTarget(Target):
    capabilities = TargetCapabilities(
        precisions=PORTABLE_PRECISIONS, dynamic_batch=True, devices=("cuda", "dla"), layer_fallback=True,
        # FP32 and FP16 gate ONNX Runtime FP32's very bytes: started after it, they take its gate.
        typical_build_seconds={FP32: 0.3, FP16: 0.3, INT8: 5},
    )

    declared_options = (
        Option("min_batch", int, BuildPlan.min_batch, "the optimization profile's smallest batch", minimum=1),
        Option("opt_batch", int, BuildPlan.opt_batch, "the batch TensorRT tunes its kernels for", minimum=1),
        Option("max_batch", int, BuildPlan.max_batch, "the optimization profile's largest batch", minimum=1),
        Option("workspace_mb", int, BuildPlan.workspace_mb, "builder workspace (MB)", minimum=16),
        Option("builder_optimization_level", int, BuildPlan.builder_optimization_level,
               "builder effort, 0 (fast build) to 5 (longest search)", choices=(0, 1, 2, 3, 4, 5)),
        Option("dla_core", int, None, "build for this DLA core (Jetson; fp16 or int8)", minimum=0),
        Option("gpu_fallback", bool, BuildPlan.gpu_fallback, "with dla_core: layers DLA cannot run go to the GPU"),
        Option("timing_cache", bool, BuildPlan.timing_cache, "keep a timing cache beside the engine on the device"),
    )

    def _check_options(self, options: CompileOptions) -> None:
        if options.batch not in (None, "dynamic"):
            raise UnsupportedOption("tensorrt bundles use an optimization profile: set -O min_batch/opt_batch/"
                                    "max_batch instead of --batch")
        self._plan(options, (1, 1, 1))  # validates the plan options now, before any slow work

    def _plan(self, options: CompileOptions, sample_shape: tuple[int, ...]) -> BuildPlan:
        values = self.option_values(options)
        return BuildPlan(precision=options.precision, input_name=INPUT_NAME, sample_shape=tuple(sample_shape),
                         onnx_strongly_typed_fp16=FP16_TYPED if options.precision == FP16 else None, **values)

    def host_can_run(self) -> tuple[bool, str]:
        """True on a machine with TensorRT, cuda-python and an NVIDIA GPU (e.g. deploy run on the Jetson)."""

        try:
            require("tensorrt", extra="tensorrt", hint=TENSORRT_SOURCE)
            gpu_info(_cuda())
        except _Error as err:
            return False, f"engine build left to the device ({err}); run `mait-deploy build-engine` there"
        return True, ""

    def gate_options(self, manifest: Manifest) -> dict[str, Any]:
        # No GPU here: the gate scores the ONNX that TensorRT builds from in ONNX Runtime (the backend's
        # gate_runtime). An INT8 Q/DQ model runs with its int8 arithmetic simulated exactly (TensorRT accumulates
        # in int32 on the GPU), not with this CPU's int8 kernels, which saturate on x86 without VNNI.
        return {"simulate_int8": manifest.precision == INT8}

    def _quantization_detail(self, build: dict[str, Any]) -> str:
        return describe_qdq(build["quantization"])

    def sensitivity_preset(self, options: CompileOptions) -> QdqOptions:
        return tensorrt_qdq_options(options.calibration.method)

    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        onnx = require("onnx", extra="export")
        plan = self._plan(options, source.config.input_shape)
        out = staging / ARTIFACT
        report: dict[str, Any] = {}
        side_files: list[str] = []
        if options.precision == INT8:
            progress(f"tensorrt int8: Q/DQ calibration on {len(calibration)} images (symmetric)")
            qdq = dataclasses.replace(tensorrt_qdq_options(options.calibration.method),
                                      nodes_to_exclude=tuple(nodes_for_layers(source.onnx_path,
                                                                              options.float_layers)))
            report["quantization"] = quantize_qdq(source.onnx_path, out, calibration.inputs, qdq,
                                                  calibration.origin,
                                                  calibration_batch(source.activation_bytes)).to_dict()
            report["explicit_quantization"] = check_explicit_quantization(onnx.load(str(out)))
        else:
            shutil.copyfile(source.onnx_path, out)
            if options.precision == FP16:
                convert_onnx_fp16(source.onnx_path, staging / FP16_TYPED)
                side_files.append(FP16_TYPED)
        report["graph"] = check_mask_constants(out, source)
        report["trtexec"] = trtexec_command(plan)
        inputs, outputs = onnx_io_specs(source.config)
        return BuiltArtifact(
            artifact=ARTIFACT, side_files=side_files, alternative_files=side_files, inputs=inputs, outputs=outputs,
            batch="dynamic",
            runtime_options={"plan": plan.to_dict()},
            report=report,
        )

"""Static INT8 quantization of the FP32 ONNX into a QDQ graph with real calibration images (ONNX Runtime).

Only MatMul/Gemm/Conv inputs are quantized by default: the attention-bias Add, Softmax, LayerNorm and GELU stay
in float. Quantizing the bias Add destroys attention: with a -1e4 bias the activation scale is ~39, so every
unmasked score rounds to 0. The same QDQ graph, with the symmetric preset, is what TensorRT's explicit
quantization consumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mait_deploy._deps import require
from mait_deploy.errors import UnsupportedOption, ValidationError
from mait_deploy.host.compile.activations import CALIBRATION_BATCH
from mait_deploy.host.export import graph
from mait_deploy.precision import INT8

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_OP_TYPES = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class QdqOptions:
    """How to quantize a float ONNX into a Q/DQ graph; each backend that uses it sets its own preset."""

    method: str = "minmax"
    per_channel: bool = True
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    quantize_bias: bool = True  # int32 bias DQ for Gemm/Conv: fine for ORT, not accepted by TensorRT
    dedicated_qdq_pairs: bool = False  # one Q/DQ pair per quantized consumer
    # ORT also quantizes MatMul outputs (e.g. attention scores before the bias Add): fast on ORT's CPU kernels,
    # but TensorRT wants Q/DQ only on the inputs of MatMul/Gemm/Conv. This rewires every other consumer of a DQ
    # to the float tensor and drops Q/DQ pairs left unused.
    compute_inputs_only: bool = False
    percentile: float = 99.999
    activation_type: str = "int8"  # or "uint8" (asymmetric only): ORT's u8s8 kernels on x86
    # "int8" or "uint8". uint8 weights with uint8 activations (U8U8) use ORT's exact u8u8 kernels; u8s8 on x86
    # without VNNI runs VPMADDUBSW, whose int16 pair sums saturate (see device/profiling/isa.py).
    weight_type: str = "int8"
    reduce_range: bool = False  # 7-bit weights: the other documented remedy for that saturation
    # ONNX node names kept in float (per-layer fallback) / the only nodes quantized (per-layer sensitivity).
    nodes_to_exclude: tuple[str, ...] = ()
    nodes_to_quantize: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnsupportedOption(f"unknown calibration method {self.method!r}; use {', '.join(METHODS)}")
        if not 0 < self.percentile <= 100:
            raise UnsupportedOption(f"percentile must be in (0, 100], got {self.percentile}")
        if self.activation_type not in ("int8", "uint8"):
            raise UnsupportedOption(f"activation type must be int8 or uint8, got {self.activation_type!r}")
        if self.weight_type not in ("int8", "uint8"):
            raise UnsupportedOption(f"weight type must be int8 or uint8, got {self.weight_type!r}")
        if self.activation_type == "uint8" and self.activation_symmetric:
            raise UnsupportedOption("uint8 activations are asymmetric; symmetric activations need int8")


@dataclass
class QuantizationReport:
    method: str
    calibration_images: int
    calibration_data: str
    options: dict[str, Any]
    quantize_linear: int
    dequantize_linear: int
    quantized_ops: dict[str, int]
    float_ops: dict[str, int]  # ops left in float (Softmax, LayerNormalization, the bias Add, GELU's Erf, ...)
    per_channel_weights: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Reader:
    """ORT CalibrationDataReader over preprocessed inputs, in small batches."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch: int) -> None:
        self._batches = iter([{input_name: inputs[i:i + batch]} for i in range(0, len(inputs), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - ORT calls it only for some calibrators
        pass


def quantize_qdq(fp32_onnx: str | os.PathLike[str], out_path: str | os.PathLike[str], calibration_inputs: np.ndarray,
                 options: QdqOptions, calibration_data: str = "", batch: int = CALIBRATION_BATCH) -> QuantizationReport:
    """Write an INT8 QDQ model calibrated on ``calibration_inputs`` (float32 [N, C, H, W]), ``batch`` images per
    run of the calibration graph (it holds every intermediate tensor of its batch: activations.calibration_batch)."""
    onnx = require("onnx", extra="export")
    quantization = require("onnxruntime.quantization", extra="onnxruntime")

    if len(calibration_inputs) == 0:
        raise UnsupportedOption("no calibration images")
    started = time.perf_counter()
    model = onnx.load(str(fp32_onnx))
    input_name = model.graph.input[0].name
    method = {"minmax": quantization.CalibrationMethod.MinMax, "entropy": quantization.CalibrationMethod.Entropy,
              "percentile": quantization.CalibrationMethod.Percentile}[options.method]
    extra = {
        "ActivationSymmetric": options.activation_symmetric,
        "WeightSymmetric": options.weight_symmetric,
        "QuantizeBias": options.quantize_bias,
        "DedicatedQDQPair": options.dedicated_qdq_pairs,
        # Output-channel axis for MatMul weights [K, N] (ORT's default axis suits Conv/Gemm already).
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    }
    if options.method == "percentile":
        extra["CalibPercentile"] = options.percentile
    temp_out = Path(out_path)
    # ORT logs a "consider pre-processing" hint on the root logger at every call; it is advice, not a problem.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    # quantize_static writes "<model>-inferred.onnx" beside its input: give it a private copy in the system temp
    # folder, never the user's file (a read-only folder, or two compiles from one ONNX at once, broke it there).
    private = tempfile.TemporaryDirectory(prefix="mait-deploy-qdq-")
    source_copy = Path(private.name) / "model.onnx"
    shutil.copyfile(fp32_onnx, source_copy)
    try:
        quantization.quantize_static(
            str(source_copy), str(temp_out), _Reader(input_name, calibration_inputs, batch),
            quant_format=quantization.QuantFormat.QDQ, op_types_to_quantize=list(options.op_types),
            per_channel=options.per_channel,
            activation_type=quantization.QuantType.QUInt8 if options.activation_type == "uint8"
            else quantization.QuantType.QInt8,
            weight_type=quantization.QuantType.QUInt8 if options.weight_type == "uint8"
            else quantization.QuantType.QInt8, reduce_range=options.reduce_range,
            nodes_to_exclude=list(options.nodes_to_exclude),
            nodes_to_quantize=None if options.nodes_to_quantize is None else list(options.nodes_to_quantize),
            calibrate_method=method, extra_options=extra,
        )
    finally:
        root.setLevel(level)
        private.cleanup()
    quantized = onnx.load(str(temp_out))
    if options.compute_inputs_only:
        restrict_to_compute_inputs(quantized)
    merged = graph.deduplicate_initializers(quantized)
    # Keep the exporter's metadata (config, labels, ...) on the quantized file.
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    graph.set_metadata(quantized, {"precision": INT8, "quantization": options.method})
    onnx.save_model(quantized, str(temp_out))
    report = structure(quantized)
    if merged:
        report["note"] = f"merged {merged} duplicated constants"
    return QuantizationReport(
        method=options.method, calibration_images=int(len(calibration_inputs)), calibration_data=calibration_data,
        options=asdict(options), quantize_linear=report["QuantizeLinear"], dequantize_linear=report["DequantizeLinear"],
        quantized_ops=report["quantized_ops"], float_ops=report["float_ops"],
        per_channel_weights=report["per_channel_weights"], seconds=round(time.perf_counter() - started, 2),
    )


# Layout-only ops that TensorRT moves Q/DQ across (a DQ may feed them on its way to a MatMul/Gemm/Conv).
LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")


def restrict_to_compute_inputs(model: Any) -> int:
    """Rewire consumers of activation DQs that are neither compute nor layout ops to the float tensor, then drop
    Q/DQ nodes nobody reads. Returns how many consumer inputs were rewired."""
    initializers = {init.name for init in model.graph.initializer}
    produced_by = graph.producers(model)
    allowed = set(DEFAULT_OP_TYPES) | set(LAYOUT_OPS)
    rewired = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            continue
        for index, name in enumerate(node.input):
            dq = produced_by.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in initializers:
                continue
            q = produced_by.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or node.op_type in allowed:
                continue
            node.input[index] = q.input[0]
            rewired += 1
    graph_outputs = {value.name for value in model.graph.output}
    while True:  # drop Q/DQ whose outputs are now unread
        read = {name for node in model.graph.node for name in node.input} | graph_outputs
        dead = [node for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in read]
    for init in unused:
        model.graph.initializer.remove(init)
    return rewired


def structure(model: Any) -> dict[str, Any]:
    """Counts of Q/DQ nodes, of compute ops fed by DQ (quantized) and of ops that stay float."""
    from onnx import numpy_helper

    produced_by = graph.producers(model)
    initializers = {init.name: init for init in model.graph.initializer}
    ops = Counter(node.op_type for node in model.graph.node)
    quantized, floats = Counter(), Counter()
    per_channel = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if node.op_type == "DequantizeLinear" and len(node.input) > 1 and node.input[1] in initializers:
                if numpy_helper.to_array(initializers[node.input[1]]).size > 1:
                    per_channel += 1
            continue
        fed_by_dq = any(produced_by.get(name) is not None and produced_by[name].op_type == "DequantizeLinear"
                        for name in node.input)
        (quantized if fed_by_dq and node.op_type in DEFAULT_OP_TYPES else floats)[node.op_type] += 1
    return {"QuantizeLinear": ops.get("QuantizeLinear", 0), "DequantizeLinear": ops.get("DequantizeLinear", 0),
            "quantized_ops": dict(sorted(quantized.items())), "float_ops": dict(sorted(floats.items())),
            "per_channel_weights": per_channel}


def check_mask_not_quantized(model: Any) -> None:
    """The attention-mask Add or Mul must not consume a quantized constant (see the module docstring)."""
    produced_by = graph.producers(model)

    users = graph.consumers(model)
    for node in model.graph.node:
        if node.op_type in ("Add", "Mul") and graph.feeds_softmax(node.output[0], users):
            for name in node.input:
                source = produced_by.get(name)
                if source is not None and source.op_type == "DequantizeLinear" and source.input[0] in {
                        i.name for i in model.graph.initializer}:
                    raise ValidationError("an attention mask constant was quantized; it must stay in float")


def describe_qdq(report: dict[str, Any]) -> str:
    """One line about a Q/DQ quantization report: which ops take INT8 inputs, what stays float."""
    ops = report.get("quantized_ops") or {}
    return (f"INT8 inputs for {sum(ops.values())} ops {ops}; Softmax, LayerNorm, bias Add and GELU stay float"
            if ops else "")

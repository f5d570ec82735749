"""ONNX Runtime target: the verified ONNX as it is (FP32), converted to FP16, or statically quantized to INT8 QDQ."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from .._deps import require
from ..bundle.manifest import TensorSpec
from ..calibration.data import Dataset
from ..calibration.quantize import QdqOptions, check_bias_not_quantized, quantize_qdq
from ..errors import ExportError, UnsupportedOption
from . import graph
from .base import BuiltArtifact, CompileOptions, Target, TargetCapabilities
from .onnx import INPUT_NAME, OUTPUT_NAME, convert_onnx_fp16
from .source import ModelSource

ARTIFACT = "model.onnx"


def onnx_io_specs(config, batch: int | str = "batch") -> tuple[list[TensorSpec], list[TensorSpec]]:
    return ([TensorSpec(INPUT_NAME, [batch, *config.input_shape], "float32")],
            [TensorSpec(OUTPUT_NAME, [batch, config.num_classes], "float32")])


def check_single_bias(path: Path, config) -> dict:
    """The bias must still be one shared constant after conversion/quantization; returns the graph report."""
    onnx = require("onnx", extra="export")
    model = onnx.load(str(path))
    report = graph.analyze(model)
    masked = bool(config.mask.heads(config.num_heads)) and bool(config.mask.blocks(config.depth))
    if masked and len(report.bias_initializers) != 1:
        raise ExportError(f"{path.name}: expected one shared bias constant, found {len(report.bias_initializers)}")
    check_bias_not_quantized(model)
    return {"nodes": report.node_count, "bias_initializers": [b.__dict__ for b in report.bias_initializers]}


INT8_FORMATS = ("auto", "u8s8", "u8u8")
WEIGHT_TYPES = {"u8s8": "int8", "u8u8": "uint8"}  # activations are uint8 in both


def choose_int8_format(asked: str) -> tuple[str, str]:
    """(activation/weight format, why). u8s8 (uint8 activations, int8 weights) runs ONNX Runtime's fastest x86
    kernels, but without VNNI they saturate (VPMADDUBSW); u8u8 is exact on every CPU. ``auto`` keeps u8s8 only
    where this machine's kernels are exact."""
    from ..runtimes.onnxruntime import u8s8_exact

    if asked != "auto":
        return asked, "asked for"
    if u8s8_exact():
        return "u8s8", "this CPU's u8s8 kernels are exact (VNNI, AMX or Arm dot product)"
    return "u8u8", "this CPU's u8s8 kernels saturate (x86 without VNNI): u8u8 is exact here"


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    capabilities = TargetCapabilities(
        precisions=("fp32", "fp16", "int8"), dynamic_batch=True, devices=("cpu",),
        runtime_extra="onnxruntime", compile_extra="export",
    )

    def known_target_options(self) -> tuple[str, ...]:
        return ("per_channel", "int8_format")

    def _check_options(self, options: CompileOptions) -> None:
        if options.batch not in (None, "dynamic"):
            raise UnsupportedOption("onnxruntime bundles keep the dynamic batch axis; --batch is not supported")
        if options.precision != "int8" and options.calibration.method != "minmax":
            raise UnsupportedOption("--calib-method applies to int8 only")
        int8_format = options.target_options.get("int8_format", "auto")
        if int8_format not in INT8_FORMATS:
            raise UnsupportedOption(f"int8_format {int8_format!r}: use {', '.join(INT8_FORMATS)}")
        if options.precision != "int8" and "int8_format" in options.target_options:
            raise UnsupportedOption("int8_format applies to int8 only")
        per_channel = options.target_options.get("per_channel", True)
        if not isinstance(per_channel, bool):
            raise UnsupportedOption(f"per_channel takes true or false, got {per_channel!r}")

    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        require("onnxruntime", extra="onnxruntime")
        out = staging / ARTIFACT
        report: dict = {}
        runtime_options: dict = {}
        if options.precision == "fp32":
            shutil.copyfile(source.onnx_path, out)
        elif options.precision == "fp16":
            convert_onnx_fp16(source.onnx_path, out)
        else:
            int8_format, why = choose_int8_format(options.target_options.get("int8_format", "auto"))
            progress(f"onnxruntime int8 ({int8_format}): calibrating on {len(calibration)} images "
                     f"({options.calibration.method})")
            qdq = dataclasses.replace(QdqOptions.onnxruntime(method=options.calibration.method,
                                                             weight_type=WEIGHT_TYPES[int8_format]),
                                      per_channel=options.target_options.get("per_channel", True))
            report["quantization"] = quantize_qdq(source.onnx_path, out, calibration.inputs, qdq,
                                                  calibration.origin).to_dict()
            report["int8_format"] = {"format": int8_format, "why": why}
            runtime_options["int8_format"] = int8_format
        report["graph"] = check_single_bias(out, source.config)
        inputs, outputs = onnx_io_specs(source.config)
        import onnxruntime

        return BuiltArtifact(artifact=ARTIFACT, inputs=inputs, outputs=outputs, batch="dynamic",
                             runtime={"name": "onnxruntime", "extra": "onnxruntime", "options": runtime_options},
                             report=report, tool_versions={"onnxruntime": onnxruntime.__version__})

"""ONNX Runtime target: the verified ONNX as it is (FP32), converted to FP16, or statically quantized to INT8 QDQ."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from mait_deploy._deps import require
from mait_deploy.backends.onnxruntime.runner import u8s8_exact
from mait_deploy.device.data.sources import Dataset
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.activations import calibration_batch
from mait_deploy.host.compile.onnx_common import check_mask_constants, onnx_io_specs
from mait_deploy.host.compile.qdq import QdqOptions, describe_qdq, quantize_qdq
from mait_deploy.host.compile.sensitivity import nodes_for_layers
from mait_deploy.host.compile.source import ModelSource
from mait_deploy.host.compile.spec import BuiltArtifact, CompileOptions, TargetCapabilities
from mait_deploy.host.compile.target import Target
from mait_deploy.host.export.onnx import convert_onnx_fp16
from mait_deploy.options import Option
from mait_deploy.precision import FP16, FP32, INT8, PORTABLE_PRECISIONS

ARTIFACT = "model.onnx"


INT8_FORMATS = ("auto", "u8s8", "u8u8")
# Activations are asymmetric uint8 in both: the same 256 levels as asymmetric int8 (the zero point moves by 128),
# so the outputs are identical, but ORT's x86 u8s8 kernels are faster: mait_xxs24_224 INT8 1.34x FP32 at batch 1
# with uint8 vs 0.96x with int8 (measured side by side on the VNNI machine).
WEIGHT_TYPES = {"u8s8": "int8", "u8u8": "uint8"}


# int8 classes (device/profiling/isa.py) whose u8s8 kernels are exact: VNNI/AMX dot products, and Arm (sdot/udot
# or widening multiplies). x86 without VNNI runs VPMADDUBSW, whose int16 pair sums saturate.
U8S8_EXACT_CLASSES = ("x86-vnni", "x86-amx", "arm64-dotprod", "arm64")
U8S8_SATURATING_CLASSES = ("x86-avx512", "x86-avx2", "x86")


def choose_int8_format(asked: str, device_isa: str | None = None) -> tuple[str, str]:
    """(activation/weight format, why). u8s8 (uint8 activations, int8 weights) runs ONNX Runtime's fastest x86
    kernels, but without VNNI they saturate (VPMADDUBSW); u8u8 is exact on every CPU. ``auto`` keeps u8s8 only
    where the device's kernels are exact: the named device int8 class, or this machine's, probed."""

    if asked != "auto":
        return asked, "asked for"
    if device_isa is not None:
        if device_isa in U8S8_EXACT_CLASSES:
            return "u8s8", f"the device's int8 class {device_isa} (-O device_isa) has exact u8s8 kernels"
        return "u8u8", f"the device's int8 class {device_isa} (-O device_isa) saturates u8s8: u8u8 is exact there"
    if u8s8_exact():
        return "u8s8", "this CPU's u8s8 kernels are exact (VNNI, AMX or Arm dot product)"
    return "u8u8", "this CPU's u8s8 kernels saturate (x86 without VNNI): u8u8 is exact here"


class OnnxRuntimeTarget(Target):
    capabilities = TargetCapabilities(
        precisions=PORTABLE_PRECISIONS, dynamic_batch=True, devices=("cpu",), layer_fallback=True,
        typical_build_seconds={INT8: 4},
    )

    declared_options = (
        Option("per_channel", bool, True, "int8: one weight scale per output channel (else one per tensor)",
               precisions=("int8",)),
        Option("int8_format", str, "auto", "int8: uint8 activations with int8 (u8s8) or uint8 (u8u8) weights; auto "
               "keeps u8s8 only where the CPU's u8s8 kernels are exact", choices=INT8_FORMATS, precisions=("int8",)),
        Option("device_isa", str, None, "the device's int8 class when it is not this machine (`mait-deploy verify` "
               "on the device prints it): chooses the int8 format, and --precision auto times as that class",
               choices=U8S8_EXACT_CLASSES + U8S8_SATURATING_CLASSES,
               note="`mait-deploy verify` or `profile` on the device prints its int8 class"),
    )

    def _check_options(self, options: CompileOptions) -> None:
        if options.batch not in (None, "dynamic"):
            raise UnsupportedOption("onnxruntime bundles keep the dynamic batch axis; --batch is not supported")
        if options.precision != INT8 and options.calibration.method != "minmax":
            raise UnsupportedOption("--calib-method applies to int8 only")
        if self.setting(options, "device_isa") is not None and self.setting(options, "int8_format") != "auto":
            raise UnsupportedOption("device_isa chooses the int8 format; it cannot be combined with int8_format")

    def _quantization_detail(self, build: dict) -> str:
        fmt = build.get("int8_format", {}).get("format")
        return "; ".join(part for part in (f"{fmt} ({build['int8_format']['why']})" if fmt else "",
                                           describe_qdq(build["quantization"])) if part)

    def _qdq_options(self, options: CompileOptions, int8_format: str, float_nodes: tuple[str, ...] = ()) -> QdqOptions:
        return QdqOptions(method=options.calibration.method, activation_type="uint8",
                          weight_type=WEIGHT_TYPES[int8_format], nodes_to_exclude=float_nodes,
                          per_channel=self.setting(options, "per_channel"))

    def _int8_format(self, options: CompileOptions) -> tuple[str, str]:
        return choose_int8_format(self.setting(options, "int8_format"), self.setting(options, "device_isa"))

    def sensitivity_preset(self, options: CompileOptions) -> QdqOptions:
        return self._qdq_options(options, self._int8_format(options)[0])

    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        require("onnxruntime", extra="onnxruntime")
        out = staging / ARTIFACT
        report: dict = {}
        runtime_options: dict = {}
        if options.precision == FP32:
            shutil.copyfile(source.onnx_path, out)
        elif options.precision == FP16:
            convert_onnx_fp16(source.onnx_path, out)
        else:
            int8_format, why = self._int8_format(options)
            progress(f"onnxruntime int8 ({int8_format}): calibrating on {len(calibration)} images "
                     f"({options.calibration.method})")
            qdq = self._qdq_options(options, int8_format,
                                    tuple(nodes_for_layers(source.onnx_path, options.float_layers)))
            report["quantization"] = quantize_qdq(source.onnx_path, out, calibration.inputs, qdq,
                                                  calibration.origin,
                                                  calibration_batch(source.activation_bytes)).to_dict()
            report["int8_format"] = {"format": int8_format, "why": why}
            runtime_options["int8_format"] = int8_format
        report["graph"] = check_mask_constants(out, source)
        inputs, outputs = onnx_io_specs(source.config)
        import onnxruntime

        return BuiltArtifact(artifact=ARTIFACT, inputs=inputs, outputs=outputs, batch="dynamic",
                             runtime_options=runtime_options,
                             report=report, tool_versions={"onnxruntime": onnxruntime.__version__})

"""OpenVINO target: IR from the verified ONNX in FP32 (really FP32), FP16 (compressed weights) or INT8 (NNCF).

INT8 uses NNCF post-training quantization with the transformer preset on real calibration images, or, with the
``accuracy_control`` option, NNCF's accuracy-controlled quantization, which keeps the most sensitive layers in
float until the drop on labelled calibration images is within ``--max-accuracy-drop`` (the accuracy gate still
runs afterwards on held-out images).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np

from mait_deploy._deps import require
from mait_deploy._runtime_logs import runtime_stderr_silenced
from mait_deploy.backends.openvino._import import import_openvino
from mait_deploy.device.data.sources import Dataset
from mait_deploy.errors import ExportError, UnsupportedOption
from mait_deploy.host.compile.onnx_common import onnx_io_specs
from mait_deploy.host.compile.qdq import QdqOptions
from mait_deploy.host.compile.sensitivity import nodes_for_layers
from mait_deploy.host.compile.source import ModelSource
from mait_deploy.host.compile.spec import BuiltArtifact, CompileOptions, TargetCapabilities
from mait_deploy.host.compile.target import Target
from mait_deploy.host.export.graph import GENERATED_NAME
from mait_deploy.options import Option
from mait_deploy.precision import BF16, FP16, INT8, PRECISIONS

ARTIFACT = "model.xml"
WEIGHTS = "model.bin"
_PASS_THROUGH = ("Convert",)  # FP16 IR: Constant(f16) -> Convert -> Add
# How OpenVINO's CPU plugin on a bigger x86 host dispatches as a smaller one: oneDNN reads ONEDNN_MAX_CPU_ISA, the
# plugin's own kernels OV_CPU_MAX_ISA; both must be set before the library loads. Device int8 class -> (the cap,
# the host flag the cap needs). Measured (benchmarks/isa_cap.py): under the AVX2 cap an AVX-512 VNNI host picks
# the AVX2 convolution and attention kernels, and INT8 turns from faster than FP32 into slower, as on a Zen 3.
ISA_CAPS = {"x86-avx2": ("AVX2", "avx2"), "x86-avx512": ("AVX512_CORE", "avx512bw")}
DEVICE_ISAS = ("x86-avx2", "x86-avx512", "x86-vnni", "x86-amx")


def _producer(node_input: Any) -> Any:
    node = node_input.get_source_output().get_node()
    while node.get_type_name() in _PASS_THROUGH:
        node = node.input(0).get_source_output().get_node()
    return node


def _mask_inputs(op: Any) -> list[tuple[str, Any]]:
    """(op, input) pairs that can carry an attention mask: both sides of an Add or Mul feeding a Softmax, or the
    attention-mask input of the ScaledDotProductAttention op that OpenVINO fuses additive attention into."""
    kind = op.get_type_name()
    if kind == "ScaledDotProductAttention" and len(op.inputs()) > 3:
        return [("Add", op.input(3))]
    if kind in ("Add", "Multiply") and any(t.get_node().get_type_name() == "Softmax"
                                           for t in op.output(0).get_target_inputs()):
        return [("Add" if kind == "Add" else "Mul", node_input) for node_input in op.inputs()]
    return []


def ir_report(model: Any) -> dict[str, Any]:
    """Bias constants feeding the attention (by node identity), FakeQuantize count, compute layers left in float."""
    ops = list(model.get_ordered_ops())
    types = Counter(op.get_type_name() for op in ops)
    mask_users: Counter[int] = Counter()
    mask_info: dict[int, dict[str, Any]] = {}
    for op in ops:
        for kind, node_input in _mask_inputs(op):
            source = _producer(node_input)
            if source.get_type_name() == "Constant" and int(np.prod(source.get_output_shape(0))) > 1:
                key = source.get_instance_id()
                mask_users[key] += 1
                mask_info[key] = {"name": source.get_friendly_name(), "op": kind,
                                  "shape": [int(d) for d in source.get_output_shape(0)],
                                  "dtype": source.get_output_element_type(0).get_type_name(),
                                  "values": np.asarray(source.get_data())}
    float_layers = []
    for op in ops if types.get("FakeQuantize") else []:  # only meaningful in a quantized IR
        if op.get_type_name() not in ("MatMul", "Convolution"):
            continue
        if not any(_producer(i).get_type_name() == "FakeQuantize" for i in op.inputs()):
            float_layers.append(op.get_friendly_name())
    return {
        "ops": sum(types.values()), "fake_quantize": types.get("FakeQuantize", 0),
        "fused_attention": types.get("ScaledDotProductAttention", 0),
        "mask_constants": [{**mask_info[key], "consumers": count} for key, count in mask_users.items()],
        "float_compute_layers": float_layers, "matmuls": types.get("MatMul", 0),
    }


def stable_names(model: Any, source_names: Collection[str]) -> int:
    """Renumber the node names OpenVINO generated (``<Type>_<n>``, ``n`` from a counter global to the process) in
    graph order, the same name to the same new one (``<Type>_ir<k>``); how many nodes were renamed.

    Otherwise the same build wrote different IR text in a fresh process and in one that had built other bundles
    first (a build worker's bundle differed from the deploying process's by node names alone). Names from the ONNX
    (``source_names``) stay: this tool's exports have none of that form; another ONNX's that do are kept, and may
    still collide with generated ones."""
    renamed: dict[str, str] = {}
    count = 0
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        match = GENERATED_NAME.fullmatch(name)
        if match is None or name in source_names:
            continue
        op.set_friendly_name(renamed.setdefault(name, f"{match.group(1)}_ir{len(renamed)}"))
        count += 1
    return count


def float_layer_ops(model: Any, onnx_nodes: list[str]) -> list[str]:
    """The IR's MatMul/Convolution ops for ONNX compute nodes: OpenVINO names them after the node, with
    ``/WithoutBiases`` where it split a Gemm or Conv bias off."""
    wanted = set(onnx_nodes) | {f"{node}/WithoutBiases" for node in onnx_nodes}
    found = [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ("MatMul", "Convolution") and op.get_friendly_name() in wanted]
    missing = [node for node in onnx_nodes if node not in found and f"{node}/WithoutBiases" not in found]
    if missing:
        # Attention products (Q K^T, weights x V) that OpenVINO fused into ScaledDotProductAttention have no
        # MatMul of their own: the fused ops are kept in float as a whole (more float than asked, never less).
        fused = [op.get_friendly_name() for op in model.get_ordered_ops()
                 if op.get_type_name() == "ScaledDotProductAttention"]
        if not fused:
            raise ExportError(f"OpenVINO IR has no compute op for ONNX node(s) {', '.join(missing)}")
        found += [name for name in fused if name not in found]
    return found


class OpenVinoTarget(Target):
    capabilities = TargetCapabilities(
        precisions=PRECISIONS, dynamic_batch=True, devices=("CPU", "GPU", "NPU", "AUTO"),
        layer_fallback=True, typical_build_seconds={INT8: 8},
    )

    declared_options = (
        Option("device", str, "CPU", "the OpenVINO device the bundle runs on (CPU, GPU, NPU, AUTO...)"),
        Option("accuracy_control", bool, False, "int8: NNCF's accuracy-controlled quantization (keeps layers in "
               "float until the drop is within --max-accuracy-drop; needs labelled calibration data)",
               precisions=("int8",)),
        Option("subset_size", int, None, "int8: calibration images NNCF uses (default: all of --calib-count)",
               minimum=1, precisions=("int8",)),
        Option("fast_bias_correction", bool, True, "int8: NNCF's fast bias correction (else the slower full one)",
               precisions=("int8",)),
        Option("device_isa", str, None, "the device's CPU class when it is not this machine: --precision auto "
               "times the candidates with OpenVINO's kernels capped to it", choices=DEVICE_ISAS,
               note="OpenVINO's CPU plugin runs on x86; `mait-deploy verify` on the device prints its class"),
    )

    def timing_environment(self, device_isa: str | None) -> dict[str, str] | None:
        from mait_deploy.device.profiling.isa import cpu_isa

        own = super().timing_environment(device_isa)  # {} for this machine's own class
        cap, needs = ISA_CAPS.get(device_isa, (None, None))
        if own is not None or cap is None or needs not in cpu_isa()["flags"]:
            return own
        return {"ONEDNN_MAX_CPU_ISA": cap, "OV_CPU_MAX_ISA": cap}

    def hardware_lacks(self, options: CompileOptions) -> str | None:
        """BF16: the FP32 IR run with a bf16 inference precision, which the device must compute (the CPU plugin
        on AVX512_BF16 or AMX x86 CPUs and on Armv8.6 BF16 cores); the gate and the golden outputs run it here."""
        if options.precision != BF16:
            return None
        from mait_deploy.device.profiling.isa import cpu_isa

        device_isa = self.setting(options, "device_isa")
        if device_isa not in (None, cpu_isa()["int8_class"]):
            # An int8 class says nothing of bfloat16 (an AVX2 x86 has none, an AVX-512 VNNI one may or may not).
            return (f"openvino bf16 for another CPU (-O device_isa={device_isa}) cannot be gated here: its int8 "
                    f"class does not say whether it computes bfloat16; build bf16 on a host of that CPU")
        ov = import_openvino()
        device = self.setting(options, "device")
        try:
            capabilities = list(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
        except RuntimeError as err:
            return f"openvino bf16: cannot ask OpenVINO {device} for its capabilities ({str(err).splitlines()[0]})"
        if "BF16" in capabilities:
            return None
        return (f"openvino bf16 needs a device that computes in bfloat16 (x86 with AVX512_BF16 or AMX, Arm with "
                f"BF16); OpenVINO {device} here offers {', '.join(capabilities)}: build fp32, fp16 or int8")

    def _check_options(self, options: CompileOptions) -> None:
        if options.batch not in (None, "dynamic"):
            raise UnsupportedOption("openvino bundles keep the dynamic batch axis; --batch is not supported")
        if options.calibration.method != "minmax":
            raise UnsupportedOption("openvino int8 calibrates with NNCF's own statistics; --calib-method is "
                                    "for the onnxruntime/tensorrt targets")

    def _quantization_detail(self, build: dict[str, Any]) -> str:
        ir = build.get("ir", {})
        if "fake_quantize" not in ir:
            return ""
        return f"{ir['fake_quantize']} FakeQuantize, {len(ir['float_compute_layers'])} MatMul/Conv layers left in float"

    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        ov = import_openvino()
        model = ov.convert_model(str(source.onnx_path))
        report: dict[str, Any] = {}
        if options.precision == INT8:
            model, report["quantization"] = self._quantize(model, source, options, calibration, progress)
        stable_names(model, source.onnx_node_names)
        # save_model compresses weights to FP16 unless told not to: an FP32 bundle must really be FP32.
        ov.save_model(model, str(staging / ARTIFACT), compress_to_fp16=options.precision == FP16)
        report["ir"] = ir_report(ov.Core().read_model(str(staging / ARTIFACT)))
        constants = report["ir"]["mask_constants"]
        problems = source.mask_problems([(c["op"], c.pop("values"), c["consumers"]) for c in constants])
        if problems:
            raise ExportError(f"OpenVINO IR: {'; '.join(problems)}")
        inputs, outputs = onnx_io_specs(source.config)
        device = self.setting(options, "device")
        # BF16 is the FP32 IR computed in bfloat16: the precision is the runtime's, recorded for every runner.
        precision = {"inference_precision": "bf16"} if options.precision == BF16 else {}
        return BuiltArtifact(
            artifact=ARTIFACT, side_files=[WEIGHTS], inputs=inputs, outputs=outputs, batch="dynamic",
            runtime_options={"device": device, **precision},
            report=report, tool_versions={"openvino": ov.get_version()},
        )

    def _quantize(self, model: Any, source: ModelSource, options: CompileOptions, calibration: Dataset,
                  progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
        nncf = require("nncf", extra="nncf")
        ignored = float_layer_ops(model, nodes_for_layers(source.onnx_path, options.float_layers))
        with contextlib.redirect_stdout(sys.stderr):  # NNCF draws progress bars on stdout; keep stdout for --json
            return self._run_nncf(nncf, model, options, calibration, progress, ignored)

    def sensitivity_preset(self, options: CompileOptions) -> QdqOptions:
        # A proxy for NNCF's CPU INT8 (symmetric per-channel weights, symmetric activations) in ONNX Runtime:
        # which layers are fragile is a property of their weights and activations more than of the runtime.
        return QdqOptions(method=options.calibration.method, activation_symmetric=True, weight_symmetric=True)

    def _run_nncf(self, nncf: Any, model: Any, options: CompileOptions, calibration: Dataset,
                  progress: Callable[[str], None], ignored: list[str]) -> tuple[Any, dict[str, Any]]:
        import time

        started = time.perf_counter()
        samples = [calibration.inputs[i:i + 1] for i in range(len(calibration))]
        dataset = nncf.Dataset(samples)
        subset = self.setting(options, "subset_size") or len(samples)
        common = dict(model_type=nncf.ModelType.TRANSFORMER, subset_size=subset,
                      fast_bias_correction=self.setting(options, "fast_bias_correction"))
        if ignored:
            common["ignored_scope"] = nncf.IgnoredScope(names=ignored)
        if self.setting(options, "accuracy_control"):
            if calibration.labels is None:
                raise UnsupportedOption("accuracy_control needs labelled calibration data")
            progress(f"openvino int8: NNCF accuracy-controlled quantization (max drop "
                     f"{options.max_accuracy_drop} points)")
            validation = nncf.Dataset(list(zip(samples, calibration.labels)), lambda item: item[0])

            def validate(compiled: Any, items: Any) -> float:
                output = compiled.output(0)
                hits = [int(np.argmax(compiled(image)[output]) == label) for image, label in items]
                return float(np.mean(hits))

            with runtime_stderr_silenced():  # NNCF's progress bars (rich) have no switch
                quantized = nncf.quantize_with_accuracy_control(
                    model, dataset, validation, validation_fn=validate, max_drop=options.max_accuracy_drop / 100,
                    drop_type=nncf.DropType.ABSOLUTE, **common)
            mode = "accuracy_control"
        else:
            progress(f"openvino int8: NNCF post-training quantization on {len(samples)} images")
            with runtime_stderr_silenced():  # NNCF's progress bars (rich) have no switch
                quantized = nncf.quantize(model, dataset, **common)
            mode = "ptq"
        return quantized, {"method": f"nncf {mode} (transformer preset)", "calibration_images": len(samples),
                           "subset_size": subset, "calibration_data": calibration.origin, "ignored_scope": ignored,
                           "seconds": round(time.perf_counter() - started, 2), "nncf": nncf.__version__}

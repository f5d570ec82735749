"""LiteRT (TFLite) target: converted straight from the PyTorch model with litert-torch (no TensorFlow, no onnx2tf).

- FP32: ``litert_torch.convert``; FP16: FP16 weights with ai-edge-quantizer's float-casting recipe; INT8: PT2E
  static quantization (torchao prepare/convert + litert-torch's quantizer) calibrated on real images, applied to
  Linear and Conv layers only so that the attention-bias Add, Softmax, LayerNorm and GELU stay in float.
- LiteRT models have a static batch (resizing breaks XNNPACK, dynamic shapes fail to convert): one file per batch
  size, batch 1 by default. A request for a dynamic batch is an error.
- After conversion the file must load in the interpreter and hold no Flex/select-TF or custom ops; a conversion
  that "succeeds" but cannot run is a failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy._deps import package_versions, require
from mait_deploy._runtime_logs import runtime_stderr_silenced
from mait_deploy.backends.litert.graph import mask_constants
from mait_deploy.backends.litert.runner import make_interpreter
from mait_deploy.device.data.sources import Dataset
from mait_deploy.device.manifest import TensorSpec
from mait_deploy.errors import ExportError, UnsupportedOption
from mait_deploy.host.compile.qdq import QdqOptions
from mait_deploy.host.compile.source import ModelSource
from mait_deploy.host.compile.spec import BuiltArtifact, CompileOptions, TargetCapabilities
from mait_deploy.host.compile.target import Target
from mait_deploy.host.export.onnx import INPUT_NAME, OUTPUT_NAME
from mait_deploy.options import Option
from mait_deploy.precision import FP16, FP32, INT8, PORTABLE_PRECISIONS

ARTIFACT = "model.tflite"
MAX_CALIBRATION_BATCHES = 512


@contextlib.contextmanager
def _quiet() -> Any:
    """litert-torch and TensorFlow's MLIR passes print progress and warnings; keep stdout clean for --json and
    the terminal to our own progress display (litert-torch's step log is ~30 lines per conversion)."""
    from litert_torch import progress as litert_progress

    console = litert_progress.console
    was_quiet = console.quiet
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        previous = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        console.quiet = True
        try:
            yield
        finally:
            console.quiet = was_quiet
            logging.getLogger().setLevel(previous)


def check_tflite(path: Path, batch: int, sample_shape: tuple[int, ...]) -> dict[str, Any]:
    """Load the model in the interpreter and refuse Flex/custom ops and unexpected input shapes."""

    try:
        interpreter, package = make_interpreter(str(path), 1, xnnpack=True)
    except Exception as err:
        raise ExportError(f"the converted model does not load in the LiteRT interpreter: {err}") from err
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    flex = [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "FlexErf")]
    if flex:
        raise ExportError(f"the converted model needs {', '.join(flex)}, which the LiteRT interpreter cannot run")
    detail = interpreter.get_input_details()[0]
    shape = tuple(int(d) for d in detail["shape"])
    if shape != (batch, *sample_shape):
        raise ExportError(f"converted input shape {shape}, expected {(batch, *sample_shape)}")
    return {"ops": ops, "delegated": "DELEGATE" in ops, "input_dtype": np.dtype(detail["dtype"]).name,
            "output_dtype": np.dtype(interpreter.get_output_details()[0]["dtype"]).name, "interpreter": package}


class LiteRtTarget(Target):
    capabilities = TargetCapabilities(
        precisions=PORTABLE_PRECISIONS, dynamic_batch=False, devices=("cpu",), needs_torch_model=True, default_batch=1,
        layer_fallback=True,
        # Which precision is fastest with XNNPACK depends on the CPU (INT8 won on an AVX-512 VNNI host, lost on an
        # AVX2 one): the default builds each and keeps the fastest that passes the gate, timed side by side.
        default_precision="auto", typical_build_seconds={FP32: 9, FP16: 8, INT8: 13},
    )

    declared_options = (
        Option("xnnpack", bool, True, "run on LiteRT's XNNPACK delegate (else its reference CPU kernels)"),
    )

    def sensitivity_preset(self, options: CompileOptions) -> QdqOptions:
        # PT2E quantizes Linear and Conv only (Gemm/Conv in the ONNX ranking), symmetric, per channel.
        return QdqOptions(op_types=("Gemm", "Conv"), activation_symmetric=True, weight_symmetric=True)

    def _check_options(self, options: CompileOptions) -> None:
        if options.batch == "dynamic":
            raise UnsupportedOption("LiteRT models have a static batch (resizing breaks XNNPACK, dynamic shapes fail "
                                    "to convert): pass --batch N, one bundle per batch size")
        if options.calibration.method != "minmax":
            raise UnsupportedOption("litert int8 uses PT2E's histogram observers; --calib-method is for the "
                                    "onnxruntime/tensorrt targets")

    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        require("litert_torch", extra="litert-convert")
        torch = require("torch", extra="export")
        batch = int(options.batch or self.capabilities.default_batch)
        model = source.torch_model.eval()
        if options.float_layers:
            layers = {name for name, module in model.named_modules()
                      if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))}
            unknown = [name for name in options.float_layers if name not in layers]
            if unknown:
                raise UnsupportedOption(f"unknown layer(s) {', '.join(unknown)} (LiteRT quantizes Linear and Conv "
                                        f"modules, named like {', '.join(sorted(layers)[:4])}, ...)")
        sample = torch.zeros((batch, *source.config.input_shape))
        out = staging / ARTIFACT
        report: dict[str, Any] = {"batch": batch}
        with _quiet():
            if options.precision == INT8:
                progress(f"litert int8: PT2E calibration on {len(calibration)} images")
                report["quantization"] = self._convert_int8(model, sample, calibration, out, batch,
                                                            options.float_layers)
            else:
                self._convert_float(model, sample, out)
                if options.precision == FP16:
                    report["quantization"] = self._weights_to_fp16(out)
        report["interpreter_check"] = check_tflite(out, batch, source.config.input_shape)
        constants = mask_constants(out)
        problems = source.mask_problems([(c["op"], c.pop("values"), c["consumers"]) for c in constants])
        if problems:
            raise ExportError(f"LiteRT model: {'; '.join(problems)}")
        report["mask_constants"] = constants
        shape = [batch, *source.config.input_shape]
        return BuiltArtifact(
            artifact=ARTIFACT, inputs=[TensorSpec(INPUT_NAME, shape, "float32")],
            outputs=[TensorSpec(OUTPUT_NAME, [batch, source.config.num_classes], "float32")], batch=batch,
            runtime_options={"xnnpack": self.setting(options, "xnnpack")},
            report=report,
            tool_versions=package_versions("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao"),
        )

    @staticmethod
    def _convert_float(model: Any, sample: Any, out: Path) -> None:
        import litert_torch

        try:
            litert_torch.convert(model, (sample,)).export(str(out))
        except Exception as err:
            raise ExportError(f"litert-torch conversion failed: {str(err).splitlines()[0]}") from err

    @staticmethod
    def _weights_to_fp16(path: Path) -> dict[str, Any]:
        from ai_edge_quantizer import qtyping, quantizer, recipe_manager
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                       num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        engine = quantizer.Quantizer(str(path))
        engine.load_quantization_recipe(manager.get_quantization_recipe())
        # Its report goes to stdout, its tqdm bars (disable=False passed explicitly, so TQDM_DISABLE cannot) to fd 2.
        with contextlib.redirect_stdout(io.StringIO()), runtime_stderr_silenced():
            engine.quantize().export_model(str(path), overwrite=True)
        return {"method": "ai-edge-quantizer float_casting (FP16 weights, FP32 compute)"}

    @staticmethod
    def _convert_int8(model: Any, sample: Any, calibration: Dataset, out: Path, batch: int,
                      float_layers: tuple[str, ...] = ()) -> dict[str, Any]:
        import litert_torch
        import torch
        from litert_torch.quantize.pt2e_quantizer import (
            PT2EQuantizer,
            get_symmetric_quantization_config,
        )
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        class LinearConvQuantizer(PT2EQuantizer):
            # Only these patterns (the stock list also annotates add/mul/cat...): the attention-bias Add, Softmax,
            # LayerNorm and GELU stay in float. (set_module_type does not match torch.export's string module
            # stacks in this litert-torch version, so the patterns are restricted instead.)
            STATIC_OPS = ["linear", "addmm", "conv"]

            def _annotate_for_static_quantization_config(self, model: Any) -> Any:
                # Layers kept in float are left unannotated. The stock set_module_name cannot do it (it refuses a
                # None config, and its filter expects "L__self___a_b" stack keys; torch.export writes the module
                # path, e.g. "blocks.0.mlp.fc1", as the first element of each nn_module_stack value).
                def quantize(node: Any) -> bool:
                    paths = {value[0] for value in node.meta.get("nn_module_stack", {}).values()}
                    return not paths & set(float_layers)

                self._annotate_all_static_patterns(model, self.global_config, quantize)
                return model

        config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        quantizer = LinearConvQuantizer().set_global(config)
        try:
            exported = torch.export.export(model, (sample,)).module()
            prepared = prepare_pt2e(exported, quantizer)
            inputs = calibration.inputs
            usable = len(inputs) // batch * batch
            if usable == 0:
                raise UnsupportedOption(f"need at least {batch} calibration images for batch {batch}")
            with torch.no_grad():
                for start in range(0, min(usable, MAX_CALIBRATION_BATCHES * batch), batch):
                    prepared(torch.from_numpy(inputs[start:start + batch]))
            converted = convert_pt2e(prepared, fold_quantize=False)
            litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
                str(out))
        except UnsupportedOption:
            raise
        except Exception as err:
            raise ExportError(f"litert-torch PT2E INT8 conversion failed: {str(err).splitlines()[0]}") from err
        return {"method": "PT2E static (torchao prepare/convert, litert-torch quantizer), per-channel symmetric "
                          "INT8 weights, INT8 activations; Linear and Conv only",
                "float_layers": list(float_layers),
                "calibration_images": int(min(usable, MAX_CALIBRATION_BATCHES * batch)),
                "calibration_data": calibration.origin}


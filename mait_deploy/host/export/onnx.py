"""PyTorch -> ONNX with the locality masks as one shared constant, simplified with onnxsim and verified.

Exporter choice: torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``). The TorchScript exporter is
deprecated in torch 2.x. The dynamo exporter silently fixes the batch to 1 when traced with a batch-1 example,
so we always trace with a batch-2 example and ``Dim("batch")``, then prove in ONNX Runtime that batches 1, 3, 8
and 32 run (see verify.py). It natively emits opset 18; lower opsets go through ONNX's version converter.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from mait_deploy._deps import package_versions, require
from mait_deploy._io import atomic_path, check_output, write_json
from mait_deploy.errors import ExportError, UnsupportedOption
from mait_deploy.host.export import graph
from mait_deploy.host.export.parity import (
    ParityReport,
    ReferenceInputs,
    Tolerance,
    fixed_batch,
    ort_predictor,
    reference_inputs,
    verify_onnx,
    verify_outputs,
)
from mait_deploy.host.model.masks import check_constants
from mait_deploy.host.model.zoo import resolve_checkpoint
from mait_deploy.precision import FP16

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET_RANGE = (17, 20)
PRECISIONS = ("fp32", "fp16")
EXAMPLE_BATCH = 2  # >= 2: with a batch-1 example the dynamo exporter drops the dynamic batch axis


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``batch`` None gives a dynamic batch axis; an int fixes it."""

    opset: int = 17
    precision: str = "fp32"
    batch: int | None = None
    simplify: bool = True
    fp16_io: bool = False  # FP16 export only: also make the input/output FP16
    verify: bool = True
    tolerance: Tolerance | None = None
    force: bool = False

    def __post_init__(self) -> None:
        low, high = OPSET_RANGE
        if not low <= self.opset <= high:
            raise UnsupportedOption(f"opset {self.opset} is out of range: use {low} to {high}")
        if self.precision not in PRECISIONS:
            raise UnsupportedOption(f"precision {self.precision!r} is not supported for ONNX export: use fp32 or fp16")
        if self.batch is not None and self.batch < 1:
            raise UnsupportedOption(f"batch must be a positive integer, got {self.batch}")
        if self.fp16_io and self.precision != FP16:
            raise UnsupportedOption("fp16 inputs/outputs need --precision fp16")


@dataclass
class ExportResult:
    path: str
    report_path: str
    options: dict[str, Any]
    model: dict[str, Any]
    file_bytes: int
    opset: int
    nodes_exported: int
    nodes_simplified: int | None
    graph: dict[str, Any]
    duplicates_merged: int
    parity: dict[str, Any] | None
    timings_s: dict[str, float]
    tool_versions: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tool_versions() -> dict[str, str]:
    return package_versions("mait-deploy", "torch", "onnx", "onnxscript", "onnxsim", "onnxruntime")


def _load_model(model_or_checkpoint: Any) -> Any:
    from mait_deploy.host.model.checkpoint import load_checkpoint
    from mait_deploy.host.model.mait import MaiT

    if isinstance(model_or_checkpoint, MaiT):
        return model_or_checkpoint.eval()
    return load_checkpoint(resolve_checkpoint(model_or_checkpoint))


def _torch_export(model: Any, batch: int | None, opset: int) -> Any:
    import contextlib
    import io
    import logging
    import warnings

    import torch
    from torch.export import Dim

    example = torch.zeros((batch or EXAMPLE_BATCH, *model.config.input_shape))
    dynamic = None if batch is not None else {"x": {0: Dim("batch")}}
    # The exporter logs through several loggers and prints its opset conversion; keep the CLI output clean.
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [logger.level for logger in quiet]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(model, (example,), None, dynamo=True, dynamic_shapes=dynamic,
                                        opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        verbose=False)
        except Exception as err:
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ExportError(f"torch.onnx.export failed: {why}") from err
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)
    return program.model_proto


def _to_fp16(model_proto: Any, keep_io_types: bool) -> Any:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # The -1e4 bias is exact in FP16; the converter's clamp (to +-65504) never touches it.
    converted = convert_float_to_float16(model_proto, keep_io_types=keep_io_types, disable_shape_infer=False)
    graph.topological_sort(converted)
    return converted


def convert_onnx_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str], keep_io_types: bool = True) -> None:
    """FP16 weights and compute from an FP32 ONNX file; inputs/outputs stay FP32 unless ``keep_io_types`` is off."""
    onnx = require("onnx", extra="export")
    proto = _to_fp16(onnx.load(str(src)), keep_io_types=keep_io_types)
    graph.set_metadata(proto, {"precision": FP16})
    onnx.save_model(proto, str(dst))


def _simplify(model_proto: Any) -> Any:
    onnxsim = require("onnxsim", extra="export")
    simplified, ok = onnxsim.simplify(model_proto)
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model")
    return simplified


def _check_graph(report: graph.GraphReport, config: Any) -> list[str]:
    """Problems that make an export unacceptable (empty list = fine)."""

    problems = check_constants([(c.op, c.array, c.consumers) for c in report.mask_constants], config)
    if report.mask_building_ops:
        problems.append(f"mask-building operators remain: {report.mask_building_ops}")
    if report.non_finite_initializers:
        problems.append(f"non-finite constants: {report.non_finite_initializers[:3]}")
    if report.fp16_unsafe_initializers:
        problems.append(f"constants outside the FP16 range: {report.fp16_unsafe_initializers[:3]}")
    return problems


def onnx_metadata(config: Any, precision: str, batch: int | None) -> dict[str, Any]:
    return {
        "model": config.to_dict(), "mask": config.mask.to_dict(), "preprocess": config.preprocess.to_dict(),
        "labels": list(config.label_names()), "precision": precision,
        "batch": "dynamic" if batch is None else batch, "input": INPUT_NAME, "output": OUTPUT_NAME,
    }


def export_onnx(model_or_checkpoint: Any, out_path: str | os.PathLike[str], options: ExportOptions | None = None,
                progress: Callable[[str], None] | None = None, refs: ReferenceInputs | None = None) -> ExportResult:
    """Export a MaiT (model object, checkpoint path or shipped name) to a verified ONNX file.

    The file appears at ``out_path`` only when export, graph checks and parity all pass; a JSON report is written
    beside it (``<out_path>.json``).
    """
    onnx = require("onnx", extra="export")
    options = options or ExportOptions()
    out_path = Path(out_path)
    report_path = out_path.with_name(out_path.name + ".json")
    check_output(out_path, options.force, ours=onnx_ownership, what="exported ONNX")
    step = progress or (lambda message: None)
    timings: dict[str, float] = {}
    notes: list[str] = []

    step("loading model")
    model = _load_model(model_or_checkpoint)
    config = model.config

    step("exporting with torch.onnx (dynamo)")
    started = time.perf_counter()
    proto = _torch_export(model, options.batch, options.opset)
    timings["export"] = round(time.perf_counter() - started, 3)
    nodes_exported = len(proto.graph.node)
    if proto.opset_import[0].version != options.opset:
        raise ExportError(f"exporter produced opset {proto.opset_import[0].version}, asked for {options.opset}")

    nodes_simplified = None
    if options.simplify:
        step("simplifying with onnxsim")
        started = time.perf_counter()
        proto = _simplify(proto)
        timings["simplify"] = round(time.perf_counter() - started, 3)
        nodes_simplified = len(proto.graph.node)
    if options.precision == FP16:
        step("converting to FP16")
        proto = _to_fp16(proto, keep_io_types=not options.fp16_io)
    merged = graph.deduplicate_initializers(proto)
    if merged:
        notes.append(f"merged {merged} duplicated constants back into shared initializers")

    graph.rename_generated(proto)
    report = graph.analyze(proto)
    problems = _check_graph(report, config)
    if problems:
        raise ExportError(f"exported graph failed its checks: {'; '.join(problems)}")
    graph.set_metadata(proto, onnx_metadata(config, options.precision, options.batch))
    try:
        onnx.checker.check_model(proto, full_check=False)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"onnx.checker rejected the graph: {str(err).splitlines()[0]}") from err

    parity: ParityReport | None = None
    with atomic_path(out_path, suffix=".onnx", replace=options.force) as temp:
        onnx.save_model(proto, str(temp))
        if options.verify:
            step("verifying against PyTorch in ONNX Runtime")
            started = time.perf_counter()
            parity = _verify(temp, model, options, refs or reference_inputs(config))
            timings["verify"] = round(time.perf_counter() - started, 3)
        result = ExportResult(
            path=str(out_path), report_path=str(report_path), options=_options_dict(options),
            model={"name": config.name, "params": sum(p.numel() for p in model.parameters()),
                   "mask": config.mask.to_dict()},
            file_bytes=temp.stat().st_size, opset=options.opset, nodes_exported=nodes_exported,
            nodes_simplified=nodes_simplified, graph=report.to_dict(), duplicates_merged=merged,
            parity=parity.to_dict() if parity else None, timings_s=timings, tool_versions=tool_versions(),
            notes=notes,
        )
        write_json(report_path, result.to_dict())
    return result


def _verify(path: Path, model: Any, options: ExportOptions, refs: ReferenceInputs) -> ParityReport:
    if not options.fp16_io:
        return verify_onnx(str(path), model, options.precision, options.tolerance, refs, options.batch)
    import numpy as np

    predict = ort_predictor(str(path))

    def via_fp16_io(batch: np.ndarray) -> np.ndarray:
        return np.asarray(predict(batch.astype(np.float16)), dtype=np.float32)

    runner = via_fp16_io if options.batch is None else fixed_batch(via_fp16_io, options.batch)
    return verify_outputs(runner, model, options.precision, options.tolerance, refs, what=str(path))


def _options_dict(options: ExportOptions) -> dict[str, Any]:
    data = asdict(options)
    data["batch"] = "dynamic" if options.batch is None else options.batch
    return data


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``mait.`` metadata of an ONNX file (config, mask, preprocessing, labels, precision)."""
    onnx = require("onnx", extra="export")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ExportError(f"cannot read ONNX file {path}: {err}") from err
    return graph.get_metadata(proto)


def onnx_ownership(path: Path) -> str | None:
    """None when ``path`` is an ONNX file mait-deploy exported (it carries our metadata), else why not."""
    try:
        return None if "model" in read_onnx_metadata(path) else "an ONNX file without mait-deploy's metadata"
    except ExportError:
        return "not an ONNX file"


__all__ = ["ExportOptions", "ExportResult", "export_onnx", "read_onnx_metadata"]

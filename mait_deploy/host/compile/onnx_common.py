"""ONNX helpers that several backends build on (no backend owns them): I/O specs and the shared mask-constant check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mait_deploy._deps import require
from mait_deploy.device.manifest import TensorSpec
from mait_deploy.errors import ExportError
from mait_deploy.host.compile.qdq import check_mask_not_quantized
from mait_deploy.host.export import graph
from mait_deploy.host.export.onnx import INPUT_NAME, OUTPUT_NAME
from mait_deploy.host.model.masks import check_constants


def onnx_io_specs(config: Any, batch: int | str = "batch") -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The model's input and output as the exporter names them ("batch" for a dynamic axis)."""
    return ([TensorSpec(INPUT_NAME, [batch, *config.input_shape], "float32")],
            [TensorSpec(OUTPUT_NAME, [batch, config.num_classes], "float32")])


def check_mask_constants(path: Path, source: Any) -> dict[str, Any]:
    """The masks of ``source`` (a ModelSource; a bare MaiTConfig, as plug-ins written before external sources
    pass, is checked the same way) must still be one shared constant per pattern after conversion/quantization,
    and never quantized; returns the graph report."""
    onnx = require("onnx", extra="export")
    model = onnx.load(str(path))
    report = graph.analyze(model)
    found = [(c.op, c.array, c.consumers) for c in report.mask_constants]
    if hasattr(source, "mask_problems"):
        problems = source.mask_problems(found)
    else:
        problems = check_constants(found, source)
    if problems:
        raise ExportError(f"{path.name}: {'; '.join(problems)}")
    if not getattr(source, "external", None):
        check_mask_not_quantized(model)
    return {"nodes": report.node_count, "mask_constants": [c.to_dict() for c in report.mask_constants]}

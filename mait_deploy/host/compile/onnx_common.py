"""ONNX helpers that several backends build on (no backend owns them): I/O specs and the shared-bias check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mait_deploy._deps import require
from mait_deploy.device.manifest import TensorSpec
from mait_deploy.errors import ExportError
from mait_deploy.host.compile.qdq import check_bias_not_quantized
from mait_deploy.host.export import graph
from mait_deploy.host.export.onnx import INPUT_NAME, OUTPUT_NAME


def onnx_io_specs(config: Any, batch: int | str = "batch") -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The model's input and output as the exporter names them ("batch" for a dynamic axis)."""
    return ([TensorSpec(INPUT_NAME, [batch, *config.input_shape], "float32")],
            [TensorSpec(OUTPUT_NAME, [batch, config.num_classes], "float32")])


def check_single_bias(path: Path, config: Any) -> dict[str, Any]:
    """The bias must still be one shared constant after conversion/quantization; returns the graph report."""
    onnx = require("onnx", extra="export")
    model = onnx.load(str(path))
    report = graph.analyze(model)
    masked = bool(config.mask.heads(config.num_heads)) and bool(config.mask.blocks(config.depth))
    if masked and len(report.bias_initializers) != 1:
        raise ExportError(f"{path.name}: expected one shared bias constant, found {len(report.bias_initializers)}")
    check_bias_not_quantized(model)
    return {"nodes": report.node_count, "bias_initializers": [b.__dict__ for b in report.bias_initializers]}

"""Per-layer INT8 sensitivity and the fallback that keeps the most sensitive layers in float.

A layer is a quantizable compute node of the FP32 ONNX, named as the model names it: the torch module of a
Linear/Conv (``blocks.3.mlp.fc1``, from its parameter names, which the exporter keeps on the bias or weight), or
the ONNX node name of an activation x activation MatMul (the attention products). The same names work for every
target: ONNX Runtime and TensorRT exclude the node from Q/DQ, OpenVINO puts it in NNCF's ignored scope.

Sensitivity of a layer = the error of the logits (relative RMS against FP32, on calibration images) when only that
layer is quantized, with the target's own Q/DQ preset. The fallback (``Target.compile`` when the gate fails) keeps
the top 1, 2, 4, ... layers in float until the gate passes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mait_deploy._deps import require
from mait_deploy._plots import pyplot, save_png
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.qdq import DEFAULT_OP_TYPES, QdqOptions, quantize_qdq

PARAMETER_SUFFIXES = (".weight", ".bias")


@dataclass(frozen=True)
class Layer:
    name: str  # module path or ONNX node name
    node: str  # ONNX node name
    op: str


@dataclass
class LayerSensitivity:
    layer: str
    node: str
    op: str
    error: float  # relative RMS error of the logits with only this layer in INT8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantizable_layers(onnx_path: str | os.PathLike[str], op_types: Sequence[str] = DEFAULT_OP_TYPES) -> list[Layer]:
    """The compute nodes a Q/DQ recipe quantizes, in graph order, with their layer names."""
    onnx = require("onnx", extra="export")
    model = onnx.load(str(onnx_path))
    layers = []
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        module = next((name[:-len(suffix)] for name in node.input[1:] for suffix in PARAMETER_SUFFIXES
                       if name.endswith(suffix)), None)
        layers.append(Layer(name=module or node.name, node=node.name, op=node.op_type))
    return layers


def nodes_for_layers(onnx_path: str | os.PathLike[str], names: Sequence[str]) -> list[str]:
    """ONNX node names of the named layers; an unknown name is an error that lists a few known ones."""
    layers = {layer.name: layer.node for layer in quantizable_layers(onnx_path)}
    unknown = [name for name in names if name not in layers]
    if unknown:
        known = ", ".join(list(layers)[:6])
        raise UnsupportedOption(f"unknown layer(s) {', '.join(unknown)}; layers are named like: {known}, ...")
    return [layers[name] for name in names]


def layer_sensitivity(onnx_path: str | os.PathLike[str], calibration_inputs: np.ndarray, preset: QdqOptions,
                      count: int = 64, progress: Callable[[int, int], None] | None = None) -> list[LayerSensitivity]:
    """Every quantizable layer's sensitivity, most sensitive first (one small Q/DQ model per layer)."""
    ort = require("onnxruntime", extra="onnxruntime")
    inputs = np.ascontiguousarray(calibration_inputs[:count], dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3

    def logits(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: inputs})[0]

    reference = logits(Path(onnx_path))
    scale = float(np.sqrt(np.mean(reference**2))) or 1.0
    layers = quantizable_layers(onnx_path, preset.op_types)
    results = []
    with tempfile.TemporaryDirectory(prefix="mait-deploy-sensitivity-") as folder:
        for index, layer in enumerate(layers):
            path = Path(folder) / f"{index}.onnx"
            single = QdqOptions(**{**asdict(preset), "nodes_to_exclude": (), "nodes_to_quantize": (layer.node,)})
            quantize_qdq(onnx_path, path, inputs, single)
            error = float(np.sqrt(np.mean((logits(path) - reference) ** 2))) / scale
            results.append(LayerSensitivity(layer=layer.name, node=layer.node, op=layer.op, error=round(error, 6)))
            path.unlink()
            if progress:
                progress(index + 1, len(layers))
    return sorted(results, key=lambda item: item.error, reverse=True)


def fallback_sizes(count: int) -> list[int]:
    """How many of the most sensitive layers each fallback attempt keeps in float: 1, 2, 4, ... up to all."""
    sizes, k = [], 1
    while k < count:
        sizes.append(k)
        k *= 2
    return sizes + [count] if count else []


def plot_sensitivity(ranking: Sequence[dict[str, Any]], kept_float: Sequence[str], path: str | os.PathLike[str],
                     title: str = "") -> None:
    """Bar chart of each layer's error with only it in INT8 (most sensitive first), kept-float layers in red."""

    plt = pyplot()
    shown = list(ranking)[:40]
    figure, axes = plt.subplots(figsize=(7, 1 + 0.22 * len(shown)))
    names = [row["layer"] for row in shown][::-1]
    errors = [row["error"] for row in shown][::-1]
    colours = ["tab:red" if name in kept_float else "tab:blue" for name in names]
    axes.barh(names, errors, color=colours)
    axes.set_xlabel("relative RMS error of the logits with only this layer in INT8")
    axes.tick_params(axis="y", labelsize=7)
    axes.set_title(title or "per-layer INT8 sensitivity (red: kept in float)", fontsize=9)
    save_png(figure, path)

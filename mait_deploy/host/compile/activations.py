"""How much memory one image's forward pass takes, read from the ONNX graph, and the batch sizes a build uses so
that a large model (a 224-px MaiT-S: 400 MB of intermediate tensors per image) stays within a memory budget while
the default model's builds keep their batches.

Measured here (ONNX Runtime 1.32, MaiT-S at 224 px): ONNX Runtime's INT8 calibration runs a graph that reads every
intermediate tensor (ReduceMin/ReduceMax on each), so it holds about ``batch x activation_bytes`` (16 images: 7.0 GB
at the peak); plain inference reuses its buffers (batch 64 FP32: 0.63 GB above the session, 1/40 of the sum).
"""

from __future__ import annotations

import os
from typing import Any

from mait_deploy._deps import require

# What a build's activations may hold at once: the calibration graph's batch and the gate's batch are chosen to
# stay within it (and the declared memory of a build job counts it, host/jobs/job.py).
ACTIVATION_BUDGET_BYTES = 1 << 30
CALIBRATION_BATCH = 16  # ONNX Runtime's calibration batch where the budget allows it
GATE_BATCH = 256  # the accuracy gate's and the reference logits' batch where the budget allows it
# Inference reuses its buffers: its peak per image is a fraction of the sum of every intermediate tensor (1/40
# measured with ONNX Runtime FP32; 1/16 leaves room for runtimes that reuse less).
INFERENCE_SHARE = 16


def activation_bytes(onnx_path: str | os.PathLike[str]) -> int:
    """The bytes of every intermediate tensor of one image's forward pass: ONNX shape inference with the batch
    axis at 1. A tensor whose shape stays unknown counts as nothing (the sum is then a lower bound)."""
    onnx = require("onnx", extra="export")
    model = onnx.load(str(onnx_path), load_external_data=False)
    for value in (*model.graph.input, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):  # the batch axis
                dim.dim_value = 1
            break
    del model.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model)
    return sum(_tensor_bytes(onnx, value) for value in inferred.graph.value_info)


def _tensor_bytes(onnx: Any, value: Any) -> int:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape") or not all(d.HasField("dim_value") for d in tensor.shape.dim):
        return 0
    count = 1
    for dim in tensor.shape.dim:
        count *= dim.dim_value
    return count * int(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize)


def calibration_batch(per_image: int) -> int:
    """ONNX Runtime's calibration batch: 16 images, fewer where 16 would hold more than the budget."""
    return _within(per_image, CALIBRATION_BATCH, ACTIVATION_BUDGET_BYTES)


def gate_batch(per_image: int) -> int:
    """The accuracy gate's (and the reference logits') batch: 256 images, fewer where their inference would hold
    more than the budget."""
    return _within(per_image, GATE_BATCH, ACTIVATION_BUDGET_BYTES * INFERENCE_SHARE)


def _within(per_image: int, most: int, budget: int) -> int:
    return max(1, min(most, budget // max(1, per_image)))

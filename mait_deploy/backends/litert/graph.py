"""Read a .tflite flatbuffer (with the schema ai-edge-litert ships) to find the attention-mask constants: the
constant inputs of the MUL or ADD that feeds each SOFTMAX, through a DEQUANTIZE where FP16 weights put one.
Buffers are inline or, as ai-edge-quantizer writes them, at an offset in the file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}


def mask_constants(path: str | Path) -> list[dict[str, Any]]:
    """One entry per distinct constant feeding a SOFTMAX through MUL/ADD: op, shape, dtype, consumers, values."""
    from ai_edge_litert import schema_py_generated as schema

    raw = Path(path).read_bytes()
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    codes = [op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?") for code in model.operatorCodes]
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    found: Counter[tuple[str, int]] = Counter()
    for op in graph.operators:
        if codes[op.opcodeIndex] != "SOFTMAX":
            continue
        source = producer.get(op.inputs[0])
        if source is None or codes[source.opcodeIndex] not in ("MUL", "ADD"):
            continue
        for tensor_index in source.inputs:
            constant = _constant_behind(tensor_index, graph, producer, codes, model)
            if constant is not None:
                found[(codes[source.opcodeIndex], constant)] += 1
    result = []
    for (op, tensor_index), consumers in found.items():
        tensor = graph.tensors[tensor_index]
        values = np.frombuffer(_buffer_bytes(model.buffers[tensor.buffer], raw),
                               dtype=_NUMPY_TYPES.get(tensor.type, np.float32))
        if values.size <= 1:
            continue  # a scalar scale, not a mask
        result.append({"name": tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
                       "op": "Mul" if op == "MUL" else "Add", "shape": [int(d) for d in tensor.shape],
                       "dtype": np.dtype(values.dtype).name, "consumers": consumers,
                       "values": values.reshape([int(d) for d in tensor.shape])})
    return result


def _constant_behind(tensor_index: int, graph: Any, producer: dict[int, Any], codes: list[str],
                     model: Any) -> int | None:
    """The constant tensor ``tensor_index`` is, or is dequantized from; None for a computed tensor."""
    if tensor_index in producer:
        op = producer[tensor_index]
        if codes[op.opcodeIndex] != "DEQUANTIZE":
            return None
        tensor_index = op.inputs[0]
        if tensor_index in producer:
            return None
    buffer = model.buffers[graph.tensors[tensor_index].buffer]
    return tensor_index if (buffer.data is not None and len(buffer.data)) or buffer.size else None


def _buffer_bytes(buffer: Any, raw: bytes) -> bytes:
    """A buffer's bytes: inline, or (files over 2 GB, and ai-edge-quantizer's output) at offset/size in the file."""
    if buffer.data is not None and len(buffer.data):
        return bytes(buffer.data)
    return raw[buffer.offset:buffer.offset + buffer.size]

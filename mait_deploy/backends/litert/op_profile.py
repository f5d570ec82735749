"""LiteRT per-operation times, for `profile --layers`. numpy + ai-edge-litert only (device side).

The Python wheel has no op profiler (LiteRT's C++ `benchmark_model --enable_op_profiling` has one), so each
operation of the .tflite is cut out as a one-operation model: its tensors with their quantization, its constant
buffers, its options. It runs in an interpreter made like the bundle's (XNNPACK or the reference kernels, the same
threads) on the values it sees in the whole model (one run with every tensor preserved gives them), and its time is
the median of its calls less the cost of an empty call measured the same way. What isolation leaves out (XNNPACK
fusing neighbouring operations, caches warmed by the previous one) is the gap between the sum and a plain call of
the whole model, which the report prints beside it.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mait_deploy._runtime_logs import runtime_stderr_silenced
from mait_deploy.backends.litert.interpreter import interpreter_module
from mait_deploy.errors import MissingDependency, UnsupportedOption

# Decomposed ops as litert-torch writes them: a LayerNorm is MEAN -> SQUARED_DIFFERENCE -> MEAN -> ... -> RSQRT.
NORM_OPENER = "SQUARED_DIFFERENCE"


def _schema() -> tuple[Any, Any]:
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError as err:  # tflite-runtime runs bundles but has no flatbuffer tools to cut a model with
        raise MissingDependency("ai_edge_litert", extra="litert",
                                detail="per-layer profiles cut the .tflite with its flatbuffer tools") from err
    return schema, flatbuffer_utils


def op_names(model: Any) -> list[str]:
    """The builtin (or custom) name of each operation of the first subgraph, in execution order."""
    schema, utils = _schema()
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = utils.get_builtin_code_from_operator_code(code)
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        result.append(names.get(builtin, "CUSTOM") if builtin != schema.BuiltinOperator.CUSTOM else f"CUSTOM:{custom}")
    return result


def single_op_model(model: Any, index: int) -> tuple[bytes, list[int]]:
    """Operation ``index`` of the first subgraph as a model of its own, and the original tensor indices of its
    inputs (the variable ones, in the new model's input order)."""
    schema, utils = _schema()
    graph = model.subgraphs[0]
    op = graph.operators[index]
    used = list(dict.fromkeys(t for t in [*op.inputs, *op.outputs, *(op.intermediates or [])] if t >= 0))
    tensors, buffers, remap = [], [schema.BufferT()], {}
    for original in used:
        tensor = copy.copy(graph.tensors[original])
        source = model.buffers[tensor.buffer] if tensor.buffer else None
        if source is not None and source.data is not None and len(source.data):
            constant = schema.BufferT()
            constant.data = np.frombuffer(bytes(source.data), dtype=np.uint8)  # Pack() loops over anything else
            buffers.append(constant)
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        remap[original] = len(tensors)
        tensors.append(tensor)
    single = copy.copy(op)
    single.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
    single.outputs = [remap[t] for t in op.outputs]
    if op.intermediates:
        single.intermediates = [remap[t] for t in op.intermediates]
    variable = [t for t in dict.fromkeys(op.inputs) if t >= 0 and tensors[remap[t]].buffer == 0]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators = tensors, [single]
    subgraph.inputs, subgraph.outputs = [remap[t] for t in variable], [remap[t] for t in op.outputs]
    one = schema.ModelT()
    one.version, one.operatorCodes, one.subgraphs, one.buffers = model.version, model.operatorCodes, [subgraph], buffers
    one.description = "one operation, for timing"
    return bytes(utils.convert_object_to_bytearray(one)), variable


def tensor_values(path: str, inputs: np.ndarray, feed: Callable[[Any, np.ndarray], None]) -> dict[int, np.ndarray]:
    """Every tensor's value in one run of the whole model on ``inputs`` (with the reference kernels: preserving
    the tensors turns the XNNPACK delegate off)."""

    module, _ = interpreter_module()
    with warnings.catch_warnings():  # "intended for debugging purposes only": what it is used for here
        warnings.simplefilter("ignore")
        with runtime_stderr_silenced():
            interpreter = module.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    feed(interpreter, inputs)
    interpreter.invoke()
    values = {}
    for detail in interpreter.get_tensor_details():
        try:
            values[detail["index"]] = interpreter.get_tensor(detail["index"]).copy()
        except ValueError:  # a tensor with no data (an unused optional input)
            continue
    return values


def op_times(path: str, inputs: np.ndarray, iterations: int, warmup: int, make: Callable[[bytes], Any],
             feed: Callable[[Any, np.ndarray], None]) -> list[dict[str, Any]]:
    """Per operation, in execution order: name, op type, ms per call (the empty call's cost taken off), the
    precision it computed in, and whether it opens a LayerNorm. ``make(content)`` gives an allocated interpreter
    set up like the bundle's; ``feed(interpreter, inputs)`` sets the whole model's input as its runner does."""
    schema, utils = _schema()
    model = utils.read_model(path)
    if len(model.subgraphs) != 1:
        raise UnsupportedOption(f"per-layer profiles of LiteRT models with control flow ({len(model.subgraphs)} "
                                f"subgraphs) are not supported: an operation cannot be cut out of its subgraph")
    graph = model.subgraphs[0]
    names = op_names(model)
    values = tensor_values(path, inputs, feed)
    # Invoking an interpreter with nothing to do costs this much here (the Python binding and the interpreter's
    # bookkeeping): taken off every op, or 100 tiny reshapes would read as a millisecond.
    empty = _median_invoke_ms(make(_empty_model(model.version)), iterations, warmup)
    integer = {schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16, schema.TensorType.INT4}
    rows = []
    for index, op_type in enumerate(names):
        content, variable = single_op_model(model, index)
        interpreter = make(content)
        for detail, original in zip(interpreter.get_input_details(), variable):
            interpreter.set_tensor(detail["index"], values[original].astype(detail["dtype"], copy=False))
        ms = max(0.0, _median_invoke_ms(interpreter, iterations, warmup) - empty)
        op = graph.operators[index]
        types = {graph.tensors[t].type for t in [*op.inputs, *op.outputs] if t >= 0}
        if op_type in ("QUANTIZE", "DEQUANTIZE"):
            precision = "q/dq"
        elif types & integer:
            precision = "int8"
        elif schema.TensorType.FLOAT16 in types:
            precision = "fp16"
        else:
            precision = "float"
        rows.append({"name": _text(graph.tensors[op.outputs[0]].name), "op_type": op_type, "ms": ms,
                     "precision": precision, "is_norm": op_type == NORM_OPENER})
    _open_norms_at_their_first_mean(rows, names)
    return rows


def _text(name: Any) -> str:
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name or "")


def _median_invoke_ms(interpreter: Any, iterations: int, warmup: int) -> float:
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        interpreter.invoke()
        times.append(time.perf_counter_ns() - started)
    return float(np.median(times)) / 1e6


def _empty_model(version: int) -> bytes:
    """A model whose one operation moves nothing: a RESHAPE of a 1-element tensor to its own shape."""
    schema, utils = _schema()
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
    code.version = 1
    tensors = []
    for name, kind, buffer in ((b"in", schema.TensorType.FLOAT32, 0), (b"out", schema.TensorType.FLOAT32, 0),
                               (b"shape", schema.TensorType.INT32, 1)):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], kind, buffer, name
        tensors.append(tensor)
    shape = schema.BufferT()
    shape.data = np.array([1], dtype="<i4").view(np.uint8)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 2], [1]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators, subgraph.inputs, subgraph.outputs = tensors, [op], [0], [1]
    empty = schema.ModelT()
    empty.version, empty.operatorCodes, empty.subgraphs = version, [code], [subgraph]
    empty.buffers = [schema.BufferT(), shape]
    return bytes(utils.convert_object_to_bytearray(empty))


def _open_norms_at_their_first_mean(rows: list[dict[str, Any]], names: list[str]) -> None:
    """A decomposed LayerNorm starts with the MEAN a few ops before its SQUARED_DIFFERENCE: mark that MEAN as the
    norm's first op, so that the whole norm falls in the part it opens."""
    for index, row in enumerate(rows):
        if row["is_norm"]:
            opener = next((i for i in range(index - 1, max(-1, index - 4), -1) if names[i] == "MEAN"), None)
            if opener is not None:
                row["is_norm"], rows[opener]["is_norm"] = False, True

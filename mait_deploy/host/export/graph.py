"""Checks and edits on ONNX graphs: the shared attention-mask constants, finiteness, metadata, de-duplication.

These read the written file, not the exporter's intentions: a report says what is in the graph.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

FP16_MAX = 65504.0
# Operators that build a mask from the patch grid at run time; none may survive export.
MASK_BUILDING_OPS = frozenset({
    "Range", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Where", "And", "Or", "Not", "Xor",
    "Mod", "CumSum", "Trilu", "OneHot", "NonZero",
})
METADATA_PREFIX = "mait."
# The form OpenVINO gives a node it creates, ``<Type>_<n>`` with n from a counter global to the process (and
# onnxsim the nodes it makes): no exported node keeps it, so an IR's generated names cannot collide with ours.
GENERATED_NAME = re.compile(r"([A-Z][A-Za-z0-9]*)_(\d+)")


@dataclass
class MaskConstant:
    """A constant applied to the attention products right before a Softmax: an additive bias (``Add``) or a
    multiplicative mask with the scale folded in (``Mul``)."""

    name: str
    shape: list[int]
    dtype: str
    op: str  # "Add" or "Mul"
    consumers: int  # nodes of that op that take it and feed a Softmax
    min_value: float
    masked_fraction: float  # share of entries that mask: <= -1000 for Add, exactly 0 for Mul
    array: Any = field(default=None, repr=False, compare=False)  # the values (not serialized)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "array"}


@dataclass
class GraphReport:
    node_count: int
    op_counts: dict[str, int]
    initializer_count: int
    mask_constants: list[MaskConstant] = field(default_factory=list)
    mask_ops: int = 0
    mask_building_ops: dict[str, int] = field(default_factory=dict)
    non_finite_initializers: list[str] = field(default_factory=list)
    fp16_unsafe_initializers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mask_constants"] = [constant.to_dict() for constant in self.mask_constants]
        return data


def _initializer_arrays(model: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant-node tensors by output name."""
    from onnx import numpy_helper

    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    arrays[node.output[0]] = numpy_helper.to_array(attr.t)
    return arrays


def producers(model: Any) -> dict[str, Any]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in model.graph.node for out in node.output}


def consumers(model: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    users: dict[str, list[Any]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            users[name].append(node)
    return users


def feeds_softmax(output: str, users: Mapping[str, list[Any]], depth: int = 2) -> bool:
    """True when ``output`` reaches a Softmax directly or through a Cast (an FP16 graph may insert one)."""
    for node in users.get(output, []):
        if node.op_type == "Softmax":
            return True
        if depth > 0 and node.op_type == "Cast" and feeds_softmax(node.output[0], users, depth - 1):
            return True
    return False


def analyze(model: Any) -> GraphReport:
    """Count nodes, find the attention-mask constants (non-scalar constant inputs of Adds or Muls that feed a
    Softmax), and check that no initializer is non-finite or out of FP16 range and that no mask-building operator
    remains."""
    arrays = _initializer_arrays(model)
    users = consumers(model)
    op_counts = Counter(node.op_type for node in model.graph.node)
    mask_users: Counter[tuple[str, str]] = Counter()
    mask_ops = 0
    for node in model.graph.node:
        if node.op_type not in ("Add", "Mul") or not feeds_softmax(node.output[0], users):
            continue
        constant_inputs = [name for name in node.input if name in arrays and arrays[name].size > 1]
        if constant_inputs:
            mask_ops += 1
            mask_users.update((name, node.op_type) for name in constant_inputs)
    constants = []
    for (name, op), count in sorted(mask_users.items()):
        array = arrays[name]
        masked = array <= -1000 if op == "Add" else array == 0
        constants.append(MaskConstant(
            name=name, shape=list(array.shape), dtype=str(array.dtype), op=op, consumers=count,
            min_value=float(array.min()), masked_fraction=round(float(masked.mean()), 4), array=array,
        ))
    non_finite, fp16_unsafe = [], []
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            continue
        if not np.isfinite(array).all():
            non_finite.append(name)
        elif array.size and float(np.abs(array).max()) > FP16_MAX:
            fp16_unsafe.append(name)
    return GraphReport(
        node_count=len(model.graph.node), op_counts=dict(sorted(op_counts.items())),
        initializer_count=len(model.graph.initializer), mask_constants=constants, mask_ops=mask_ops,
        mask_building_ops={op: n for op, n in op_counts.items() if op in MASK_BUILDING_OPS},
        non_finite_initializers=non_finite, fp16_unsafe_initializers=fp16_unsafe,
    )


def deduplicate_initializers(model: Any, min_elements: int = 16) -> int:
    """Merge initializers with identical dtype, shape and bytes into one (tools such as onnxsim or a quantizer
    can split a shared constant). Returns how many duplicates were removed."""
    keep: dict[tuple[int, tuple[int, ...], str], str] = {}
    rename: dict[str, str] = {}
    graph_inputs = {value.name for value in model.graph.input}
    for init in list(model.graph.initializer):
        if init.name in graph_inputs or int(np.prod(init.dims or [1])) < min_elements:
            continue
        key = (init.data_type, tuple(init.dims), hashlib.sha256(init.raw_data or init.SerializeToString()).hexdigest())
        if key in keep:
            rename[init.name] = keep[key]
        else:
            keep[key] = init.name
    if not rename:
        return 0
    for node in _all_nodes(model.graph):
        for index, name in enumerate(node.input):
            if name in rename:
                node.input[index] = rename[name]
    kept = [init for init in model.graph.initializer if init.name not in rename]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return len(rename)


def rename_generated(model: Any, prefix: str = "sim_") -> int:
    """Give each node named in ``GENERATED_NAME``'s form (onnxsim's fused nodes: ``Gemm_1``) ``prefix`` before its
    name; how many were renamed."""
    renamed = 0
    for node in _all_nodes(model.graph):
        if GENERATED_NAME.fullmatch(node.name):
            node.name = prefix + node.name
            renamed += 1
    return renamed


def _all_nodes(graph: Any) -> Iterable[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)


def topological_sort(model: Any) -> None:
    """Reorder graph nodes so every input is produced before use (ORT's FP16 converter appends its Casts at the
    end, which ONNX Runtime tolerates but onnx.checker and other tools do not)."""
    available = {value.name for value in model.graph.input} | {init.name for init in model.graph.initializer}
    available.add("")
    pending = list(model.graph.node)
    ordered = []
    while pending:
        remaining = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                remaining.append(node)
        if len(remaining) == len(pending):
            missing = sorted({n for node in remaining for n in node.input if n not in available})[:3]
            raise ValueError(f"graph has a cycle or undefined inputs: {missing}")
        pending = remaining
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def set_metadata(model: Any, values: Mapping[str, Any]) -> None:
    """Store values (JSON-encoded unless already strings) in metadata_props under the ``mait.`` prefix."""
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in values.items():
        full_key = METADATA_PREFIX + key
        text = value if isinstance(value, str) else json.dumps(value)
        if full_key in existing:
            existing[full_key].value = text
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = full_key, text


def get_metadata(model: Any) -> dict[str, Any]:
    """The ``mait.`` metadata of a model, JSON-decoded where possible."""
    result: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            try:
                result[prop.key[len(METADATA_PREFIX):]] = json.loads(prop.value)
            except json.JSONDecodeError:
                result[prop.key[len(METADATA_PREFIX):]] = prop.value
    return result

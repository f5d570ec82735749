"""`profile --layers`: where the time goes inside the model, from the runtime's own per-operation profiler
(ONNX Runtime's session profiling, OpenVINO's performance counters; LiteRT's ops timed one by one, see
backends/litert/op_profile.py), mapped back to the model's parts (patch
embedding, each block's attention with its mask and its MLP, the head) and to op kinds, with the precision each
kernel ran in (int8 / bf16 / fp16 / float). numpy + the bundle's runtime only.

The mapping needs no names: the exported graph keeps the model's order, and every block opens with a LayerNorm
(two per block: attention, MLP; one final norm before the head). Where the runtime's norm count does not match
the config (a fused graph, the hierarchical backbone), parts are numbered segments between norms instead.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mait_deploy._plots import pyplot, save_png
from mait_deploy.config import MaiTConfig
from mait_deploy.errors import UnsupportedOption


@dataclass
class LayerTime:
    """One operation (or fused kernel) as the runtime reports it, averaged per inference."""

    name: str
    op_type: str
    ms: float
    kernel: str = ""  # the runtime's implementation (OpenVINO exec type, ORT provider)
    precision: str = "float"  # int8 | bf16 | fp16 | float: what the kernel computed in
    part: str = ""  # the model part (filled by assign_parts)
    is_norm: bool = False  # opens a block half (LayerNorm / MVN)


@dataclass
class PartTime:
    """One part of the model (a block's attention or MLP, the head, ...): its share of an inference's time."""

    part: str
    ms: float = 0.0
    share: float = 0.0
    masked: bool = False  # a block whose attention heads are masked
    by_kind: dict[str, float] = field(default_factory=dict)  # op kind -> ms


@dataclass
class LayerProfile:
    bundle: str
    runtime: str
    batch: int
    iterations: int
    total_ms: float  # the per-inference sum of the operations' times
    call_ms: float  # the median of plain runner.run calls on the same inputs (a profiler adds its own time)
    parts: list[PartTime]
    by_kind: dict[str, float]
    by_precision: dict[str, float]  # precision -> ms: how much of the time ran in int8 / bf16 / float
    mapping: str  # "blocks" (mapped to the config's blocks) or "segments" (between norms)
    layers: list[LayerTime] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def op_kind(op_type: str) -> str:
    """Group an op type into what a person reads: matmul, norm, softmax, gelu, elementwise, data movement."""
    name = op_type.lower().replace("_", "")  # LiteRT writes FULLY_CONNECTED, ONNX Runtime and OpenVINO CamelCase
    if any(k in name for k in ("matmul", "gemm", "fullyconnected", "conv", "qlinear", "innerproduct", "sdpa",
                               "scaleddotproduct")):
        return "matmul/conv"
    # LiteRT's LayerNorm is decomposed: MEAN, SQUARED_DIFFERENCE, RSQRT (and an ADD, MUL, SUB counted elementwise).
    if any(k in name for k in ("layernorm", "mvn", "normalization", "squareddifference", "rsqrt", "mean")):
        return "norm"
    if "softmax" in name:
        return "softmax"
    if any(k in name for k in ("gelu", "erf")):
        return "gelu"
    if any(k in name for k in ("quantize", "fakequant")):
        return "quantize/dequantize"
    if any(k in name for k in ("reshape", "transpose", "squeeze", "slice", "gather", "concat", "split", "expand",
                               "reorder", "shape", "broadcast", "strided", "permute", "identity", "convert")):
        return "data movement"
    if any(k in name for k in ("add", "mul", "div", "sub", "eltwise", "multiply", "subgraph", "power")):
        return "elementwise"
    return "other"


def assign_parts(layers: list[LayerTime], config: MaiTConfig) -> str:
    """Label each layer with its model part, in execution order; returns "blocks" or "segments"."""
    norms = sum(1 for layer in layers if layer.is_norm)
    blocks = config.depth + (config.depth_token_only or 0) if config.backbone != "pyramid" else None
    mapped = blocks is not None and norms == 2 * blocks + 1
    masked = [bool(heads) for heads in config.layer_heads()] if mapped else []
    seen = -1
    for layer in layers:
        if layer.is_norm:
            seen += 1
        if seen < 0:
            layer.part = "patch embed"
        elif not mapped:
            layer.part = f"segment {seen}"
        elif seen == 2 * (blocks or 0):  # mapped: blocks is known
            layer.part = "head"
        else:
            block, half = divmod(seen, 2)
            if block < config.depth:
                name = f"block {block}"
                mask = " (masked)" if half == 0 and block < len(masked) and masked[block] else ""
            else:
                name, mask = f"class block {block - config.depth}", ""
            layer.part = f"{name} {'attention' if half == 0 else 'mlp'}{mask}"
    return "blocks" if mapped else "segments"


def summarise(bundle: str, runtime: str, batch: int, iterations: int, layers: list[LayerTime],
              config: MaiTConfig, call_ms: float = 0.0) -> LayerProfile:
    mapping = assign_parts(layers, config)
    total = sum(layer.ms for layer in layers) or 1e-12
    parts: OrderedDict[str, PartTime] = OrderedDict()
    by_kind: dict[str, float] = {}
    by_precision: dict[str, float] = {}
    for layer in layers:
        kind = op_kind(layer.op_type)
        part = parts.setdefault(layer.part, PartTime(part=layer.part, masked="(masked)" in layer.part))
        part.ms += layer.ms
        part.by_kind[kind] = part.by_kind.get(kind, 0.0) + layer.ms
        by_kind[kind] = by_kind.get(kind, 0.0) + layer.ms
        by_precision[layer.precision] = by_precision.get(layer.precision, 0.0) + layer.ms
    for part in parts.values():
        part.share = round(part.ms / total, 4)
        part.ms = round(part.ms, 4)
        part.by_kind = {k: round(v, 4) for k, v in part.by_kind.items()}
    return LayerProfile(bundle=bundle, runtime=runtime, batch=batch, iterations=iterations,
                        total_ms=round(total, 4), call_ms=round(call_ms, 4), parts=list(parts.values()),
                        by_kind={k: round(v, 4) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                        by_precision={k: round(v, 4) for k, v in sorted(by_precision.items(), key=lambda kv: -kv[1])},
                        mapping=mapping, layers=layers)


def profile_layers(runner: Any, batch: int = 1, iterations: int = 50, warmup: int = 5) -> LayerProfile:
    """The per-operation profile of ``runner``'s bundle at ``batch`` (the runtime's own profiler)."""
    import numpy as np

    if batch < 1 or iterations < 1 or warmup < 0:
        raise UnsupportedOption("--layers needs a batch and iterations >= 1")
    if runner.fixed_batch and batch != runner.fixed_batch:
        raise UnsupportedOption(f"this bundle has a fixed batch of {runner.fixed_batch}; got {batch}")
    inputs = runner.random_inputs(batch)
    layers = runner.layer_times(inputs, iterations, warmup)
    calls = []
    for index in range(warmup + iterations):
        runner.run(inputs)
        if index >= warmup:
            calls.append(runner.last_inference_ms)
    config = MaiTConfig.from_dict(runner.manifest.model)
    return summarise(str(runner.bundle_dir), runner.runtime_name, batch, iterations, layers, config,
                     float(np.median(calls)))


def plot_layers(profiles: list[LayerProfile], path: str | Path) -> None:
    """One stacked bar per model part (ms per inference, stacked by op kind); one panel per profile."""
    plt = pyplot()
    kinds = sorted({kind for p in profiles for part in p.parts for kind in part.by_kind})
    figure, axes = plt.subplots(len(profiles), 1, figsize=(max(8.0, 0.45 * max(len(p.parts) for p in profiles)),
                                                           3.6 * len(profiles)), squeeze=False)
    for axis, profile in zip(axes[:, 0], profiles):
        bottoms = [0.0] * len(profile.parts)
        for index, kind in enumerate(kinds):
            values = [part.by_kind.get(kind, 0.0) for part in profile.parts]
            axis.bar(range(len(values)), values, bottom=bottoms, color=f"C{index}", label=kind)
            bottoms = [b + v for b, v in zip(bottoms, values)]
        axis.set_xticks(range(len(profile.parts)), [part.part for part in profile.parts], rotation=70,
                        ha="right", fontsize=7)
        axis.set_ylabel("ms per inference")
        shares = ", ".join(f"{k} {v / profile.total_ms * 100:.0f}%" for k, v in profile.by_precision.items())
        axis.set_title(f"{Path(profile.bundle).name} ({profile.runtime}, batch {profile.batch}): "
                       f"{profile.total_ms:.3f} ms in ops (a plain call {profile.call_ms:.3f} ms); {shares}",
                       fontsize=9)
        axis.legend(fontsize=7, ncol=3)
    save_png(figure, path)

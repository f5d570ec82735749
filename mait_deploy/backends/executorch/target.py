"""ExecuTorch target: a .pte lowered from the PyTorch model to XNNPACK, FP32 or INT8 (PT2E, XNNPACKQuantizer).

The export is shaped so that XNNPACK takes the whole graph (measured with executorch 1.5.1: the model as it is
leaves 75 operators to ExecuTorch's portable kernels, around 42 delegated pieces). On the plug-in's own copy of the
model, never the model itself:
- LayerNorm is written as XNNPACK's operators (mean over a 4-D view, rsqrt): ``native_layer_norm`` has no XNNPACK
  lowering;
- self-attention (and CaiT's class attention) uses 3-D batched matmuls: the 4-D ``@`` decomposes into expands
  and views XNNPACK refuses, and the qkv ``unbind`` into selects and squeezes, so q, k and v are slices of one
  [B, 3H, T, d] tensor;
- the mask buffers are contiguous copies (``.to_executorch()`` refuses stride 0: the masks are numpy views);
- ``select`` (the class token's row) becomes a slice and a reshape, and ``expand`` of the class token a
  concatenation (XNNPACK has no lowering for either).
The manifest and compile's summary count what XNNPACK took and what it left (``delegation``).

ExecuTorch programs have a static batch here (one file per batch size, batch 1 by default), as LiteRT's.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mait_deploy._deps import package_versions, require
from mait_deploy.device.data.sources import Dataset
from mait_deploy.device.load_probe import built_here
from mait_deploy.device.manifest import Manifest, TensorSpec
from mait_deploy.errors import ExportError, UnsupportedOption
from mait_deploy.host.compile.qdq import QdqOptions
from mait_deploy.host.compile.source import ModelSource
from mait_deploy.host.compile.spec import BuiltArtifact, CompileOptions, TargetCapabilities
from mait_deploy.host.compile.target import Target
from mait_deploy.host.export.onnx import INPUT_NAME, OUTPUT_NAME
from mait_deploy.precision import FP32, INT8

if TYPE_CHECKING:  # the model code imports torch: only where a program is built (edge_model), never to list targets
    from mait_deploy.host.model.layers import ClassAttention, MaskedSelfAttention

ARTIFACT = "model.pte"
MAX_CALIBRATION_BATCHES = 512
CALIBRATION_CHUNK = 32


def _layer_norm(torch: Any) -> type:
    class XnnpackLayerNorm(torch.nn.Module):
        """LayerNorm over the last axis in operators XNNPACK lowers: its mean is a global average pool over a
        [rows, 1, C, 1] view (XNNPACK's mean takes 4-D inputs and their two inner axes only)."""

        def __init__(self, norm: Any) -> None:
            super().__init__()
            self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

        def forward(self, x: Any) -> Any:
            shape = x.shape
            rows = x.reshape(-1, 1, shape[-1], 1)
            centred = rows - rows.mean(dim=(2, 3), keepdim=True)
            variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
            return (centred * torch.rsqrt(variance + self.eps)).reshape(shape) * self.weight + self.bias

    return XnnpackLayerNorm


def _attention_forward(torch: Any) -> Callable[..., Any]:
    def forward(self: MaskedSelfAttention, x: Any, mask: Any = None) -> Any:
        """MaskedSelfAttention.forward with 3-D batched matmuls and q/k/v as slices (same arithmetic; talking
        heads still mix the heads of the 4-D scores)."""
        batch, tokens, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        qkv = self.qkv(x).reshape(batch, tokens, 3 * heads, head_dim).permute(0, 2, 1, 3)
        q, k, v = (qkv[:, i * heads:(i + 1) * heads].reshape(batch * heads, tokens, head_dim) for i in range(3))
        if mask is not None and self.mask_mode == "multiplicative":
            scores = torch.bmm(q, k.transpose(1, 2)).reshape(batch, heads, tokens, tokens) * mask
            weights = self.softmax_weights(scores, multiplied=True)
        else:
            scores = torch.bmm(q * self.scale, k.transpose(1, 2)).reshape(batch, heads, tokens, tokens)
            weights = self.softmax_weights(scores, mask)
        out = torch.bmm(weights.reshape(batch * heads, tokens, tokens), v)
        return self.proj(out.reshape(batch, heads, tokens, head_dim).permute(0, 2, 1, 3).reshape(batch, tokens, dim))

    return forward


def _class_attention_forward(torch: Any) -> Callable[..., Any]:
    def forward(self: ClassAttention, x: Any) -> Any:
        """ClassAttention.forward with 3-D batched matmuls (same arithmetic)."""
        batch, tokens, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        q = self.q(x[:, :1]).reshape(batch, 1, heads, head_dim).transpose(1, 2).reshape(batch * heads, 1, head_dim)
        k = self.k(x).reshape(batch, tokens, heads, head_dim).transpose(1, 2).reshape(batch * heads, tokens, head_dim)
        v = self.v(x).reshape(batch, tokens, heads, head_dim).transpose(1, 2).reshape(batch * heads, tokens, head_dim)
        weights = torch.bmm(q * self.scale, k.transpose(1, 2)).softmax(dim=-1)
        out = torch.bmm(weights, v).reshape(batch, heads, 1, head_dim).transpose(1, 2).reshape(batch, 1, dim)
        return self.proj(out)

    return forward


def edge_model(model: Any) -> Any:
    """A copy of ``model`` whose export XNNPACK takes whole (the module docstring says what changes and why)."""
    import torch

    from mait_deploy.host.model.layers import ClassAttention, MaskedSelfAttention

    shaped = copy.deepcopy(model).eval()
    for module in list(shaped.modules()):
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = buffer.clone(memory_format=torch.contiguous_format)
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.LayerNorm):
                setattr(module, name, _layer_norm(torch)(child))
        if isinstance(module, MaskedSelfAttention):
            module.forward = _attention_forward(torch).__get__(module)
        elif isinstance(module, ClassAttention):
            module.forward = _class_attention_forward(torch).__get__(module)
    return shaped


def _decompositions(torch: Any) -> dict[Any, Callable[..., Any]]:
    """select -> slice + reshape; expand of a size-1 axis -> concatenation of distinct copies (XNNPACK's cat
    counts distinct inputs)."""

    def select(x: Any, dim: int, index: int) -> Any:
        dim %= x.dim()
        index %= x.shape[dim]
        shape = [size for axis, size in enumerate(x.shape) if axis != dim]
        return torch.ops.aten.slice.Tensor(x, dim, index, index + 1).reshape(shape)

    def expand(x: Any, sizes: list[int], implicit: bool = False) -> Any:
        lead = len(sizes) - x.dim()
        out = x.reshape([1] * lead + list(x.shape))
        for axis, size in enumerate(sizes):
            if size != -1 and out.shape[axis] == 1 and size > 1:
                out = torch.cat([out] + [out.clone() for _ in range(size - 1)], dim=axis)
            elif size not in (-1, out.shape[axis]):
                raise ExportError(f"cannot expand axis {axis} of size {out.shape[axis]} to {size}")
        return out

    return {torch.ops.aten.select.int: select, torch.ops.aten.expand.default: expand}


def _calibration_graph(torch: Any, model: Any, sample: Any) -> tuple[Any, int]:
    """The model exported for calibration and the images per call: with a dynamic batch, chunks of
    CALIBRATION_CHUNK images (the histogram observers cost per call: 256 images took 25 s at batch 1, 9 s in
    chunks of 32, with the same scores on 1,000 test images); at the program's batch where the export cannot
    take a dynamic one."""
    from torch.export import Dim

    chunk_sample = torch.zeros((CALIBRATION_CHUNK, *sample.shape[1:]))
    try:
        graph = torch.export.export(model, (chunk_sample,),
                                    dynamic_shapes=({0: Dim("batch", min=1, max=CALIBRATION_CHUNK)},))
        return graph.module(), CALIBRATION_CHUNK
    except Exception:  # a model whose export pins its batch: calibrate at the program's own
        return torch.export.export(model, (sample,)).module(), int(sample.shape[0])


def delegation_summary(edge_program: Any) -> dict[str, Any]:
    """What XNNPACK took: delegated subgraphs, operators inside them and the operators left outside, by type."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.graph_module)
    # getitem unpacks a delegate's outputs: bookkeeping, not an operator left to the portable kernels.
    left = {op: row.non_delegated for op, row in sorted(info.delegation_by_operator.items())
            if row.non_delegated and op != "getitem"}
    undelegated = sum(left.values())
    total = info.num_delegated_nodes + undelegated
    return {"delegate": "XnnpackBackend", "subgraphs": info.num_delegated_subgraphs,
            "delegated_ops": info.num_delegated_nodes, "undelegated_ops": undelegated,
            "delegated_share": round(info.num_delegated_nodes / total, 4) if total else 0.0,
            "undelegated_by_op": left}


def _forget_provenance(module: Any) -> None:
    """Drop each node's pass history (``from_node``), which torch.fx deep-copies into every node every pass makes,
    so each pass copies all the passes before it: without the history the INT8 lowering took 45 s instead of 55
    here. It serves debug tooling (ETDump's op mapping) this tool does not use: the operators and weights are the
    same, only the program's debug handles differ. ``module``: a GraphModule (PT2E's), else nothing to drop."""
    graph = getattr(module, "graph", None)
    for node in graph.nodes if graph is not None else ():
        node.meta.pop("from_node", None)


class ExecuTorchTarget(Target):
    capabilities = TargetCapabilities(
        precisions=(FP32, INT8), dynamic_batch=False, devices=("cpu",), needs_torch_model=True, default_batch=1,
        layer_fallback=True, default_precision="auto", typical_build_seconds={FP32: 22, INT8: 71},
    )

    def sensitivity_preset(self, options: CompileOptions) -> QdqOptions:
        # XNNPACKQuantizer's per-channel symmetric weights; its Linear and Conv layers are the ranked ones.
        return QdqOptions(op_types=("Gemm", "Conv"), activation_symmetric=False, weight_symmetric=True)

    def _check_options(self, options: CompileOptions) -> None:
        if options.batch == "dynamic":
            raise UnsupportedOption("ExecuTorch bundles have a static batch here (XNNPACK's delegate is planned for "
                                    "one shape): pass --batch N, one bundle per batch size")
        if options.calibration.method != "minmax":
            raise UnsupportedOption("executorch int8 uses XNNPACKQuantizer's own observers (histogram for "
                                    "activations, per-channel min/max for weights); --calib-method is for the "
                                    "onnxruntime/tensorrt targets")

    def summary_lines(self, manifest: Manifest) -> list[tuple[str, str]]:
        lines = super().summary_lines(manifest)
        delegation = manifest.build.get("delegation")
        if delegation:
            left = ", ".join(f"{op} x{count}" for op, count in delegation["undelegated_by_op"].items()) or "nothing"
            lines.append(("XNNPACK delegation", f"{delegation['delegated_ops']} ops in {delegation['subgraphs']} "
                                                f"subgraph(s) ({delegation['delegated_share']:.0%}); left: {left}"))
        return lines

    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        require("executorch", extra="executorch")
        torch = require("torch", extra="export")
        batch = int(options.batch or self.capabilities.default_batch)
        model = edge_model(source.torch_model)
        sample = torch.zeros((batch, *source.config.input_shape))
        report: dict[str, Any] = {"batch": batch}
        with torch.no_grad():
            if options.precision == INT8:
                progress(f"executorch int8: PT2E calibration on {len(calibration)} images")
                model, report["quantization"] = self._quantize(torch, model, sample, calibration, batch,
                                                               options.float_layers)
            progress(f"executorch {options.precision}: lowering to XNNPACK")
            program, report["delegation"] = self._lower(torch, model, sample)
        (staging / ARTIFACT).write_bytes(program)
        # Lowered by this process: loading it in-process is safe, no child-process probe needed (load_probe.py).

        built_here(hashlib.sha256(program).hexdigest())
        return BuiltArtifact(
            artifact=ARTIFACT, inputs=[TensorSpec(INPUT_NAME, [batch, *source.config.input_shape], "float32")],
            outputs=[TensorSpec(OUTPUT_NAME, [batch, source.config.num_classes], "float32")], batch=batch,
            runtime_options={}, report=report, tool_versions=package_versions("executorch", "torchao", "torch"),
        )

    @staticmethod
    def _lower(torch: Any, model: Any, sample: Any) -> tuple[bytes, dict[str, Any]]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower

        try:
            _forget_provenance(model)
            exported = torch.export.export(model, (sample,)).run_decompositions(_decompositions(torch))
            _forget_provenance(exported.graph_module)
            edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            delegation = delegation_summary(edge.exported_program())
            program = edge.to_executorch().buffer
        except ExportError:
            raise
        except Exception as err:
            raise ExportError(f"ExecuTorch lowering failed: {str(err).splitlines()[0] if str(err) else err!r}") \
                from err
        return program, delegation

    @staticmethod
    def _quantize(torch: Any, model: Any, sample: Any, calibration: Dataset, batch: int,
                  float_layers: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        known = {name for name, module in model.named_modules()
                 if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))}
        unknown = [name for name in float_layers if name not in known]
        if unknown:
            raise UnsupportedOption(f"unknown layer(s) {', '.join(unknown)} (ExecuTorch quantizes Linear and Conv "
                                    f"modules, named like {', '.join(sorted(known)[:4])}, ...)")

        def quantize(node: Any) -> bool:  # layers kept in float are left unannotated
            paths = {value[0] for value in node.meta.get("nn_module_stack", {}).values()}
            return not paths & set(float_layers)

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        quantizer.set_filter_function(quantize)
        inputs = calibration.inputs
        usable = min(len(inputs) // batch, MAX_CALIBRATION_BATCHES) * batch
        if usable == 0:
            raise UnsupportedOption(f"need at least {batch} calibration images for batch {batch}")
        try:
            graph, chunk = _calibration_graph(torch, model, sample)
            prepared = prepare_pt2e(graph, quantizer)
            for start in range(0, usable, chunk):
                prepared(torch.from_numpy(inputs[start:start + chunk]))
            converted = convert_pt2e(prepared)  # _lower exports it again, at the program's batch
        except Exception as err:
            raise ExportError(f"ExecuTorch PT2E INT8 quantization failed: {str(err).splitlines()[0]}") from err
        return converted, {
            "method": "PT2E static (torchao prepare/convert, XNNPACKQuantizer), per-channel symmetric INT8 weights, "
                      "INT8 activations",
            "float_layers": list(float_layers), "calibration_images": int(usable),
            "calibration_data": calibration.origin, "quantized_layers": len(known) - len(float_layers)}

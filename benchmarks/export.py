"""Export benchmark: export time, size, node counts and parity, and what the masks cost in ONNX Runtime.

    python -m benchmarks.export [--models demo,xxs24] [--iterations 50]  # -> benchmarks/results/export.json

For each model it exports three graphs and times them side by side (round-robin) in ONNX Runtime at batch 1
and 32: MaiT (bias as one constant), its unmasked twin (no bias Add), and MaiT with the bias fed as a run-time
input instead of a constant. mait_xxs24_224 uses random weights (speed only).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from benchmarks._common import benchmark_parser, side_by_side, write_result
from mait_deploy.host.export.onnx import ExportOptions, export_onnx
from mait_deploy.host.model.checkpoint import load_checkpoint
from mait_deploy.host.model.mait import MaiT, create_model
from mait_deploy.host.model.zoo import resolve_checkpoint


class BiasAsInput(nn.Module):
    """MaiT whose attention bias arrives as a second input at run time (the alternative to a constant)."""

    def __init__(self, model: MaiT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.patch_embed(x) + m.pos_embed
        for index, block in enumerate(m.blocks):
            x = block(x, bias if m.block_patterns[index] is not None else None)
        cls_token = m.cls_token.expand(x.shape[0], -1, -1)
        for block in m.blocks_token_only:
            cls_token = block(x, cls_token)
        return m.head(m.norm(torch.cat((cls_token, x), dim=1))[:, 0])


def export_bias_input(model: MaiT, path: Path) -> None:
    import onnxsim
    from torch.export import Dim

    example = (torch.zeros(2, *model.config.input_shape), model.attn_masks[0].clone())
    program = torch.onnx.export(BiasAsInput(model).eval(), example, None, dynamo=True, opset_version=17,
                                dynamic_shapes={"x": {0: Dim("batch")}, "bias": None},
                                input_names=["input", "bias"], output_names=["logits"])
    simplified, _ = onnxsim.simplify(program.model_proto)
    import onnx

    onnx.save_model(simplified, str(path))


def session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def bench_model(name: str, model: MaiT, iterations: int, folder: Path) -> dict:
    results: dict = {"model": name, "params": sum(p.numel() for p in model.parameters()), "exports": {}}
    paths = {"masked_constant": folder / f"{name}.onnx", "unmasked": folder / f"{name}_unmasked.onnx",
             "masked_bias_input": folder / f"{name}_bias_input.onnx"}
    for key, source in (("masked_constant", model), ("unmasked", model.unmasked())):
        result = export_onnx(source, paths[key], ExportOptions(force=True))
        results["exports"][key] = {
            "seconds": result.timings_s, "file_bytes": result.file_bytes, "nodes_exported": result.nodes_exported,
            "nodes_simplified": result.nodes_simplified, "mask_constants": result.graph["mask_constants"],
            "parity": {k: result.parity[k] for k in ("max_abs_diff", "mean_abs_diff", "top1_agreement")},
        }
    export_bias_input(model, paths["masked_bias_input"])
    sessions = {key: session(path) for key, path in paths.items()}
    bias = model.attn_masks[0].numpy()
    latency = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, *model.config.input_shape)).astype(np.float32)
        runs = {
            "masked_constant": lambda: sessions["masked_constant"].run(None, {"input": x}),
            "unmasked": lambda: sessions["unmasked"].run(None, {"input": x}),
            "masked_bias_input": lambda: sessions["masked_bias_input"].run(None, {"input": x, "bias": bias}),
        }
        its = iterations if batch == 1 else max(5, iterations // 8)
        stats = side_by_side(runs, iterations=its, warmup=3, batch=batch)
        base = stats["unmasked"]["percentiles_ms"]["p50"]
        latency[f"batch_{batch}"] = {
            **{k: {"p50_ms": v["percentiles_ms"]["p50"], "p90_ms": v["percentiles_ms"]["p90"],
                   "throughput": v["throughput"], "count": v["count"]} for k, v in stats.items()},
            "ratio_masked_constant_vs_unmasked": stats["masked_constant"]["percentiles_ms"]["p50"] / base,
            "ratio_bias_input_vs_constant": stats["masked_bias_input"]["percentiles_ms"]["p50"]
            / stats["masked_constant"]["percentiles_ms"]["p50"],
        }
        print(f"{name} batch {batch}: " + ", ".join(f"{k} p50 {v['percentiles_ms']['p50']:.2f} ms"
                                                   for k, v in stats.items()), flush=True)
    results["ort_latency"] = latency
    return results


def main() -> None:
    parser = benchmark_parser(__doc__, iterations=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    chosen = {
        "demo": lambda: ("mait_demo_28.fmnist", load_checkpoint(resolve_checkpoint(None))),
        "xxs24": lambda: ("mait_xxs24_224", create_model("mait_xxs24_224").eval()),
    }
    output = {"iterations": args.iterations, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for key in args.models.split(","):
            name, model = chosen[key]()
            output["models"].append(bench_model(name, model, args.iterations, Path(folder)))
    print(f"wrote {write_result('export', output)}")


if __name__ == "__main__":
    main()

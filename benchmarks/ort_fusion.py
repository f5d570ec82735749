"""Does ONNX Runtime run the shipped model faster with its transformer fusions? -> results/ort_fusion.json

Three FP32 graphs of the shipped checkpoint, timed side by side in one process at batch 1 and 32:
- ``export``: the ONNX `mait-deploy export` writes (what the ONNX Runtime bundle holds), run with the session's
  own optimizations (ORT_ENABLE_ALL, as the runner does);
- ``fused``: that graph through ``onnxruntime.transformers.optimizer`` (model_type "vit": Gelu, SkipLayerNorm,
  LayerNorm and Attention fusions), also run with ORT_ENABLE_ALL;
and per graph the op counts ONNX Runtime ends up running (its optimized graph, saved by the session), the fused
operators the optimizer reports (Attention among them: the masked heads' post-softmax Mul is not a pattern it
fuses), and the parity of the logits against ``export``.

    python -m benchmarks.ort_fusion [--rounds 12]
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import benchmark_parser, write_result


def session_ops(path: Path, work: Path) -> dict[str, int]:
    """The op counts of the graph ONNX Runtime runs after its own (session) optimizations."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(work / f"{path.stem}.session.onnx")
    options.log_severity_level = 3  # the "hardware specific optimizations" warning of a saved ENABLE_ALL graph
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return dict(collections.Counter(node.op_type for node in graph.node).most_common())


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()

    import onnxruntime as ort
    from onnxruntime.transformers import optimizer

    from mait_deploy.device.profiling.side_by_side import side_by_side
    from mait_deploy.host.export.onnx import export_onnx
    from mait_deploy.host.model.checkpoint import load_checkpoint
    from mait_deploy.host.model.zoo import DEFAULT_CHECKPOINT, resolve_checkpoint

    model = load_checkpoint(resolve_checkpoint(None))
    config = model.config
    with tempfile.TemporaryDirectory(prefix="mait-ort-fusion-") as name:
        work = Path(name)
        export_onnx(model, work / "export.onnx")
        fused = optimizer.optimize_model(str(work / "export.onnx"), model_type="vit", num_heads=config.num_heads,
                                         hidden_size=config.embed_dim, opt_level=1, use_gpu=False)
        fused.save_model_to_file(str(work / "fused.onnx"))
        graphs = {"export": work / "export.onnx", "fused": work / "fused.onnx"}
        sessions = {key: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    for key, path in graphs.items()}
        report = {"checkpoint": DEFAULT_CHECKPOINT, "onnxruntime": ort.__version__,
                  "optimizer_fusions": {k: v for k, v in fused.get_fused_operator_statistics().items() if v},
                  "session_ops": {key: session_ops(path, work) for key, path in graphs.items()}, "batches": {}}
        rng = np.random.default_rng(0)
        for batch in (1, 32):
            x = rng.standard_normal((batch, *config.input_shape)).astype(np.float32)
            feeds = {key: {s.get_inputs()[0].name: x} for key, s in sessions.items()}
            outputs = {key: s.run(None, feeds[key])[0] for key, s in sessions.items()}
            timing = side_by_side({key: (lambda s=s, f=feeds[key]: s.run(None, f)) for key, s in sessions.items()},
                                  baseline="export", rounds=args.rounds, block=8 if batch > 1 else 32, warmup=3,
                                  settle_ms=100)
            report["batches"][batch] = {
                "median_ms": {k: round(v, 4) for k, v in timing.median_ms.items()},
                "fused_speedup_over_export": {k: round(v, 3) for k, v in timing.ratio["fused"].items()},
                "max_abs_diff": float(np.abs(outputs["fused"] - outputs["export"]).max())}
            print(f"batch {batch}: fused / export speed {timing.ratio['fused']['median']:.2f}x "
                  f"({timing.ratio['fused']['min']:.2f}-{timing.ratio['fused']['max']:.2f}), "
                  f"max |diff| {report['batches'][batch]['max_abs_diff']:.2g}")
    print("optimizer fusions:", report["optimizer_fusions"])
    print(f"wrote {write_result('ort_fusion', report)}")


if __name__ == "__main__":
    main()

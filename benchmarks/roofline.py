"""How close each runtime x precision runs the shipped model to this CPU's GEMM rate, at batch 32: the model's
FLOPs (matmuls, linear layers, the patch convolution, as torch counts them) per second of a runtime call, as a
fraction of the GEMM rate measured in the same process for the same precision (a 1024^3 MatMul: FP32 the faster of
ONNX Runtime's and OpenVINO's, BF16 OpenVINO's with the bf16 hint, INT8 ONNX Runtime's MatMulInteger u8s8).

    python -m benchmarks.roofline [--bundles DIR] [--batch 32] [--rounds 12]

Builds what it needs from the shipped checkpoint (ONNX Runtime FP32/INT8, OpenVINO FP32/BF16 where the CPU
computes it/INT8, LiteRT FP32/INT8) unless --bundles has them. Writes results/roofline.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result

GEMM = 1024  # M = K = N of the reference GEMM
BUNDLES = ("onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16", "openvino-int8",
           "litert-fp32", "litert-int8")


def _time(call, seconds: float = 1.0, repeats: int = 5) -> float:
    """Median seconds of one call: a warm-up, then ``repeats`` blocks of calls lasting ``seconds`` each."""
    call()
    per_block = []
    for _ in range(repeats):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / repeats:
            call()
            count += 1
        per_block.append((time.perf_counter() - started) / count)
    return statistics.median(per_block)


def gemm_rates() -> dict[str, dict[str, float]]:
    """GFLOP/s of a GEMM^3 MatMul per precision and runtime, measured here and now."""
    import onnxruntime as ort
    import openvino as ov
    from onnx import TensorProto, helper

    flops = 2.0 * GEMM ** 3
    rng = np.random.default_rng(0)
    rates: dict[str, dict[str, float]] = {"fp32": {}, "bf16": {}, "int8": {}}

    def ort_session(op: str, a_type: int, b_type: int, out_type: int) -> ort.InferenceSession:
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "gemm",
                                  [helper.make_tensor_value_info("a", a_type, [GEMM, GEMM]),
                                   helper.make_tensor_value_info("b", b_type, [GEMM, GEMM])],
                                  [helper.make_tensor_value_info("y", out_type, [GEMM, GEMM])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    a32 = rng.standard_normal((GEMM, GEMM)).astype(np.float32)
    b32 = rng.standard_normal((GEMM, GEMM)).astype(np.float32)
    session = ort_session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT)
    rates["fp32"]["onnxruntime"] = flops / _time(lambda: session.run(None, {"a": a32, "b": b32})) / 1e9
    a8 = rng.integers(0, 256, (GEMM, GEMM), dtype=np.uint8)
    b8 = rng.integers(-127, 128, (GEMM, GEMM), dtype=np.int8)
    session = ort_session("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
    rates["int8"]["onnxruntime"] = flops / _time(lambda: session.run(None, {"a": a8, "b": b8})) / 1e9

    core = ov.Core()
    a = ov.opset13.parameter([GEMM, GEMM], ov.Type.f32)
    b = ov.opset13.constant(b32)
    model = ov.Model([ov.opset13.matmul(a, b, False, False)], [a])
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
        if precision == "bf16" and "BF16" not in capabilities:
            continue
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                     "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        rates[precision]["openvino"] = flops / _time(lambda: request.infer({0: a32})) / 1e9
    return rates


def ensure_bundles(folder: Path) -> dict[str, Path]:
    from mait_deploy.host import catalog
    from mait_deploy.host.compile.api import compile_model
    from mait_deploy.host.compile.spec import CompileOptions

    found = {}
    for name in BUNDLES:
        path = folder / name
        target, precision = name.split("-")
        options = CompileOptions(precision=precision)
        if catalog.target(target).hardware_lacks(options):
            continue
        if not (path / "manifest.json").is_file():
            compile_model(None, target, options, path, eval_count=1000)
        found[name] = path
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=Path, help="folder with (or for) the bundles")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--label", default="", help="results/roofline[_LABEL].json")
    args = parser.parse_args()
    from mait_deploy.device.profiling.side_by_side import time_bundles
    from mait_deploy.host.model.checkpoint import load_checkpoint
    from mait_deploy.host.model.stats import count_flops
    from mait_deploy.host.model.zoo import resolve_checkpoint

    flops_per_image = count_flops(load_checkpoint(resolve_checkpoint(None)))
    with tempfile.TemporaryDirectory() as temp:
        bundles = ensure_bundles(args.bundles or Path(temp))
        rates = gemm_rates()
        # Every bundle side by side (one process, blocks in turn), then its own p50 from the same rounds.
        timing = time_bundles({name: path for name, path in bundles.items()}, baseline="onnxruntime-fp32",
                              batch=args.batch, rounds=args.rounds)
    cells = []
    for name in bundles:
        precision = name.split("-")[1]
        p50_s = float(np.median(timing.timings_ms[name])) / 1e3
        achieved = flops_per_image * args.batch / p50_s / 1e9
        reference = max(rates.get(precision, {}).values(), default=None)
        cells.append({"bundle": name, "batch": args.batch, "p50_ms": round(p50_s * 1e3, 3),
                      "achieved_gflops": round(achieved, 2), "gemm_gflops": None if reference is None
                      else round(reference, 2), "fraction_of_gemm": None if reference is None
                      else round(achieved / reference, 4)})
        print(f"{name:18s} batch {args.batch}: {p50_s * 1e3:8.3f} ms, {achieved:7.1f} GFLOP/s"
              + ("" if reference is None else f" = {achieved / reference * 100:5.1f}% of the {precision} GEMM rate "
                                              f"({reference:.0f})"), flush=True)
    write_result("roofline" + (f"_{args.label}" if args.label else ""), {
        "command": " ".join(["python -m benchmarks.roofline", *sys.argv[1:]]),
        "model_flops_per_image": flops_per_image, "gemm": {"size": GEMM, "gflops": rates}, "cells": cells})


if __name__ == "__main__":
    main()

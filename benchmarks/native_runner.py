"""The native runner beside the Python runner on the same bundles: p50 latency of ``run`` at each batch size,
the native runner's overhead over the bare runtime call inside it, and each process's peak RSS. Alternating
processes (the order reversed every round); ratios are per round, reported as median and range.

    python -m benchmarks.native_runner [--runtimes onnxruntime,openvino,litert] [--bundles DIR] [--batches 1,32]
                                       [--rounds 7] [--iterations 300]

Builds what it needs: the bundles (each runtime's FP32 and INT8, from the shipped checkpoint) unless --bundles has
them (built in a child process: Linux carries a process's peak RSS over fork and exec, so measuring processes
started by a parent that had loaded torch would report the parent's peak), and the native apps (`mait-deploy app` + CMake, Release). A fixed-batch bundle (LiteRT's) is measured at its
own batch size only. Writes results/native_runner.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result
from tests.native import sdk

PRECISIONS = ("fp32", "int8")
PYTHON_RUN = """
import json, sys, time
import numpy as np
from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.profiling.measure import peak_rss_mb
bundle, batch, warmup, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with load_bundle(bundle) as runner:
    x = np.random.default_rng(0).standard_normal((batch, *runner.sample_shape)).astype(np.float32)
    total, runtime = [], []
    for i in range(warmup + iterations):
        started = time.perf_counter_ns()
        runner.run(x)
        took = (time.perf_counter_ns() - started) / 1e6
        if i >= warmup:
            total.append(took)
            runtime.append(runner.last_inference_ms)
print(json.dumps({"p50_ms": float(np.median(total)), "runtime_call_p50_ms": float(np.median(runtime)),
                  "peak_rss_mb": peak_rss_mb()}))
"""


BUILD_BUNDLE = """
import sys
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CompileOptions
compile_model(None, sys.argv[1], CompileOptions(precision=sys.argv[2]), sys.argv[3], eval_count=1000)
"""


def ensure_bundles(folder: Path, runtimes: list[str]) -> dict[str, Path]:
    found = {}
    for name in (f"{runtime}-{precision}" for runtime in runtimes for precision in PRECISIONS):
        path = folder / name
        if not (path / "manifest.json").is_file():
            runtime, precision = name.split("-")
            subprocess.run([sys.executable, "-c", BUILD_BUNDLE, runtime, precision, str(path)], check=True)
        found[name] = path
    return found


def build_apps(bundles: dict[str, Path], work: Path, runtimes: list[str]) -> dict[str, Path]:
    from mait_deploy.device.native_app import generate_app

    builds = {}
    for runtime in runtimes:
        reason = sdk.missing(runtime)
        if reason:
            raise SystemExit(f"cannot build the native {runtime} runner here: {reason}")
        project = Path(generate_app(bundles[f"{runtime}-fp32"], work / runtime).folder)
        builds[runtime] = sdk.build(project, project / "build", "-DCMAKE_BUILD_TYPE=Release")
    return builds


def measure(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}... failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", default="onnxruntime,openvino,litert")
    parser.add_argument("--bundles", type=Path, help="folder with (or for) the bundles")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--out", default="native_runner", help="results/OUT.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        runtimes = args.runtimes.split(",")
        bundles = ensure_bundles(args.bundles or work / "bundles", runtimes)
        builds = build_apps(bundles, work / "apps", runtimes)
        cells = []
        for name, bundle in bundles.items():
            runtime = name.split("-")[0]
            fixed = json.loads((bundle / "manifest.json").read_text())["batch"]
            for batch in [fixed] if isinstance(fixed, int) else map(int, args.batches.split(",")):
                iterations = max(20, args.iterations // batch)
                native_cmd = [str(builds[runtime] / "mait-bench"), str(bundle), "--batch", str(batch),
                              "--iterations", str(iterations), "--warmup", str(args.warmup)]
                python_cmd = [sys.executable, "-c", PYTHON_RUN, str(bundle), str(batch), str(args.warmup),
                              str(iterations)]
                rounds = []
                for number in range(args.rounds):
                    order = [("native", native_cmd), ("python", python_cmd)]
                    results = dict((label, measure(cmd)) for label, cmd in (order if number % 2 == 0 else order[::-1]))
                    rounds.append(results)
                cell = {
                    "bundle": name, "batch": batch, "iterations": iterations, "rounds": args.rounds,
                    "native_p50_ms": summary([r["native"]["p50_ms"] for r in rounds]),
                    "python_p50_ms": summary([r["python"]["p50_ms"] for r in rounds]),
                    "native_over_python_p50": summary([r["native"]["p50_ms"] / r["python"]["p50_ms"] for r in rounds]),
                    "native_overhead_over_runtime_call": summary([r["native"]["overhead"] for r in rounds]),
                    "native_peak_rss_mb": summary([r["native"]["peak_rss_mb"] for r in rounds]),
                    "python_peak_rss_mb": summary([r["python"]["peak_rss_mb"] for r in rounds]),
                    "native_runtime": rounds[0]["native"]["runtime"],
                }
                cells.append(cell)
                print(f"{name} batch {batch}: native/python p50 {cell['native_over_python_p50']['median']:.3f} "
                      f"(native {cell['native_p50_ms']['median']:.3f} ms, python {cell['python_p50_ms']['median']:.3f}"
                      f" ms), native overhead {cell['native_overhead_over_runtime_call']['median'] * 100:.2f}%, "
                      f"peak RSS {cell['native_peak_rss_mb']['median']:.0f} vs "
                      f"{cell['python_peak_rss_mb']['median']:.0f} MB", flush=True)
    write_result(args.out, {"command": " ".join(["python -m benchmarks.native_runner", *sys.argv[1:]]),
                            "cells": cells})


if __name__ == "__main__":
    main()

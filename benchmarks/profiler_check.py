"""Check the profiler against an independent tool: our `profile()` median vs OpenVINO's benchmark_app on the same IR
(same batch, 1 stream, same thread count, f32), measured back to back, alternating, in one run.

    python -m benchmarks.profiler_check [--models demo,xxs24] [--rounds 3]  # -> benchmarks/results/profiler_check.json

Target: within 5%. (LiteRT's bare-interpreter comparison joins when the LiteRT target exists.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks._common import benchmark_models, write_result
from benchmarks.openvino import benchmark_app
from mait_deploy.compiler import compile_model
from mait_deploy.exporters.base import CompileOptions
from mait_deploy.profiling.measure import ProfileOptions, profile


def check(name: str, model, folder: Path, rounds: int, threads: int, iterations: int) -> dict:
    bundle = folder / f"{name}-fp32"
    compile_model(model, "openvino", CompileOptions(precision="fp32"), bundle, evaluation=None)
    rows = {}
    for batch in (1, 8):
        ours, theirs = [], []
        for _ in range(rounds):  # alternate so that a change of machine state hits both tools
            report = profile(bundle, ProfileOptions(batches=(batch,), warmup=10, iterations=iterations,
                                                    threads=threads, end_to_end=False,
                                                    runtime_options={"inference_precision": "f32"}))
            ours.append(report.results[0].model["percentiles_ms"]["p50"])
            theirs.append(benchmark_app(bundle / "model.xml", batch, report_shape(bundle), 5, threads)["median_ms"])
        mine, reference = statistics.median(ours), statistics.median(theirs)
        rows[f"batch_{batch}"] = {"profile_median_ms": mine, "benchmark_app_median_ms": reference,
                                  "ratio": mine / reference, "within_5_percent": abs(mine / reference - 1) <= 0.05,
                                  "rounds": {"profile": ours, "benchmark_app": theirs}}
        print(f"{name} batch {batch}: profile {mine:.3f} ms vs benchmark_app {reference:.3f} ms "
              f"(ratio {mine / reference:.3f})", flush=True)
    return {"model": name, "threads": threads, "results": rows}


def report_shape(bundle: Path) -> tuple[int, ...]:
    from mait_deploy.bundle.manifest import read_manifest

    return tuple(int(d) for d in read_manifest(bundle).inputs[0].shape[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,xxs24")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    output = {"rounds": args.rounds, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for name, model, small in benchmark_models(args.models):
            # The demo model is tiny (many iterations); the paper-size one is ~50x heavier per image.
            iterations = args.iterations if small else max(20, args.iterations // 10)
            output["models"].append(check(name, model, Path(folder), args.rounds, args.threads, iterations))
    print(f"wrote {write_result('profiler_check', output)}")


if __name__ == "__main__":
    main()

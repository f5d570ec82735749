"""What a build job declares it holds (host/jobs/job.py: job_memory_bytes, the figure local workers admit jobs by
and a Ray task's ``memory``) against the peak resident memory its worker reached, cell by cell.

Each cell is one build job (compile, calibrate, gate, golden) run alone in a fresh spawned worker (a pool of one
worker per job), so the worker's peak RSS is that job's: the ONNX and images as they arrive, the converter, the
calibration and gate batches (host/compile/activations.py keeps their activations within a budget).

    python -m benchmarks.build_memory                       # the shipped checkpoint, 4 targets x 2 precisions
    python -m benchmarks.build_memory --models mait_s_patch16_224 --calibration-count 32 --eval-count 0 \\
        --name build_memory_224                   # MaiT-S at 224 px (random weights) as `compare` builds it
    python -m benchmarks.build_memory --models "" --baselines swin_small_patch4_window7_224 --timm-python \\
        ~/.cache/mait-deploy/timm-venv/bin/python --calibration-count 32 --eval-count 0 --name build_memory_swin

A cell is within its declaration when ``peak_rss_mb <= declared_mb``. Writes results/build_memory.json (or
``--name``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result
from mait_deploy.host.compare.models import CompareModel, baseline_model, mait_model
from mait_deploy.host.compile.activations import calibration_batch, gate_batch
from mait_deploy.host.compile.api import load_data
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.jobs.executors import LocalProcesses
from mait_deploy.host.jobs.job import BuildJob, BuildOutcome, build_inputs, job_memory_bytes
from mait_deploy.host.model.zoo import DEFAULT_CHECKPOINT
from mait_deploy.precision import FP32, INT8

MB = 2 ** 20


def measure(load: Callable[[Path], CompareModel], targets: list[str], precisions: list[str], data: str,
            calibration_count: int, eval_count: int) -> list[dict[str, object]]:
    """One row per target x precision of the model ``load`` gives: declared and peak memory, status, seconds."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="mait-bench-memory-") as work:
        model = load(Path(work))
        source = model.source
        # No gate images (``eval_count`` 0): a compare build's jobs, which gate nothing.
        calibration, evaluation = load_data(source, data, CalibrationOptions(count=calibration_count),
                                            data if eval_count else None, eval_count or None, print)
        inputs = build_inputs(source, calibration, evaluation)
        declared = job_memory_bytes(inputs)
        per_image = source.activation_bytes
        for target in targets:
            for precision in precisions:
                job = BuildJob(f"{target}-{precision}", target, precision,
                               CompileOptions(precision=precision,
                                              calibration=CalibrationOptions(count=calibration_count)))
                outcomes: list[BuildOutcome] = []
                LocalProcesses(1).run([job], {"model": inputs}, outcomes.append)
                outcome = outcomes[0]
                peak = float(outcome.worker.get("peak_rss_mb", 0.0))
                row = {"model": model.name, "target": target, "precision": precision, "status": outcome.status,
                       "reason": outcome.reason, "seconds": outcome.seconds, "declared_mb": round(declared / MB),
                       "peak_rss_mb": peak, "within": peak <= declared / MB,
                       "activation_mb_per_image": round(per_image / MB, 1),
                       "calibration_batch": calibration_batch(per_image), "gate_batch": gate_batch(per_image),
                       "calibration_images": calibration_count, "gate_images": eval_count, "role": model.role}
                print(f"{model.name} {target} {precision}: {outcome.status}, peak {peak:.0f} MB of "
                      f"{declared / MB:.0f} MB declared ({outcome.seconds:.0f} s)", flush=True)
                rows.append(row)
    return rows


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_CHECKPOINT, help="comma-separated: a checkpoint (the "
                        "shipped one by default) or a variant name (random weights)")
    parser.add_argument("--baselines", default="", help="comma-separated timm names (exported with "
                        "--timm-python) or .onnx files, as `mait-deploy compare --baselines` takes")
    parser.add_argument("--timm-python", default=None, help="a Python where timm imports (docs/compare.md)")
    parser.add_argument("--targets", default="onnxruntime,openvino,litert,executorch")
    parser.add_argument("--precisions", default=f"{FP32},{INT8}")
    parser.add_argument("--data", default="fashion-mnist", help="calibration and gate images: a dataset "
                        "name or folder, as `mait-deploy compile --calibration` takes")
    parser.add_argument("--calibration-count", type=int, default=128)
    parser.add_argument("--eval-count", type=int, default=1000)
    parser.add_argument("--name", default="build_memory")
    args = parser.parse_args()
    loads: list[Callable[[Path], CompareModel]] = [
        *(partial(mait_model, spec, step=print) for spec in _names(args.models)),
        *(partial(baseline_model, spec, step=print, timm_python=args.timm_python) for spec in _names(args.baselines))]
    rows = [row for load in loads
            for row in measure(load, args.targets.split(","), args.precisions.split(","), args.data,
                               args.calibration_count, args.eval_count)]
    path = write_result(args.name, {"command": " ".join(["python -m benchmarks.build_memory", *sys.argv[1:]]),
                                    "rows": rows, "all_within": all(r["within"] for r in rows if r["status"] == "ok")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The paper's two headline claims, measured here -> benchmarks/results/claims.json (+ claims.md, claims.png from
`mait-deploy compare`).

(1) Throughput ("up to 1.5x Swin"): the paper's MaiT-T (mait_t_patch16_224) and the hierarchical MaiTs
    (mait_pyramid_t_224 ~ DeiT-T size, mait_pyramid_s_224 ~ Swin-T size) against timm's deit_tiny_patch16_224,
    cait_xxs24_224 and swin_tiny_patch4_window7_224 (random weights), compiled for ONNX Runtime, OpenVINO and
    LiteRT at FP32 and INT8 and timed side by side in one process at batch 1 and 32 (`mait-deploy compare`).
(2) Accuracy ("+1.7% over CaiT with fewer params/FLOPs"), at Fashion-MNIST scale: the arms of
    training/compare_masking.py (same width, recipe, budget and data order; 3 seeds), read from
    training/masking_comparison.json.

    python -m benchmarks.claims --timm-python ~/.cache/mait-deploy/timm-venv/bin/python
    python -m benchmarks.claims --accuracy-only      # re-read (2) after a training study, keep (1)

timm needs a torchvision that matches torch; where it does not import beside this torch (the CPU torch 2.13.0
wheel here), --timm-python names a Python where it does (docs/compare.md has the recipe).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks._common import RESULTS, benchmark_parser, write_result

MODELS = ("mait_t_patch16_224", "mait_pyramid_t_224", "mait_pyramid_s_224")
BASELINES = ("deit_tiny_patch16_224", "cait_xxs24_224", "swin_tiny_patch4_window7_224")
STUDY = Path(__file__).resolve().parent.parent / "training" / "masking_comparison.json"


def throughput(args) -> dict:
    from mait_deploy.host.compare.run import CompareOptions, compare

    work = Path(tempfile.mkdtemp(prefix="mait-claims-"))
    try:
        # One build per model x target x precision serves both batch sizes; batch 32 of Swin-T is ~3 s a call
        # here, so blocks are short (3 calls, the first dropped).
        options = CompareOptions(targets=tuple(args.targets.split(",")), precisions=("fp32", "int8"),
                                 batches=(1, 32), rounds=args.rounds, block=3, calibration_count=32,
                                 timm_python=args.timm_python)
        report = compare(list(MODELS), list(BASELINES), work / "compare", options, progress=print)
        for name in ("compare.png", "compare.md"):
            shutil.copyfile(work / "compare" / name, RESULTS / name.replace("compare", "claims"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cells, models, failures = report.cells, report.models, report.failures
    swin = [{"target": c["target"], "precision": c["precision"], "batch": c["batch"], **r}
            for c in cells for r in c["throughput_ratios"] if r["baseline"] == BASELINES[2]]
    return {"models": models, "cells": cells, "failures": failures, "vs_swin": swin,
            "best_vs_swin": max(swin, key=lambda r: r["median"]) if swin else None}


def accuracy() -> dict:
    if not STUDY.is_file():
        return {"missing": f"{STUDY} (run training/compare_masking.py)"}
    study = json.loads(STUDY.read_text())
    table = {arm: {"mean": round(s["mean"], 2), "std": round(s["std"], 2), "runs": s["runs"],
                   "params": s.get("params"), "gmacs": s.get("gmacs")} for arm, s in study["summary"].items()}
    mait = table.get("multiplicative")
    deltas = {arm: round(mait["mean"] - row["mean"], 2) for arm, row in table.items() if mait and arm != "multiplicative"}
    return {"setup": study["setup"], "arms": table, "maiT_minus_arm_points": deltas}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--timm-python", default=None)
    parser.add_argument("--targets", default="onnxruntime,openvino,litert")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--accuracy-only", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / "claims.json"
    if args.accuracy_only and previous.is_file():
        kept = json.loads(previous.read_text())["throughput"]
    else:
        kept = throughput(args)
    path = write_result("claims", {"throughput": kept, "accuracy": accuracy(),
                                   "commands": ["python -m benchmarks.claims --timm-python PY",
                                                "python training/compare_masking.py --run-root DIR"]})
    data = json.loads(path.read_text())
    ratios = data["throughput"].get("vs_swin") or []
    for row in ratios:
        print(f"{row['target']:12s} {row['precision']:5s} b{row['batch']:<3d} {row['mait']:22s} / swin_t: "
              f"{row['median']:.2f}x ({row['min']:.2f}-{row['max']:.2f})")
    if ratios:
        print("median of MaiT/Swin ratios:", round(statistics.median(r["median"] for r in ratios), 2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

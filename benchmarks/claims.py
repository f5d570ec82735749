"""The paper's two headline claims, measured here -> benchmarks/results/claims.json (+ claims.md, claims.png,
claims_equal_accuracy.md and claims_pareto.png from `mait-deploy compare`).

(1) Throughput ("up to 1.5x Swin"), two pairings, each timed side by side in one process at batch 1 and 32 on
    ONNX Runtime, OpenVINO and LiteRT at FP32 and INT8 (`mait-deploy compare`, random weights):
    - "size": the paper's MaiT-T (mait_t_patch16_224) and the hierarchical MaiTs (mait_pyramid_t_224 ~ DeiT-T size,
      mait_pyramid_s_224 ~ Swin-T size) against timm's deit_tiny_patch16_224, cait_xxs24_224 and
      swin_tiny_patch4_window7_224;
    - "equal_accuracy": the pairs the claim needs, by the papers' ImageNet top-1: MaiT-XS (81.0%) vs Swin-T (81.3%),
      MaiT-S (82.1%) and MaiT-S* (82.8%) vs Swin-S (83.0%), with MaiT-T and DeiT-S beside them; and the Pareto
      view (images/s against each paper's top-1, one panel per target).
(2) Accuracy ("+1.7% over CaiT with fewer params/FLOPs"), at Fashion-MNIST scale: the arms of
    training/compare_masking.py (same width, recipe, budget and data order; 3 seeds), read from
    training/masking_comparison.json.

    python -m benchmarks.claims --timm-python ~/.cache/mait-deploy/timm-venv/bin/python      # every part
    python -m benchmarks.claims --parts equal_accuracy --timm-python PY     # one part; the others are kept
    python -m benchmarks.claims --parts study    # re-read (2) after a training study

timm needs a torchvision that matches torch; where it does not import beside this torch (the CPU torch 2.13.0
wheel here), --timm-python names a Python where it does (docs/compare.md has the recipe).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, benchmark_parser, machine, write_result

SWIN_T, SWIN_S = "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224"
# part -> (MaiTs, baselines, the pairs its summary reports as (MaiT, baseline)); every MaiT/baseline ratio is kept.
PAIRINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "size": (("mait_t_patch16_224", "mait_pyramid_t_224", "mait_pyramid_s_224"),
             ("deit_tiny_patch16_224", "cait_xxs24_224", SWIN_T),
             (("mait_t_patch16_224", SWIN_T), ("mait_pyramid_s_224", SWIN_T))),
    "equal_accuracy": (("mait_t_patch16_224", "mait_xs_patch16_224", "mait_s_patch16_224", "mait_s_ls_patch16_224"),
                       ("deit_small_patch16_224", SWIN_T, SWIN_S),
                       (("mait_xs_patch16_224", SWIN_T), ("mait_s_patch16_224", SWIN_S),
                        ("mait_s_ls_patch16_224", SWIN_S))),
}
# What each part copies from compare's output into benchmarks/results/.
COPIES = {"size": {"compare.png": "claims.png", "compare.md": "claims.md",
                   "compare_pareto.png": "claims_size_pareto.png"},
          "equal_accuracy": {"compare.md": "claims_equal_accuracy.md", "compare_pareto.png": "claims_pareto.png"}}
PARTS = (*PAIRINGS, "study")
STUDY = Path(__file__).resolve().parent.parent / "training" / "masking_comparison.json"


def throughput(part: str, args: Any) -> dict:
    from mait_deploy.host.compare.run import CompareOptions, compare

    models, baselines, pairs = PAIRINGS[part]
    work = Path(tempfile.mkdtemp(prefix="mait-claims-"))
    try:
        # One build per model x target x precision serves both batch sizes. Batch 32 of the 9-GMAC models takes up
        # to ~3 s a call here, so blocks are short (the first call dropped).
        options = CompareOptions(targets=tuple(args.targets.split(",")), precisions=("fp32", "int8"),
                                 batches=(1, 32), rounds=args.rounds, block=args.block, calibration_count=32,
                                 timm_python=args.timm_python)
        report = compare(list(models), list(baselines), work / "compare", options, progress=print)
        for source, name in COPIES[part].items():
            if (work / "compare" / source).is_file():
                shutil.copyfile(work / "compare" / source, RESULTS / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wanted = set(pairs)
    data = report.to_dict()
    rows = [{"target": c["target"], "precision": c["precision"], "batch": c["batch"], **r}
            for c in data["cells"] for r in c["throughput_ratios"] if (r["mait"], r["baseline"]) in wanted]
    # Each part says where and when it was measured: a run of one part keeps the others from earlier runs.
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "models": data["models"],
            "options": data["options"], "cells": data["cells"], "failures": data["failures"], "pairs": rows,
            "summary": summarise(rows, pairs)}


def summarise(rows: list[dict], pairs: tuple[tuple[str, str], ...]) -> list[dict]:
    """Per pair: the median of its cells' ratios and their range, and how many cells the interval of the ratio
    (the 95% distribution-free interval of the per-round median) places wholly above 1 (faster), wholly below 1
    (slower), or across 1 (level: the timing cannot tell them apart)."""
    summary = []
    for mait, baseline in pairs:
        cells = [r for r in rows if (r["mait"], r["baseline"]) == (mait, baseline)]
        if not cells:
            continue
        medians = [r["median"] for r in cells]
        widths = [r["high"] - r["low"] for r in cells]
        summary.append({"mait": mait, "baseline": baseline, "cells": len(cells),
                        "median_of_cells": round(statistics.median(medians), 3), "lowest_cell": min(medians),
                        "highest_cell": max(medians), "cells_above_1": sum(m > 1 for m in medians),
                        "cells_faster": sum(r["low"] > 1 for r in cells),
                        "cells_slower": sum(r["high"] < 1 for r in cells),
                        "cells_level": sum(r["low"] <= 1 <= r["high"] for r in cells),
                        "widest_interval": round(max(widths), 3), "median_interval_width": round(
                            statistics.median(widths), 3)})
    return summary


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
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=3)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := [p for p in parts if p not in PARTS]:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / "claims.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    result = {"throughput": kept.get("throughput", {}), "accuracy": kept.get("accuracy"),
              "commands": ["python -m benchmarks.claims --timm-python PY [--parts size,equal_accuracy,study]",
                           "python training/compare_masking.py --run-root DIR"]}
    for part in PAIRINGS:
        if part in parts:
            result["throughput"][part] = throughput(part, args)
    if "study" in parts or result["accuracy"] is None:
        result["accuracy"] = accuracy()
    path = write_result("claims", result)
    data = json.loads(path.read_text())
    for part in PAIRINGS:
        for row in data["throughput"].get(part, {}).get("summary", []):
            print(f"{part:15s} {row['mait']:22s} / {row['baseline']:30s} median of {row['cells']} cells "
                  f"{row['median_of_cells']:.2f}x ({row['lowest_cell']:.2f}-{row['highest_cell']:.2f}); by the "
                  f"intervals faster in {row.get('cells_faster')}, level in {row.get('cells_level')}, slower in "
                  f"{row.get('cells_slower')}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The paper's claims at small scale, one equal budget, several seeds (mean +- std on the 10,000 test images):

    python training/compare_masking.py --run-root ~/.cache/mait-train/study
    # -> training/masking_comparison.json (+ the table for training/RESULTS.md on stdout)

Arms (all with the same width, data order, augmentation and schedule per seed; only the named thing differs):
- multiplicative: the paper's MaiT (deit backbone, Eq. 2 binary masks, one masked head per block, 3x3);
- additive: the same heads hard-masked with -1e4 (the first release's semantics);
- unmasked: the same deit network with every head global (DeiT);
- random: multiplicative masks of the same density at random positions (the paper's control);
- cait: an unmasked CaiT (patch self-attention blocks + 2 class-attention blocks) with about the same params
  (the paper's "+1.7% over CaiT" comparison);
- pyramid: the hierarchical MaiT (14x14 tokens 24 wide, then 7x7 tokens 64 wide; 1 + 5 blocks; multiplicative
  masks, mixed schedule: every head of the first stage, one head of the second), about the deit arms' params and
  FLOPs (230 k / 0.0149 GMACs vs 255 k / 0.0143);
- swin-style: the same pyramid with every head of every block hard-masked to its 3x3 window (additive): purely
  local attention in a hierarchy, as in Swin (sliding windows here, not Swin's shifted windows).
A finished run (its ``final/`` checkpoint) is not trained again, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import TrainOptions, train  # noqa: E402

OUT = Path(__file__).resolve().parent / "masking_comparison.json"
ARMS = ("multiplicative", "additive", "unmasked", "random", "cait", "pyramid", "swin-style")
PYRAMID_STAGES = "[[1, 24, 2], [5, 64, 4]]"


def arm_options(arm: str, args: argparse.Namespace, seed: int, run_dir: Path) -> TrainOptions:
    common = dict(run_dir=run_dir, embed_dim=args.embed_dim, epochs=args.epochs, train_subset=args.train_subset,
                  seed=seed, threads=args.threads)
    if arm == "cait":
        # Same width; 2 fewer self-attention blocks to make room for CaiT's 2 class-attention blocks.
        return TrainOptions(variant="mait_demo_28", depth=args.depth - 2, unmasked=True, **common)
    if arm in ("pyramid", "swin-style"):
        common.pop("embed_dim")
        everything = json.dumps([[0, 1]] + [[0, 1, 2, 3]] * 5)
        return TrainOptions(variant="mait_pyramid_28", stages=PYRAMID_STAGES, **common,
                            **(dict(mask_mode="multiplicative", schedule="mixed") if arm == "pyramid" else
                               dict(mask_mode="additive", schedule=everything)))
    deit = dict(variant="mait_deit_28", depth=args.depth, schedule=args.schedule, **common)
    if arm == "unmasked":
        return TrainOptions(unmasked=True, **deit)
    if arm == "random":
        return TrainOptions(mask_mode="multiplicative", pattern="random", **deit)
    return TrainOptions(mask_mode=arm, **deit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-root", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--schedule", default="uniform:1")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-subset", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; use {','.join(ARMS)}")
    runs = []
    for seed in seeds:
        for arm in arms:
            run_dir = args.run_root / f"{arm}-s{seed}"
            summary_path = run_dir / "summary.json"
            if summary_path.exists():
                run = json.loads(summary_path.read_text())
            else:
                started = time.perf_counter()
                summary = train(arm_options(arm, args, seed, run_dir), log=lambda line: None)
                from mait_deploy.config import MaiTConfig
                from mait_deploy.host.model.stats import model_stats

                stats = model_stats(MaiTConfig.from_dict(summary["config"]))
                run = {"arm": arm, "seed": seed, "test_top1": summary["test_top1"], "params": summary["params"],
                       "gmacs": round(stats.gmacs, 5), "seconds": round(time.perf_counter() - started, 1),
                       "config": summary["config"], "history": summary["history"]}
                summary_path.write_text(json.dumps(run, indent=2) + "\n")
            runs.append(run)
            print(f"{arm}-s{seed}: top-1 {run['test_top1'] * 100:.2f}% ({run['params']:,} params, "
                  f"{run['gmacs']} GMACs, {run['seconds']} s)", flush=True)
    table = {}
    for arm in arms:
        scores = [r["test_top1"] * 100 for r in runs if r["arm"] == arm]
        first = next(r for r in runs if r["arm"] == arm)
        table[arm] = {"mean": statistics.mean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                      "runs": scores, "params": first["params"], "gmacs": first["gmacs"]}
    result = {"setup": {"embed_dim": args.embed_dim, "depth": args.depth, "schedule": args.schedule,
                        "epochs": args.epochs, "train_subset": args.train_subset, "seeds": seeds,
                        "test_images": 10000,
                        "recipe": "train.py defaults: AdamW 1.5e-3 cosine, wd 0.05, label smoothing 0.1, "
                                  "shift 2 + flip, batch 128, bf16 autocast"},
              "summary": table, "runs": [{k: v for k, v in r.items() if k != "config"} for r in runs]}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("| arm | top-1 mean +- std (%) | runs | params | GMACs |\n|---|---|---|---|---|")
    for arm, row in table.items():
        print(f"| {arm} | {row['mean']:.2f} +- {row['std']:.2f} | {', '.join(f'{s:.2f}' for s in row['runs'])} | "
              f"{row['params']:,} | {row['gmacs']} |")


if __name__ == "__main__":
    main()

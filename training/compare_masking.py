"""The paper's claim at small scale: masked MaiT vs its unmasked (CaiT) twin, same budget, same seeds.

    python training/compare_masking.py --run-root ~/.cache/mait-train/compare
    # -> training/masking_comparison.json (+ the table for training/RESULTS.md on stdout)

Both arms use the identical architecture, data order, augmentation and schedule per seed; the only difference is
``mask.enabled``. A small width and a short budget keep the 6+ runs affordable on 2 CPU cores.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-root", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-subset", type=int, default=20000)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        for masked in (True, False):
            name = f"{'masked' if masked else 'unmasked'}-s{seed}"
            opts = TrainOptions(run_dir=args.run_root / name, embed_dim=args.embed_dim, depth=args.depth,
                                epochs=args.epochs, train_subset=args.train_subset, seed=seed, unmasked=not masked)
            started = time.perf_counter()
            summary = train(opts, log=lambda line: None)
            runs.append({"arm": "masked" if masked else "unmasked", "seed": seed, "test_top1": summary["test_top1"],
                         "params": summary["params"], "seconds": round(time.perf_counter() - started, 1),
                         "history": summary["history"]})
            print(f"{name}: top-1 {summary['test_top1'] * 100:.2f}%", flush=True)
    table = {}
    for arm in ("masked", "unmasked"):
        scores = [r["test_top1"] * 100 for r in runs if r["arm"] == arm]
        table[arm] = {"mean": statistics.mean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                      "runs": scores}
    result = {"setup": {"embed_dim": args.embed_dim, "depth": args.depth, "epochs": args.epochs,
                        "train_subset": args.train_subset, "seeds": seeds, "test_images": 10000,
                        "recipe": "train.py defaults: AdamW 1.5e-3 cosine, wd 0.05, label smoothing 0.1, "
                                  "shift 2 + flip, batch 128, bf16 autocast"},
              "summary": table, "runs": runs}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("| arm | top-1 mean +- std (%) | runs |\n|---|---|---|")
    for arm, row in table.items():
        print(f"| {arm} | {row['mean']:.2f} +- {row['std']:.2f} | {', '.join(f'{s:.2f}' for s in row['runs'])} |")


if __name__ == "__main__":
    main()

"""Copy the model of a (possibly still running) training run into a mait-deploy checkpoint folder.

    python training/snapshot.py --run-dir ~/.cache/mait-train/demo --out mait_deploy/assets/mait_demo_28.fmnist
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mait_deploy.config import MaiTConfig  # noqa: E402
from mait_deploy.host.model.checkpoint import save_checkpoint  # noqa: E402
from mait_deploy.host.model.mait import MaiT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    state = torch.load(args.run_dir / "state.pt", map_location="cpu", weights_only=True)
    model = MaiT(MaiTConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    last = state["history"][-1]
    save_checkpoint(model.eval(), args.out, metadata={"epoch": str(state["epoch"]),
                                                      "test_top1": f"{last['test_top1']:.4f}"})
    print(f"wrote {args.out} from epoch {state['epoch']} (test top-1 {last['test_top1']:.4f})")


if __name__ == "__main__":
    main()

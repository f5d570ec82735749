"""Write the Fashion-MNIST sample shipped with the package (so the built-in demo needs no apt package).

    python training/make_sample.py  # -> mait_deploy/assets/fashion_mnist_sample.npz

1,000 training images (calibration) and 5,000 test images (accuracy checks), stratified by class, seeded.
Fashion-MNIST is (c) Zalando SE, MIT licence; see mait_deploy/assets/FASHION_MNIST_LICENSE.txt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mait_deploy.device.data.fashion_mnist import load_split  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "mait_deploy" / "assets"


def stratified(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    classes = np.unique(labels)
    per_class = count // len(classes)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSETS / "fashion_mnist_sample.npz")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    train_idx, test_idx = stratified(train_y, args.train, rng), stratified(test_y, args.test, rng)
    np.savez_compressed(args.out, train_images=train_x[train_idx], train_labels=train_y[train_idx].astype(np.uint8),
                        test_images=test_x[test_idx], test_labels=test_y[test_idx].astype(np.uint8),
                        train_index=train_idx.astype(np.int32), test_index=test_idx.astype(np.int32))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

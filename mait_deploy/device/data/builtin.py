"""The built-in ``fashion-mnist`` data source: the full Debian set when installed, else the shipped sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mait_deploy._assets import ASSETS
from mait_deploy.device.data import fashion_mnist
from mait_deploy.errors import DataError

SAMPLE_PATH = ASSETS / "fashion_mnist_sample.npz"
BUILTIN_NAMES = ("fashion-mnist",)


@dataclass(frozen=True)
class RawImages:
    """uint8 images [N, H, W] or [N, H, W, C] with int64 labels, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    origin: str

    def __len__(self) -> int:
        return len(self.images)


def load_sample(split: str) -> RawImages:
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if not SAMPLE_PATH.is_file():
        raise DataError(f"the shipped Fashion-MNIST sample is missing ({SAMPLE_PATH})")
    with np.load(SAMPLE_PATH) as data:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"].astype(np.int64)
    return RawImages(images, labels, f"fashion-mnist {split} (shipped sample, {len(images)} images)")


def load_builtin(split: str, prefer_full: bool = True) -> RawImages:
    """Fashion-MNIST ``train`` or ``test``: the full Debian set when present (and preferred), else the sample."""
    if prefer_full and fashion_mnist.is_available():
        images, labels = fashion_mnist.load_split(split)
        return RawImages(images, labels, f"fashion-mnist {split} (full set, {fashion_mnist.dataset_dir()})")
    return load_sample(split)

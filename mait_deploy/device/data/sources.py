"""Calibration and evaluation data sources (numpy + Pillow; no torch).

A source is one of:
- ``fashion-mnist``: the built-in set (calibration draws from its train split, evaluation from its test split);
- a folder of images (.png/.jpg/.jpeg/.bmp, any size/mode); with one sub-folder per class it is labelled, the
  sub-folder names matching the model's labels (or their indices);
- a ``.npy`` file (images only) or ``.npz`` file (``images`` and optional ``labels``): uint8 [N, H, W(, C)] or
  float [N, H, W(, C)] / [N, C, H, W] pixel values.
Images are preprocessed by the same numpy code the device runtime uses.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mait_deploy.config import PreprocessConfig
from mait_deploy.device.data.arrays import ArrayFile
from mait_deploy.device.data.builtin import BUILTIN_NAMES, load_builtin
from mait_deploy.device.preprocess import (
    IMAGE_SUFFIXES,
    load_image,
    preprocess,
    preprocess_uint8_batch,
)
from mait_deploy.errors import DataError

PURPOSES = ("calibration", "evaluation")
_BUILTIN_SPLIT = {"calibration": "train", "evaluation": "test"}


@dataclass
class Dataset:
    """Preprocessed inputs (float32 [N, C, H, W]) with optional labels, and where they came from."""

    inputs: np.ndarray
    labels: np.ndarray | None
    origin: str
    raw: list | np.ndarray | None = None  # the raw images (for golden I/O), when kept
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)

    def fingerprints(self) -> set[str]:
        return {hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in self.inputs}

    def content_sha256(self) -> str:
        """A digest of the preprocessed inputs and labels: what a result computed on this data depends on."""
        digest = hashlib.sha256(np.ascontiguousarray(self.inputs).tobytes())
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"origin": self.origin, "count": len(self), "labelled": self.labels is not None,
                "skipped": len(self.skipped)}


def _sample_indices(count_available: int, count: int | None, labels: np.ndarray | None, seed: int,
                    strict: bool, what: str) -> np.ndarray:
    """``count`` indices drawn with ``seed``, stratified by label when labels exist."""
    if count is None or count >= count_available:
        if count is not None and count > count_available and strict:
            raise DataError(f"{what} has {count_available} images, {count} were asked for")
        return np.arange(count_available)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(count_available, size=count, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation keeps the class proportions and the exact total.
    exact = counts / counts.sum() * count
    take = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - take))[: count - take.sum()]:
        take[index] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=min(n, k), replace=False)
              for c, n, k in zip(classes, take, counts)]
    return np.sort(np.concatenate(chosen))


def _label_index(name: str, labels: Sequence[str]) -> int:
    if name in labels:
        return list(labels).index(name)
    if name.isdigit() and int(name) < len(labels):
        return int(name)
    raise DataError(f"class folder {name!r} matches no model label (labels: {', '.join(labels)})")


def _folder(path: Path, config: PreprocessConfig, labels: Sequence[str] | None, count: int | None, seed: int,
            strict: bool) -> Dataset:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{path} holds no files")
    if not images:
        raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    class_dirs = sorted({p.relative_to(path).parts[0] for p in images if len(p.relative_to(path).parts) > 1})
    labelled = bool(class_dirs) and all(len(p.relative_to(path).parts) > 1 for p in images)
    targets = None
    if labelled and labels:
        mapping = {name: _label_index(name, labels) for name in class_dirs}
        targets = np.array([mapping[p.relative_to(path).parts[0]] for p in images], dtype=np.int64)
    chosen = _sample_indices(len(images), count, targets, seed, strict, str(path))
    arrays, kept_labels, raw, skipped = [], [], [], []
    for index in chosen:
        try:
            image = load_image(images[index])
            arrays.append(preprocess(image, config)[0])
            raw.append(image)
        except DataError as err:
            skipped.append(str(err))
            continue
        if targets is not None:
            kept_labels.append(targets[index])
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {path}, e.g. {skipped[0]}", stacklevel=2)
    if not arrays:
        raise DataError(f"no readable images in {path} ({len(skipped)} failed, e.g. {skipped[0]})")
    if strict and count is not None and len(arrays) < count:
        raise DataError(f"{path}: only {len(arrays)} readable images, {count} were asked for")
    origin = f"{path} ({len(arrays)} images{', labelled' if targets is not None else ''})"
    return Dataset(np.stack(arrays), np.array(kept_labels) if targets is not None else None, origin, raw, skipped)


def _array_file(path: Path, config: PreprocessConfig, count: int | None, seed: int, strict: bool) -> Dataset:
    with ArrayFile(path) as arrays:
        shape, dtype, labels = arrays.shape, arrays.dtype, arrays.labels
        if len(shape) not in (3, 4) or shape[0] == 0:
            raise DataError(f"{path}: expected images [N, H, W(, C)] or [N, C, H, W], got shape {list(shape)}")
        if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
            raise DataError(f"{path}: images must be uint8 (0-255) or float (0-1), got {dtype}")
        if labels is not None:
            if labels.ndim != 1 or len(labels) != shape[0] or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"{path}: labels must be integers [N] matching {shape[0]} images, "
                                f"got {labels.dtype} {list(labels.shape)}")
            labels = labels.astype(np.int64)
        chosen = _sample_indices(shape[0], count, labels, seed, strict, str(path))
        images = arrays.rows(chosen)
    labels = labels[chosen] if labels is not None else None
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise DataError(f"{path}: images contain NaN or Inf")
    inputs = preprocess_uint8_batch(images, config) if images.dtype == np.uint8 else preprocess(images, config)
    return Dataset(inputs, labels, f"{path} ({len(images)} images)", images)


def check_source(source: str | os.PathLike[str]) -> None:
    """A data source that cannot be read as one (a missing path, a file that is not .npy/.npz) is a DataError here,
    before a caller's slow work (an export) rather than after it."""
    if str(source) in BUILTIN_NAMES:
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"data source not found: {source} (built-in sources: {', '.join(BUILTIN_NAMES)})")
    if not path.is_dir() and path.suffix.lower() not in (".npy", ".npz"):
        raise DataError(f"unsupported data source {path.name}: use a folder of images, a .npy/.npz file or "
                        f"{', '.join(BUILTIN_NAMES)}")


def load_dataset(source: str | os.PathLike[str], purpose: str, config: PreprocessConfig,
                 labels: Sequence[str] | None = None, count: int | None = None, seed: int = 0,
                 strict: bool = False, num_classes: int | None = None) -> Dataset:
    """Load and preprocess a data source for ``purpose`` (calibration or evaluation).

    ``count`` draws that many images (stratified by label where labels exist); with ``strict`` a source with
    fewer images is an error, otherwise all of them are used.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    if count is not None and count < 1:
        raise DataError(f"the number of images must be positive, got {count}")
    name = str(source)
    check_source(source)
    if name in BUILTIN_NAMES:
        raw = load_builtin(_BUILTIN_SPLIT[purpose])
        chosen = _sample_indices(len(raw), count, raw.labels, seed, strict, raw.origin)
        images = raw.images[chosen]
        dataset = Dataset(preprocess_uint8_batch(images, config), raw.labels[chosen],
                          f"{raw.origin}, {len(chosen)} drawn" if len(chosen) < len(raw) else raw.origin, images)
    else:
        path = Path(source)
        if path.is_dir():
            dataset = _folder(path, config, labels, count, seed, strict)
        else:
            dataset = _array_file(path, config, count, seed, strict)
    classes = num_classes or (len(labels) if labels else None)
    if dataset.labels is not None and classes is not None and dataset.labels.size:
        if dataset.labels.min() < 0 or dataset.labels.max() >= classes:
            raise DataError(f"{dataset.origin}: labels outside 0..{classes - 1}")
    return dataset


def require_labels(dataset: Dataset) -> None:
    if dataset.labels is None:
        raise DataError(f"evaluation needs labelled data; {dataset.origin} has no labels "
                        "(use class sub-folders or an .npz with 'labels')")


def check_disjoint(calibration: Dataset, evaluation: Dataset) -> None:
    """The accuracy gate must never score the calibration images."""
    overlap = len(calibration.fingerprints() & evaluation.fingerprints())
    if overlap:
        raise DataError(f"{overlap} evaluation images are also calibration images; use held-out data for --eval")

"""A numpy reader for Fashion-MNIST's IDX files (the Debian package ``dataset-fashion-mnist``).

Importable without torch; used by training, the built-in calibration/evaluation source and the sample maker.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from mait_deploy.errors import DataError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "MAIT_FASHION_MNIST_DIR"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type code 0x08 = unsigned byte: the only type Fashion-MNIST uses.
_UBYTE = 0x08


def dataset_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the IDX files: ``path``, else $MAIT_FASHION_MNIST_DIR, else the Debian location."""
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _open(path: Path) -> bytes:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            try:
                with opener(candidate, "rb") as handle:
                    return handle.read()
            except (OSError, EOFError) as err:
                raise DataError(f"cannot read {candidate}: {err}") from err
    raise DataError(f"missing Fashion-MNIST file {path}(.gz); install 'dataset-fashion-mnist' or set ${ENV_VAR}")


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a uint8 array of its declared shape."""
    raw = _open(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != _UBYTE:
        raise DataError(f"{path} holds IDX type 0x{raw[2]:02x}; only unsigned bytes are supported")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header promises {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(split: str, path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the ``train`` or ``test`` split."""
    if split not in _FILES:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    folder = dataset_dir(path)
    image_name, label_name = _FILES[split]
    images = read_idx(folder / image_name)
    labels = read_idx(folder / label_name).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def is_available(path: str | os.PathLike[str] | None = None) -> bool:
    folder = dataset_dir(path)
    return all(
        (folder / name).is_file() or (folder / (name + ".gz")).is_file()
        for names in _FILES.values() for name in names
    )

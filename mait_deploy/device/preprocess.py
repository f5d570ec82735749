"""Image preprocessing in numpy (+ Pillow for decoding and resizing): the single implementation used by
calibration, evaluation and every device runtime. Never imports torch.

Accepted inputs, one image or many:
- a file path (str/Path) or a PIL image;
- a uint8 array (pixel values 0-255) or a float array (pixel values 0-1):
  [H, W] one grey image, [H, W, C] one image (C in 1, 3, 4), [N, H, W] grey images,
  [N, H, W, C] or [N, C, H, W] batches (C in 1, 3);
- a list mixing any of the above.
The result is float32 [N, C, S, S], normalised with the model's mean/std.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mait_deploy.config import PreprocessConfig
from mait_deploy.errors import DataError, printable

_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _pil():
    try:
        from PIL import Image
    except ImportError as err:  # Pillow is a core dependency; this only fires on a broken install
        raise DataError("Pillow is required to read and resize images: pip install pillow") from err
    return Image


# A classifier's input is a few hundred pixels wide; 40 MP covers every camera still while a small, highly
# compressed file cannot make predict decode gigabytes (a 13000x13000 16-bit PNG of 328 KB took 4.4 GB).
MAX_IMAGE_PIXELS = 40_000_000


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files named, a folder standing for the image files directly inside it (sorted by name; other
    files and subfolders are skipped). An empty folder is an error rather than zero predictions."""
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not inside:
            raise DataError(f"{printable(str(path))} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        files.extend(inside)
    return files


def load_image(path: str | os.PathLike[str], config: PreprocessConfig | None = None) -> Any:
    """Open an image file fully (so a truncated file fails here, with its name). With the model's ``config`` the
    resize it will need is checked against the pixel budget from the header, before anything is decoded."""
    Image = _pil()
    path = Path(path)
    name = printable(str(path))
    if not path.exists():
        raise DataError(f"image not found: {name}")
    if path.is_dir():
        raise DataError(f"{name} is a folder; give image files ({', '.join(IMAGE_SUFFIXES)}) or use evaluate for "
                        f"a labelled folder")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise DataError(f"{name} is not a regular file")
    try:
        with Image.open(path) as image:
            width, height = image.size  # read from the header: nothing is decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"image {name} is {width}x{height} ({width * height / 1e6:.0f} MP); the limit is "
                                f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP: downscale it first")
            if config is not None:
                resize_plan(width, height, config, name)
            image.load()
            return image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {name}: {err}") from err


def _to_mode(image: Any, channels: int) -> Any:
    """Convert any PIL mode (16-bit, CMYK, RGBA, palette, ...) to 'L' or 'RGB'."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integer greys: rescale to 8 bits by the type's range rather than clipping at 255.
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = _pil().fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = _pil().fromarray(np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "P", "PA") and channels == 3:
        image = image.convert("RGBA")
        background = _pil().new("RGBA", image.size, (255, 255, 255, 255))
        image = _pil().alpha_composite(background, image)
    return image.convert("L" if channels == 1 else "RGB")


def resize_plan(width: int, height: int, config: PreprocessConfig, name: str = "an image") -> tuple[int, int]:
    """The size the shorter-side resize gives a ``width`` x ``height`` image (before the centre crop). The resize
    of a very elongated image would be far larger than the image itself (1 x 16,000,000 px -> 28 x 448,000,000):
    every intermediate (the resized image, and Pillow's horizontal pass: the new width times the source's rows) is
    held to the pixel budget, as the native runner does, and refused in one line naming the image."""
    scale_to = int(round(config.input_size / config.crop_pct))
    if width <= height:
        new_size = (scale_to, max(scale_to, int(round(height * scale_to / width))))
    else:
        new_size = (max(scale_to, int(round(width * scale_to / height))), scale_to)
    if max(new_size[0] * new_size[1], new_size[0] * height) > MAX_IMAGE_PIXELS:
        raise DataError(f"{name}: a {width}x{height} image resizes to {new_size[0]}x{new_size[1]} before the centre "
                        f"crop, above the {MAX_IMAGE_PIXELS // 1_000_000} MP budget: crop it to a less elongated "
                        f"shape first")
    return new_size


def _resize_crop(image: Any, config: PreprocessConfig) -> np.ndarray:
    """Resize the shorter side to input_size / crop_pct, centre-crop input_size; returns float32 HWC in [0, 1]."""
    size = config.input_size
    width, height = image.size
    if (width, height) != (size, size):
        new_size = resize_plan(width, height, config)
        if new_size != (width, height):
            image = image.resize(new_size, resample=_RESAMPLE[config.interpolation])
        left = (image.size[0] - size) // 2
        top = (image.size[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[:, :, None] if array.ndim == 2 else array


def _array_to_images(array: np.ndarray) -> list[np.ndarray]:
    """Split an array into HWC images following the layout rules in the module docstring."""
    if array.size == 0:
        raise DataError(f"empty input array of shape {array.shape}")
    if array.ndim == 2:
        return [array[:, :, None]]
    if array.ndim == 3:
        if array.shape[-1] in (1, 3, 4):
            return [array]
        return [image[:, :, None] for image in array]
    if array.ndim == 4:
        if array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(0, 2, 3, 1)
        if array.shape[-1] not in (1, 3, 4):
            raise DataError(f"cannot tell the channel axis of an array of shape {array.shape}")
        return list(array)
    raise DataError(f"expected an image array with 2 to 4 dimensions, got shape {array.shape}")


def _array_image_to_pil(image: np.ndarray) -> Any:
    if image.dtype == np.uint8:
        pixels = image
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise DataError("input image contains NaN or Inf")
        if image.min() < 0.0 or image.max() > 1.0:
            raise DataError("float images must hold pixel values in [0, 1] (uint8 images: 0-255)")
        pixels = (image * 255.0 + 0.5).astype(np.uint8)
    else:
        raise DataError(f"unsupported image dtype {image.dtype}; use uint8 (0-255) or float (0-1)")
    channels = pixels.shape[-1]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    return _pil().fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=mode)


def _iter_pil(inputs: Any, config: PreprocessConfig | None = None) -> Iterable[Any]:
    Image = _pil()
    if isinstance(inputs, (str, os.PathLike)):
        yield load_image(inputs, config)
    elif isinstance(inputs, Image.Image):
        yield inputs
    elif isinstance(inputs, np.ndarray):
        for image in _array_to_images(inputs):
            yield _array_image_to_pil(image)
    elif isinstance(inputs, Sequence):
        if len(inputs) == 0:
            raise DataError("no images given (empty list)")
        for item in inputs:
            yield from _iter_pil(item, config)
    else:
        raise DataError(f"unsupported input type {type(inputs).__name__}; give paths, PIL images or numpy arrays")


def preprocess(inputs: Any, config: PreprocessConfig) -> np.ndarray:
    """Turn raw images into the model input: float32 [N, C, S, S], normalised."""
    images = [_resize_crop(_to_mode(image, config.channels), config) for image in _iter_pil(inputs, config)]
    return normalize(np.stack(images).transpose(0, 3, 1, 2), config)


def normalize(batch: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(x - mean) / std per channel for a float [N, C, H, W] batch of pixel values in [0, 1]."""
    mean = np.asarray(config.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(config.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((batch.astype(np.float32) - mean) / std).astype(np.float32)


def preprocess_uint8_batch(images: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Fast path for a uint8 batch already at the model's size ([N, H, W] grey or [N, H, W, C])."""
    if images.dtype != np.uint8:
        raise DataError(f"expected uint8 images, got {images.dtype}")
    size = config.input_size
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.shape[1:3] != (size, size) or images.shape[3] != config.channels:
        return preprocess(images, config)
    return normalize(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0, config)

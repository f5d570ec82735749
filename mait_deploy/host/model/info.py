"""Describe and evaluate checkpoints (the library functions behind ``mait-deploy info`` / ``evaluate``)."""

from __future__ import annotations

import os
from typing import Any

from mait_deploy._io import sha256_file
from mait_deploy.host.compile.source import source_from_onnx
from mait_deploy.host.export.onnx import read_onnx_metadata
from mait_deploy.host.model.checkpoint import WEIGHTS_FILE, load_checkpoint
from mait_deploy.host.model.zoo import resolve_checkpoint


def checkpoint_info(checkpoint: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Architecture, mask geometry, preprocessing, labels and file facts of a checkpoint (or of an exported
    ``.onnx``, whose config travels in its metadata)."""
    from mait_deploy.host.model.stats import model_stats

    if checkpoint is not None and str(checkpoint).lower().endswith(".onnx"):
        return onnx_info(checkpoint)
    path = resolve_checkpoint(checkpoint)
    model = load_checkpoint(path)
    config = model.config
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    stats = model_stats(model)
    return {
        "path": str(path), **_architecture(config), "params": stats.params, "gmacs": round(stats.gmacs, 4),
        "talking_heads": config.talking_heads,
        "weights_bytes": weights.stat().st_size, "weights_sha256": sha256_file(weights),
    }


def _architecture(config: Any) -> dict[str, Any]:
    return {
        "variant": config.name,
        "input": list(config.input_shape),
        "backbone": config.backbone + (" (distilled)" if config.distilled else ""),
        "tokens": config.num_tokens,
        "embed_dim / depth / heads": f"{config.embed_dim} / {config.depth} / {config.num_heads}",
        "mask": config.mask.to_dict(),
        "masked heads per block": [list(heads) for heads in config.layer_heads()],
        "preprocess": config.preprocess.to_dict(),
        "labels": list(config.label_names()),
    }


def onnx_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config an exported ONNX carries in its metadata, and its file facts."""
    from pathlib import Path

    source = source_from_onnx(path)  # checks: our metadata, FP32, dynamic batch
    config, meta = source.config, read_onnx_metadata(path)
    return {
        "path": str(path), **_architecture(config), "precision": meta.get("precision", "fp32"),
        "onnx_bytes": Path(path).stat().st_size, "onnx_sha256": sha256_file(path),
    }

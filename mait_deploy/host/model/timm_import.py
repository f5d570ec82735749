"""timm DeiT/ViT weights into the deit backbone, with a mask schedule added (timm itself is not needed).

MaiT's deit backbone keeps timm's parameter names (``cls_token``, ``dist_token``, ``pos_embed``,
``blocks.0.attn.qkv``, ``blocks.0.ls1.gamma``, ``head_dist``...), so the mapping is the identity on the keys;
what has to be found is the architecture, read from the tensor shapes. The head count is not in any shape:
timm's DeiT/ViT use 64-wide heads (tiny 3, small 6, base 12), the default here; pass ``num_heads`` otherwise.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from mait_deploy._io import check_output
from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.errors import CheckpointError, ConfigError
from mait_deploy.host.model.checkpoint import _tensor_dict, apply_state_dict, load_state_dict_file
from mait_deploy.host.model.mait import MaiT, variant_config

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
# timm's DeiT preprocessing: bicubic, crop 0.875, ImageNet statistics (0.5/0.5 for other channel counts).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _deit_preprocess(size: int, channels: int) -> PreprocessConfig:
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels, (0.5,) * channels)
    return PreprocessConfig(input_size=size, channels=channels, mean=mean, std=std, interpolation="bicubic",
                            crop_pct=0.875)
UNSUPPORTED_KEYS = {"reg_token": "register tokens", "fc_norm.weight": "global-pool fc_norm",
                    "blocks.0.attn.q_norm.weight": "q/k normalisation", "blocks.0.norm.weight": "parallel blocks",
                    "attn_pool.latent": "attention pooling"}


# The tensors the architecture is read from, with their rank in timm's DeiT/ViT.
RANKS = {"patch_embed.proj.weight": 4, "pos_embed": 3, "cls_token": 3, "head.weight": 2,
         "blocks.0.attn.qkv.weight": 2, "blocks.0.mlp.fc1.weight": 2}


def _check_shapes(state: Mapping[str, torch.Tensor]) -> None:
    """The tensors the architecture is read from have timm's ranks and no empty dimension, and agree on the width:
    a wrong-rank or zero-width tensor is one line, not an unpacking error deep in the inference."""
    missing = [key for key in RANKS if key not in state]
    if missing:
        raise CheckpointError(f"not a timm DeiT/ViT state dict: missing {', '.join(missing)}")
    for key, rank in RANKS.items():
        shape = tuple(state[key].shape)
        if len(shape) != rank:
            raise CheckpointError(f"{key} has shape {list(shape)}; timm's DeiT/ViT has {rank} dimensions there")
    empty = next((key for key, tensor in state.items() if 0 in tuple(tensor.shape)), None)
    if empty is not None:
        raise CheckpointError(f"{empty} has an empty dimension (shape {list(state[empty].shape)})")
    floating = next((key for key, tensor in state.items() if not tensor.is_floating_point()), None)
    if floating is not None:
        raise CheckpointError(f"{floating} holds {state[floating].dtype} values; weights are floating point")
    width = state["patch_embed.proj.weight"].shape[0]
    for key, axis in (("pos_embed", 2), ("cls_token", 2), ("head.weight", 1), ("blocks.0.attn.qkv.weight", 1)):
        if state[key].shape[axis] != width:
            raise CheckpointError(f"{key} is {state[key].shape[axis]} wide; the patch embedding is {width}")
    if state["blocks.0.attn.qkv.weight"].shape[0] != 3 * width:
        raise CheckpointError(f"blocks.0.attn.qkv.weight has {state['blocks.0.attn.qkv.weight'].shape[0]} rows; "
                              f"q, k and v of width {width} need {3 * width}")


def deit_config_from_state_dict(state: Mapping[str, torch.Tensor], num_heads: int | None = None,
                                 **overrides: Any) -> MaiTConfig:
    """Infer a deit-backbone MaiT config (masks off unless given) from a timm DeiT/ViT state dict's shapes."""
    _check_shapes(state)
    unsupported = [what for key, what in UNSUPPORTED_KEYS.items() if key in state]
    if unsupported:
        raise CheckpointError(f"this ViT uses {', '.join(unsupported)}, which the deit backbone does not have")
    embed_dim, in_chans, patch, patch_w = state["patch_embed.proj.weight"].shape
    if patch != patch_w:
        raise CheckpointError(f"non-square patches ({patch}x{patch_w}) are not supported")
    distilled = "dist_token" in state
    prefix = 1 + int(distilled)
    tokens = state["pos_embed"].shape[1] - prefix
    grid = int(round(tokens**0.5))
    if grid * grid != tokens:
        raise CheckpointError(f"pos_embed has {tokens} patch tokens, not a square grid")
    depth = 1 + max(int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key)))
    heads = num_heads if num_heads is not None else max(1, embed_dim // 64)
    values: dict[str, Any] = dict(
        name="mait_from_deit", backbone="deit", distilled=distilled, img_size=grid * patch, patch_size=patch,
        in_chans=in_chans, num_classes=state["head.weight"].shape[0], embed_dim=embed_dim, depth=depth,
        num_heads=heads, mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        # LayerScale's init value only matters for training from scratch; the loaded gammas replace it.
        init_values=1e-5 if "blocks.0.ls1.gamma" in state else None,
        mask=MaskConfig(enabled=False),
        preprocess=_deit_preprocess(grid * patch, in_chans),
    )
    values.update(overrides)
    try:
        return MaiTConfig(**values)
    except TypeError as err:
        raise ConfigError(f"invalid override: {err}") from err


def import_timm_deit(source: str | os.PathLike[str] | Mapping[str, torch.Tensor], mask: MaskConfig | None = None,
                     variant: str | None = None, num_heads: int | None = None) -> MaiT:
    """Load timm DeiT/ViT weights (distilled too) into a deit-backbone MaiT, adding ``mask`` (default: none).

    ``source`` is a state dict or a .safetensors/.pth file. With ``variant`` (e.g. ``mait_t_patch16_224``) the
    weights must fit that architecture; otherwise it is inferred from the shapes (``num_heads``: see above).
    """
    state = dict(source) if isinstance(source, Mapping) else load_state_dict_file(source)
    origin = "timm state dict" if isinstance(source, Mapping) else str(source)
    state = _tensor_dict(state, Path(origin))
    extra = {"mask": mask} if mask is not None else {}
    if variant is not None:
        config = variant_config(variant, distilled="dist_token" in state, **extra)
        if config.backbone != "deit":
            raise ConfigError(f"{variant} has the {config.backbone} backbone; DeiT weights need a deit variant")
    else:
        config = deit_config_from_state_dict(state, num_heads=num_heads, **extra)
    return apply_state_dict(config, state, origin)


# What the mask transform applies to: timm transformers whose attention is one dense [T, T] product per head over
# a square patch grid, so a window mask is a constant on it. Swin already restricts attention to shifted windows
# (with a relative position bias per window) and has no global heads to mask; convolutional nets have no attention.
TRANSFORM_SUPPORTS = ("timm DeiT/ViT (VisionTransformer, distilled too)", "timm CaiT")
_CAIT_KEY = "blocks_token_only.0.attn.q.weight"  # CaiT's class-attention blocks
_REFUSED = (("relative_position_bias_table", "Swin (shifted-window attention with relative position bias)"),
            ("stages.", "a hierarchical convolutional or hybrid network"),
            ("conv1.weight", "a convolutional network"))


def import_timm(source: str | os.PathLike[str] | Mapping[str, torch.Tensor], mask: MaskConfig | None = None,
                num_heads: int | None = None) -> MaiT:
    """The mask transform: timm DeiT/ViT or CaiT weights (kept as they are) in a MaiT with ``mask`` added.

    The architecture is read from the state dict's keys and shapes. Default masks: the paper's (multiplicative,
    mixed schedule, 3x3) for DeiT/ViT; for CaiT, whose talking heads mix heads between the products and the
    softmax, additive masks on the first half of the heads. Anything else is refused with one line.
    """
    from mait_deploy.host.model.checkpoint import import_timm_cait
    from mait_deploy.host.model.mait import PAPER_MASK

    state = dict(source) if isinstance(source, Mapping) else load_state_dict_file(source)
    state = _tensor_dict(state, Path("timm state dict" if isinstance(source, Mapping) else str(source)))
    for marker, what in _REFUSED:
        if any(marker in key for key in state):
            raise CheckpointError(f"the mask transform supports {' and '.join(TRANSFORM_SUPPORTS)}; this state dict "
                                  f"is {what}")
    if _CAIT_KEY in state:
        return import_timm_cait(state, mask=mask or MaskConfig())
    if "blocks.0.attn.qkv.weight" in state and "cls_token" in state:
        return import_timm_deit(state, mask=mask or PAPER_MASK, num_heads=num_heads)
    raise CheckpointError(f"not a state dict the mask transform supports ({' and '.join(TRANSFORM_SUPPORTS)})")


def checkpoint_ownership(folder: Path) -> str | None:
    """None when ``folder`` is a MaiT checkpoint this tool wrote (config.json + model.safetensors only)."""
    from mait_deploy.host.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return None if names == {CONFIG_FILE, WEIGHTS_FILE} else "not a mait-deploy checkpoint folder"


def import_timm_checkpoint(weights: str | os.PathLike[str], out: str | os.PathLike[str], mode: str | None = None,
                           schedule: str | None = None, window: int = 3, num_heads: int | None = None,
                           force: bool = False) -> MaiTConfig:
    """``import_timm`` from a weights file, saved as a checkpoint folder (train.py --init-from fine-tunes it)."""
    from mait_deploy.host.model.checkpoint import save_checkpoint

    out = Path(out)
    check_output(out, force, kind="dir", ours=checkpoint_ownership, what="checkpoint")
    if not Path(weights).is_file():
        raise CheckpointError(f"weights file not found: {weights}")
    state = load_state_dict_file(weights)
    cait = _CAIT_KEY in state
    mask = None
    if mode is not None or schedule is not None or window != 3:
        mask = MaskConfig(mode=mode or ("additive" if cait else "multiplicative"), window=window,
                          schedule=schedule or (None if cait else "mixed"))
    model = import_timm(state, mask=mask, num_heads=num_heads)
    save_checkpoint(model, out, metadata={"imported_from": Path(weights).name})
    return model.config

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


def deit_config_from_state_dict(state: Mapping[str, torch.Tensor], num_heads: int | None = None,
                                 **overrides: Any) -> MaiTConfig:
    """Infer a deit-backbone MaiT config (masks off unless given) from a timm DeiT/ViT state dict's shapes."""
    required = ("patch_embed.proj.weight", "pos_embed", "cls_token", "head.weight", "blocks.0.attn.qkv.weight",
                "blocks.0.mlp.fc1.weight")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"not a timm DeiT/ViT state dict: missing {', '.join(missing)}")
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

"""MaiT: an image transformer in which some self-attention heads are masked to a local window of patches.

Three backbones share one class: ``deit`` (the paper's: timm's VisionTransformer, class/distillation tokens in the
sequence), ``cait`` (timm's cait.py: patch-only self-attention, then class-attention blocks) and ``pyramid`` (a
hierarchical MaiT: stages at decreasing token resolution, pyramid.py; the paper's claim that masks apply to
hierarchical transformers). Parameter names
follow timm (``blocks.0.attn.qkv``, ``blocks.0.ls1.gamma``, ``blocks_token_only.0.attn.q``, ``gamma_1``...), so
timm DeiT/ViT and CaiT weights map 1:1. The blocks are in layers.py, the mask constants in masks.py.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.errors import ConfigError
from mait_deploy.host.model.layers import Block, LayerScaleBlock, LayerScaleBlockClassAttn, PatchEmbed
from mait_deploy.host.model.masks import mask_patterns
from mait_deploy.host.model.pyramid import token_merges


class MaiT(nn.Module):
    """Masked attention image Transformer.

    Each distinct masking pattern of the config (masks.py) is ONE non-persistent buffer (``attn_mask_0``, ...,
    [heads, T, T]); every block that uses a pattern receives that same tensor in ``forward``, so no block holds
    a copy and the export sees one constant per pattern. Being derived from the config, the masks are not saved
    in checkpoints: a checkpoint can never carry a mask that disagrees with its config.
    """

    def __init__(self, config: MaiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        pyramid = config.backbone == "pyramid"
        self.patch_embed = PatchEmbed(config)
        self.cls_token = None if pyramid else nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, dim))
        if pyramid:
            self.merges = token_merges(config.stage_dims, config.grid_size, config.layer_norm_eps)
            self.blocks = nn.ModuleList(Block(config, config.drop_path_rate, dim=width, num_heads=heads)
                                        for width, heads in zip(config.block_dims(), config.block_heads()))
        else:
            block = Block if config.backbone == "deit" else LayerScaleBlock
            self.blocks = nn.ModuleList(block(config, config.drop_path_rate) for _ in range(config.depth))
        self.blocks_token_only = nn.ModuleList(
            LayerScaleBlockClassAttn(config) for _ in range(config.depth_token_only or 0)
        )
        self.norm = nn.LayerNorm(config.feature_dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.feature_dim, config.num_classes)
        self.head_dist = nn.Linear(dim, config.num_classes) if config.distilled else None

        self.mask_names: list[str] = []
        pattern_of_block: dict[int, int] = {}
        for index, pattern in enumerate(mask_patterns(config)):
            name = f"attn_mask_{index}"
            self.register_buffer(name, torch.from_numpy(pattern.constant), persistent=False)
            self.mask_names.append(name)
            pattern_of_block.update(dict.fromkeys(pattern.blocks, index))
        self.block_patterns = tuple(pattern_of_block.get(block, None) for block in range(config.depth))
        self._init_weights()

    def _init_weights(self) -> None:
        for token in (self.pos_embed, self.cls_token, self.dist_token):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        merges = {f"merges.{index}.pos_embed" for index in range(self.config.num_stages - 1)}
        return {"pos_embed", "cls_token", "dist_token"} | merges

    @property
    def attn_masks(self) -> list[torch.Tensor]:
        """The mask constants, one per distinct pattern."""
        return [getattr(self, name) for name in self.mask_names]

    def block_mask(self, index: int) -> torch.Tensor | None:
        """The mask constant self-attention block ``index`` uses (None for a global block)."""
        pattern = self.block_patterns[index]
        return None if pattern is None else getattr(self, self.mask_names[pattern])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> the token sequence the first self-attention block sees (prefix tokens first for deit)."""
        x = self.patch_embed(x)
        if self.config.backbone == "deit":
            prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
            if self.dist_token is not None:
                prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
            x = torch.cat((*prefix, x), dim=1)
        return x + self.pos_embed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        stages = self.config.block_stages()
        for index, block in enumerate(self.blocks):
            if index and stages[index] != stages[index - 1]:  # pyramid: into the next, coarser stage
                x = self.merges[stages[index] - 1](x)
            x = block(x, self.block_mask(index))
        if self.config.backbone == "pyramid":
            return self.norm(x)
        if self.config.backbone == "deit":
            return self.norm(x)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        for block in self.blocks_token_only:
            cls_token = block(x, cls_token)
        return self.norm(torch.cat((cls_token, x), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        if self.config.backbone == "pyramid":  # no class token: the mean of the last stage's tokens
            # sum / count, not mean(): opset 18's ReduceMean takes its axes as an input and the exporter's
            # down-conversion to opset 17 fails on it (ReduceSum has had the input form since opset 13).
            return self.head(features.sum(dim=1) / features.shape[1])
        logits = self.head(features[:, 0])
        if self.head_dist is not None:  # DeiT's distilled inference: the mean of both heads
            logits = (logits + self.head_dist(features[:, 1])) / 2
        return logits

    def unmasked(self) -> "MaiT":
        """The identical network (same weights) with every head global: the paper's DeiT/CaiT baseline."""
        twin = MaiT(self.config.unmasked())
        twin.load_state_dict(self.state_dict())
        return twin.train(self.training)


# ----------------------------------------------------------------------------------------------------------
# Registered architectures. Names follow timm: ``arch`` here, ``arch.tag`` for trained weights (zoo.py).

_IMAGENET = PreprocessConfig(input_size=224, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             interpolation="bicubic", crop_pct=1.0)
# Fashion-MNIST statistics of the 60k training images (pixel values scaled to [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _cait(name: str, embed_dim: int, num_heads: int) -> MaiTConfig:
    # CaiT dimensions at 224 px, patch 16 (14x14 tokens), LayerScale init 1e-5, depth 24.
    return MaiTConfig(name=name, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=embed_dim,
                      depth=24, num_heads=num_heads, init_values=1e-5, preprocess=_IMAGENET)


# The paper's multiplicative masks with its "mixed" schedule for deep models (all heads masked in the first
# third of the blocks, one head in the middle third, none in the last), 3x3 windows.
PAPER_MASK = MaskConfig(mode="multiplicative", schedule="mixed", window=3)


def _paper(name: str, embed_dim: int, num_heads: int, layer_scale: bool = False) -> MaiTConfig:
    # The paper's variants (Table 1 and 3): DeiT backbone, 24 blocks, patch 16 at 224 px (196 + 1 tokens).
    return MaiTConfig(name=name, backbone="deit", img_size=224, patch_size=16, in_chans=3, num_classes=1000,
                      embed_dim=embed_dim, depth=24, num_heads=num_heads, mlp_ratio=4.0,
                      init_values=1e-5 if layer_scale else None, mask=PAPER_MASK, preprocess=_IMAGENET)


def _pyramid(name: str, stage_dims: tuple[int, ...], stage_heads: tuple[int, ...],
             stage_depths: tuple[int, ...]) -> MaiTConfig:
    # Hierarchical MaiT at 224 px: patch 8 (28x28 tokens), then 14x14 and 7x7 (PiT's token counts, global
    # attention everywhere; patch 4 would give 3,136 tokens of global attention in the first stage). The paper's
    # mixed schedule follows the resolution: every head masked in the 28x28 stage, one head at 14x14, none at 7x7.
    return MaiTConfig(name=name, backbone="pyramid", img_size=224, patch_size=8, in_chans=3, num_classes=1000,
                      embed_dim=stage_dims[0], num_heads=stage_heads[0], depth=sum(stage_depths),
                      stage_depths=stage_depths, stage_dims=stage_dims, stage_heads=stage_heads, init_values=None,
                      mask=PAPER_MASK, preprocess=_IMAGENET)


_FASHION_MNIST = PreprocessConfig(input_size=28, channels=1, mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,),
                                  interpolation="bilinear")

# What the paper reports for its variants: ImageNet-1k top-1, params (M) and GFLOPs (multiply-adds).
PAPER_FIGURES: dict[str, dict[str, float]] = {
    "mait_xt_patch16_224": {"params_m": 6.3, "gmacs": 1.5, "top1": 73.7},
    "mait_t_patch16_224": {"params_m": 11.0, "gmacs": 2.5, "top1": 79.1},
    "mait_xs_patch16_224": {"params_m": 24.5, "gmacs": 5.3, "top1": 81.0},
    "mait_s_patch16_224": {"params_m": 43.3, "gmacs": 9.1, "top1": 82.1},
    "mait_s_ls_patch16_224": {"params_m": 43.3, "gmacs": 9.1, "top1": 82.8},
}

VARIANTS: dict[str, MaiTConfig] = {
    "mait_xt_patch16_224": _paper("mait_xt_patch16_224", 144, 3),
    "mait_t_patch16_224": _paper("mait_t_patch16_224", 192, 3),
    "mait_xs_patch16_224": _paper("mait_xs_patch16_224", 288, 3),
    "mait_s_patch16_224": _paper("mait_s_patch16_224", 384, 6),
    "mait_s_ls_patch16_224": _paper("mait_s_ls_patch16_224", 384, 6, layer_scale=True),
    # The first release's CaiT-backbone MaiT (additive hard masks on the first half of the heads).
    "mait_xxs24_224": _cait("mait_xxs24_224", 192, 4),
    "mait_xs24_224": _cait("mait_xs24_224", 288, 6),
    "mait_s24_224": _cait("mait_s24_224", 384, 8),
    # Hierarchical MaiTs the size of DeiT-T (5.7 M params, 1.3 GMACs) and Swin-T (28.3 M, 4.5 GMACs); 32-wide heads.
    "mait_pyramid_t_224": _pyramid("mait_pyramid_t_224", (96, 192, 384), (3, 6, 12), (3, 4, 2)),
    "mait_pyramid_s_224": _pyramid("mait_pyramid_s_224", (160, 320, 640), (5, 10, 20), (4, 6, 4)),
    # Demo: 28x28 grey images, patch 4 -> 7x7 tokens; sized to train to >= 90% on Fashion-MNIST on 2 CPU cores.
    "mait_demo_28": MaiTConfig(
        name="mait_demo_28", img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=6,
        num_heads=4, mlp_ratio=3.0, mlp_ratio_token_only=3.0, init_values=0.1, drop_path_rate=0.05,
        preprocess=_FASHION_MNIST, labels=FASHION_MNIST_LABELS,
    ),
    # The paper's MaiT at Fashion-MNIST scale: DeiT backbone, multiplicative 3x3 masks; the shipped checkpoint's
    # schedule was chosen with `mait-deploy locality --suggest` (training/RESULTS.md).
    "mait_deit_28": MaiTConfig(
        name="mait_deit_28", backbone="deit", img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128,
        depth=8, num_heads=4, mlp_ratio=3.0, init_values=None, drop_path_rate=0.05,
        mask=MaskConfig(mode="multiplicative", schedule="uniform:1"),
        preprocess=_FASHION_MNIST, labels=FASHION_MNIST_LABELS,
    ),
    # The hierarchical MaiT at Fashion-MNIST scale (about mait_deit_28's params and FLOPs): patch 2 (14x14 tokens,
    # every head masked), then 7x7 tokens (one masked head).
    "mait_pyramid_28": MaiTConfig(
        name="mait_pyramid_28", backbone="pyramid", img_size=28, patch_size=2, in_chans=1, num_classes=10,
        embed_dim=64, depth=8, num_heads=2, stage_depths=(2, 6), stage_dims=(64, 128), stage_heads=(2, 4),
        mlp_ratio=3.0, init_values=None, drop_path_rate=0.05,
        mask=MaskConfig(mode="multiplicative", schedule="mixed"), preprocess=_FASHION_MNIST,
        labels=FASHION_MNIST_LABELS,
    ),
}


def variant_config(name: str, **overrides: object) -> MaiTConfig:
    """The config of a registered architecture, with optional field overrides (e.g. ``mask=...``)."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(sorted(VARIANTS))}")
    try:
        return dataclasses.replace(VARIANTS[name], **overrides)
    except TypeError as err:
        raise ConfigError(f"invalid override for {name}: {err}") from err


def create_model(name_or_config: str | MaiTConfig, **overrides: object) -> MaiT:
    """Build a randomly initialised MaiT from a variant name or a config."""
    config = variant_config(name_or_config, **overrides) if isinstance(name_or_config, str) else name_or_config
    return MaiT(config)


__all__ = ["MaiT", "MaskConfig", "PAPER_FIGURES", "VARIANTS", "create_model", "variant_config"]

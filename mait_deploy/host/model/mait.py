"""MaiT: a CaiT-style image transformer in which some self-attention heads are masked to a local window.

Layout follows timm's ``cait.py`` (blocks, main class, factory, variants) and keeps its parameter names
(``blocks.0.attn.qkv``, ``blocks_token_only.0.attn.q``, ``gamma_1``, ...) so timm CaiT weights map 1:1.
Attention is written out (matmul, add bias, softmax, matmul) rather than fused so that the exported graph
holds the bias as one visible constant Add that every backend runs.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.errors import ConfigError
from mait_deploy.host.model.masks import attention_bias


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth for training; the identity in eval mode (and so in every export)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention over patch tokens with an optional additive bias before the softmax.

    With talking heads (CaiT), the bias is added after the pre-softmax head projection ``proj_l`` so that a
    masked head's softmax still sees -1e4 outside its window.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, talking_heads: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.talking_heads = talking_heads
        if talking_heads:
            self.proj_l = nn.Linear(num_heads, num_heads)
            self.proj_w = nn.Linear(num_heads, num_heads)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        if self.talking_heads:
            scores = self.proj_l(scores.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if bias is not None:
            scores = scores + bias
        weights = scores.softmax(dim=-1)
        if self.talking_heads:
            weights = self.proj_w(weights.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class ClassAttention(nn.Module):
    """CaiT class attention: the class token queries [class token, patches]; always global."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(x[:, :1]).reshape(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        k = self.k(x).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        v = self.v(x).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, 1, dim)
        return self.proj(out)


class LayerScaleBlock(nn.Module):
    def __init__(self, config: MaiTConfig, drop_path: float) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = MaskedSelfAttention(dim, config.num_heads, config.qkv_bias, config.talking_heads)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.gamma_1 = nn.Parameter(config.init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(config.init_values * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x), bias))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class LayerScaleBlockClassAttn(nn.Module):
    def __init__(self, config: MaiTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = ClassAttention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio_token_only))
        self.gamma_1 = nn.Parameter(config.init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(config.init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat((cls_token, x), dim=1)
        cls_token = cls_token + self.gamma_1 * self.attn(self.norm1(tokens))
        return cls_token + self.gamma_2 * self.mlp(self.norm2(cls_token))


class PatchEmbed(nn.Module):
    def __init__(self, config: MaiTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class MaiT(nn.Module):
    """Masked attention image Transformer.

    The locality bias is built once from the config and registered as ONE non-persistent buffer
    (``attn_bias``, [heads, N, N]); every masked block receives that same tensor in ``forward``, so no block
    holds a copy and the export sees a single constant. Being derived from the config, it is not saved in
    checkpoints: a checkpoint can never carry a mask that disagrees with its config.
    """

    attn_bias: torch.Tensor | None

    def __init__(self, config: MaiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches, dim))
        self.blocks = nn.ModuleList(LayerScaleBlock(config, config.drop_path_rate) for _ in range(config.depth))
        self.blocks_token_only = nn.ModuleList(
            LayerScaleBlockClassAttn(config) for _ in range(config.depth_token_only)
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.num_classes)

        bias = attention_bias(config)
        self.register_buffer("attn_bias", None if bias is None else torch.from_numpy(bias), persistent=False)
        self.masked_blocks = frozenset(config.mask.blocks(config.depth))
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for index, block in enumerate(self.blocks):
            x = block(x, self.attn_bias if index in self.masked_blocks else None)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        for block in self.blocks_token_only:
            cls_token = block(x, cls_token)
        return self.norm(torch.cat((cls_token, x), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])

    def unmasked(self) -> "MaiT":
        """The identical network (same weights) with every head global: the paper's CaiT baseline."""
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


def _paper(name: str, embed_dim: int, num_heads: int) -> MaiTConfig:
    # CaiT dimensions at 224 px, patch 16 (14x14 tokens), LayerScale init 1e-5, depth 24.
    return MaiTConfig(name=name, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=embed_dim,
                      depth=24, num_heads=num_heads, init_values=1e-5, preprocess=_IMAGENET)


VARIANTS: dict[str, MaiTConfig] = {
    "mait_xxs24_224": _paper("mait_xxs24_224", 192, 4),
    "mait_xs24_224": _paper("mait_xs24_224", 288, 6),
    "mait_s24_224": _paper("mait_s24_224", 384, 8),
    # Demo: 28x28 grey images, patch 4 -> 7x7 tokens; sized to train to >= 90% on Fashion-MNIST on 2 CPU cores.
    "mait_demo_28": MaiTConfig(
        name="mait_demo_28", img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=6,
        num_heads=4, mlp_ratio=3.0, mlp_ratio_token_only=3.0, init_values=0.1, drop_path_rate=0.05,
        preprocess=PreprocessConfig(input_size=28, channels=1, mean=(FASHION_MNIST_MEAN,),
                                    std=(FASHION_MNIST_STD,), interpolation="bilinear"),
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


__all__ = ["MaiT", "MaskConfig", "VARIANTS", "create_model", "variant_config"]

"""The building blocks of both MaiT backbones, with timm's parameter names so timm weights map 1:1.

Attention is written out (matmul, mask constant, softmax, matmul) rather than fused so that the exported graph
holds each mask as one visible constant before the softmax that every backend runs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mait_deploy.config import MaiTConfig


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


class LayerScale(nn.Module):
    """timm's LayerScale (parameter ``gamma``), used by the deit backbone when ``init_values`` is set."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention with an optional mask constant on the products before the softmax.

    ``additive``: Softmax(QK^T / sqrt(d) + B). ``multiplicative`` (Eq. 2): Softmax(QK^T * C) with C the binary
    mask times 1/sqrt(d), so the scale is folded into the one constant Mul. With talking heads (CaiT, additive
    only) the bias is added after the pre-softmax head projection ``proj_l`` so that a masked head's softmax
    still sees -1e4 outside its window.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, talking_heads: bool = False,
                 mask_mode: str = "additive") -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.mask_mode = mask_mode
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.talking_heads = talking_heads
        if talking_heads:
            self.proj_l = nn.Linear(num_heads, num_heads)
            self.proj_w = nn.Linear(num_heads, num_heads)

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The softmax weights [batch, heads, T, T] and the values [batch, heads, T, head_dim]."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if mask is not None and self.mask_mode == "multiplicative":
            return self.softmax_weights((q @ k.transpose(-2, -1)) * mask, multiplied=True), v
        return self.softmax_weights((q * self.scale) @ k.transpose(-2, -1), mask), v

    def softmax_weights(self, scores: torch.Tensor, mask: torch.Tensor | None = None,
                        multiplied: bool = False) -> torch.Tensor:
        """Scores [batch, heads, T, T] to the softmax weights. ``multiplied``: the scores are already multiplied by
        a multiplicative mask (and unscaled); otherwise talking heads mix the heads before the softmax and an
        additive ``mask`` is added; talking heads mix them after it either way. The one place of this arithmetic:
        the exported model and ExecuTorch's batched-matmul form (backends/executorch) share it."""
        if self.talking_heads and not multiplied:
            scores = self.proj_l(scores.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if mask is not None and not multiplied:
            scores = scores + mask
        weights = scores.softmax(dim=-1)
        if self.talking_heads:
            weights = self.proj_w(weights.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return weights

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        weights, v = self.attention_weights(x, mask)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


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
    """CaiT self-attention block (LayerScale as ``gamma_1``/``gamma_2``, as timm's cait.py names them)."""

    def __init__(self, config: MaiTConfig, drop_path: float) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = MaskedSelfAttention(dim, config.num_heads, config.qkv_bias, config.talking_heads,
                                        config.mask.mode)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.gamma_1 = nn.Parameter(config.init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(config.init_values * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x), mask))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class Block(nn.Module):
    """DeiT/ViT pre-norm block (timm's ``Block``: ``ls1``/``ls2`` LayerScale when ``init_values`` is set)."""

    def __init__(self, config: MaiTConfig, drop_path: float, dim: int | None = None,
                 num_heads: int | None = None) -> None:
        super().__init__()
        dim = dim or config.embed_dim  # a pyramid stage's own width and heads
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = MaskedSelfAttention(dim, num_heads or config.num_heads, config.qkv_bias,
                                        mask_mode=config.mask.mode)
        scale = config.init_values
        self.ls1 = LayerScale(dim, scale) if scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.ls2 = LayerScale(dim, scale) if scale else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), mask)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


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

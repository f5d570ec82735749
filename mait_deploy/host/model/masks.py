"""Locality masks as constants on the attention products (numpy; the model turns each into one buffer).

A masked head at query patch (r, c) keeps key patch (r', c') when |r - r'| <= rows // 2 and |c - c'| <= cols // 2
(the window on the 2-D patch grid). Class and distillation tokens are kept in every row and column.

Two modes, both a plain constant before the softmax (no new operator, any backend runs it):
- additive: 0 where kept, ``mask_value`` (-1e4, FP16-safe) elsewhere, added to the scaled products (hard mask);
- multiplicative (the paper's Eq. 2): the binary mask with the 1/sqrt(d) scale folded in, so a block computes
  Softmax((Q K^T) * C): a masked-out product becomes 0, not -inf, and its key keeps weight e^0/Z.
Every distinct set of masked heads is one pattern: one constant shared by all the blocks that use it. In a pyramid
each stage has its own token grid, so a pattern is a (stage grid, masked heads) pair: one constant per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mait_deploy.config import MaiTConfig


def _window_shape(window: int | tuple[int, int]) -> tuple[int, int]:
    rows, cols = (window, window) if isinstance(window, int) else window
    if rows < 1 or cols < 1 or rows % 2 == 0 or cols % 2 == 0:
        raise ValueError(f"window sides must be positive odd integers, got {window}")
    return rows, cols


def window_allowed(grid_size: int, window: int | tuple[int, int]) -> np.ndarray:
    """Boolean [N, N] matrix (N = grid_size**2, row-major patches): True where the key lies in the query's window."""
    if grid_size < 1:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    rows_w, cols_w = _window_shape(window)
    rows, cols = np.divmod(np.arange(grid_size * grid_size), grid_size)
    return (np.abs(rows[:, None] - rows[None, :]) <= rows_w // 2) & \
        (np.abs(cols[:, None] - cols[None, :]) <= cols_w // 2)


def random_allowed(grid_size: int, window: int | tuple[int, int], seed: int) -> np.ndarray:
    """The control pattern: every query keeps as many keys as its window holds, chosen at random (fixed seed)."""
    counts = window_allowed(grid_size, window).sum(axis=1)
    rng = np.random.default_rng(seed)
    n = grid_size * grid_size
    allowed = np.zeros((n, n), dtype=bool)
    for query, count in enumerate(counts):
        allowed[query, rng.choice(n, size=int(count), replace=False)] = True
    return allowed


def locality_bias(grid_size: int, window: int | tuple[int, int], mask_value: float) -> np.ndarray:
    """Float32 [N, N] additive bias: 0 inside the window, ``mask_value`` outside."""
    allowed = window_allowed(grid_size, window)
    return np.where(allowed, np.float32(0.0), np.float32(mask_value)).astype(np.float32)


def token_keep(config: MaiTConfig, pattern: str | None = None, stage: int = 0) -> np.ndarray:
    """Boolean [T, T] keep-matrix over a self-attention block's tokens (prefix tokens first, then patches), for
    the config's pattern or the one named (``window`` is what the locality score measures), on ``stage``'s grid."""
    mask = config.mask
    grid = config.stage_grid(stage)
    if (pattern or mask.pattern) == "random":
        patches = random_allowed(grid, mask.window_shape, mask.seed)
    else:
        patches = window_allowed(grid, mask.window_shape)
    prefix = config.num_prefix_tokens
    tokens = grid * grid + prefix
    keep = np.ones((tokens, tokens), dtype=bool)
    keep[prefix:, prefix:] = patches
    return keep


@dataclass(frozen=True)
class MaskPattern:
    """One distinct set of masked heads, the blocks that use it and the constant they share."""

    heads: tuple[int, ...]
    blocks: tuple[int, ...]
    stage: int  # the pyramid stage (its token grid); 0 for the monolithic backbones
    # float32: the additive bias [heads, T, T] or the scaled multiplicative mask [1, heads, T, T]. The ranks are
    # what keeps one shared constant through OpenVINO's converter: it fuses an additive-masked attention into
    # ScaledDotProductAttention, squeezing a 4-D mask once per block, and unsqueezes a 3-D Mul operand per block.
    constant: np.ndarray


def mask_patterns(config: MaiTConfig) -> list[MaskPattern]:
    """The config's distinct masking patterns, in order of first use (an unmasked model has none)."""
    by_pattern: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for block, (stage, heads) in enumerate(zip(config.block_stages(), config.layer_heads())):
        if heads:
            by_pattern.setdefault((stage, heads), []).append(block)
    patterns = []
    block_heads, block_dims = config.block_heads(), config.block_dims()
    for (stage, heads), blocks in by_pattern.items():
        keep = token_keep(config, stage=stage)
        num_heads = block_heads[blocks[0]]
        scale = np.float32((block_dims[blocks[0]] // num_heads) ** -0.5)
        if config.mask.mode == "multiplicative":
            constant = np.full((num_heads, *keep.shape), scale, dtype=np.float32)
            constant[list(heads)] = np.where(keep, scale, np.float32(0.0))
            constant = constant[None]
        else:
            constant = np.zeros((num_heads, *keep.shape), dtype=np.float32)
            constant[list(heads)] = np.where(keep, np.float32(0.0), np.float32(config.mask.mask_value))
        patterns.append(MaskPattern(heads=heads, blocks=tuple(blocks), stage=stage, constant=constant))
    return patterns


def attention_bias(config: MaiTConfig) -> np.ndarray | None:
    """The [heads, T, T] constant of a single-pattern config (None when nothing is masked)."""
    patterns = mask_patterns(config)
    if len(patterns) > 1:
        raise ValueError(f"the config has {len(patterns)} masking patterns; use mask_patterns()")
    return patterns[0].constant.reshape(patterns[0].constant.shape[-3:]) if patterns else None


def check_constants(found: list[tuple[str, np.ndarray, int]], config: MaiTConfig) -> list[str]:
    """Problems with the mask constants found in a converted graph (empty = fine).

    ``found`` holds (op, values, consumers) per constant that feeds a Softmax (any shape of the same size). There
    must be exactly one per pattern of the config, of the config's op (Add for additive, Mul for multiplicative),
    holding the pattern's values (to FP16 precision) and feeding as many blocks as use the pattern.
    """
    expected = mask_patterns(config)
    op = "Mul" if config.mask.mode == "multiplicative" else "Add"
    if len(found) != len(expected):
        return [f"expected {len(expected)} mask constant(s), one per masking pattern, found {len(found)}"]
    problems = []
    unmatched = list(found)
    for index, pattern in enumerate(expected):
        match = next((item for item in unmatched if item[0] == op and item[1].size == pattern.constant.size
                      and np.allclose(item[1].astype(np.float32).reshape(pattern.constant.shape), pattern.constant,
                                      rtol=1e-3, atol=1e-3)), None)
        if match is None:
            where = f"stage {pattern.stage}, " if config.backbone == "pyramid" else ""
            problems.append(f"no {op} constant holds masking pattern {index} ({where}heads {list(pattern.heads)})")
            continue
        unmatched.remove(match)
        if match[2] != len(pattern.blocks):
            problems.append(f"masking pattern {index} feeds {match[2]} attention {op}s, expected "
                            f"{len(pattern.blocks)} (blocks {list(pattern.blocks)})")
    return problems

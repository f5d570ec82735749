import numpy as np
import pytest

from mait_deploy.config import MaskConfig
from mait_deploy.errors import ConfigError
from mait_deploy.host.model.masks import attention_bias, locality_bias, window_allowed

torch = pytest.importorskip("torch")


def _allowed_set(grid, window, row, col):
    allowed = window_allowed(grid, window)[row * grid + col]
    return {divmod(int(i), grid) for i in np.flatnonzero(allowed)}


def test_window_geometry_corner_edge_centre():
    # 7x7 grid, 3x3 window: a corner sees 4 patches, an edge 6, the centre 9.
    assert _allowed_set(7, 3, 0, 0) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert _allowed_set(7, 3, 6, 6) == {(5, 5), (5, 6), (6, 5), (6, 6)}
    assert _allowed_set(7, 3, 0, 3) == {(r, c) for r in (0, 1) for c in (2, 3, 4)}
    assert _allowed_set(7, 3, 3, 3) == {(r, c) for r in (2, 3, 4) for c in (2, 3, 4)}
    # 5x5 window on the centre of a 7x7 grid: 25 patches; window 1 is the patch itself.
    assert len(_allowed_set(7, 5, 3, 3)) == 25
    assert _allowed_set(7, 1, 2, 5) == {(2, 5)}
    # Symmetric, and every query sees itself.
    allowed = window_allowed(7, 3)
    assert (allowed == allowed.T).all() and allowed.diagonal().all()


def test_even_or_nonpositive_window_rejected():
    for window in (0, 2, 4, -1):
        with pytest.raises(ConfigError):
            MaskConfig(window=window)


def test_bias_is_finite_and_fp16_safe():
    bias = locality_bias(7, 3, -1e4)
    assert np.isfinite(bias).all()
    assert set(np.unique(bias)) == {0.0, -1e4}
    as_fp16 = bias.astype(np.float16)
    assert np.isfinite(as_fp16).all()
    assert float(as_fp16.min()) == -1e4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_softmax_gives_exactly_zero_weight_to_masked_keys(dtype):
    bias = torch.from_numpy(locality_bias(7, 3, -1e4)).to(dtype)
    scores = (torch.randn(49, 49) * 8).to(dtype)
    weights = (scores + bias).softmax(-1)
    assert weights.dtype == dtype
    outside = bias != 0
    assert torch.isfinite(weights).all()
    assert (weights[outside] == 0).all()
    assert torch.allclose(weights.float().sum(-1), torch.ones(49), atol=1e-3)


@pytest.mark.parametrize("value", [float("-inf"), float("nan"), -1e5, 0.0, 5.0])
def test_unsafe_mask_values_rejected(value):
    with pytest.raises(ConfigError):
        MaskConfig(mask_value=value)


def test_attention_bias_marks_only_the_masked_heads(tiny_config):
    bias = attention_bias(tiny_config)
    assert bias.shape == (4, 16, 16)
    assert (bias[0] == locality_bias(4, 3, -1e4)).all() and (bias[1] == bias[0]).all()
    assert (bias[2:] == 0).all()
    custom = tiny_config.replace(mask=MaskConfig(masked_heads=(3,)))
    assert (attention_bias(custom)[3] != 0).any() and (attention_bias(custom)[:3] == 0).all()
    assert attention_bias(tiny_config.unmasked()) is None


def test_out_of_range_heads_or_blocks_rejected(tiny_config):
    with pytest.raises(ConfigError):
        tiny_config.replace(mask=MaskConfig(masked_heads=(4,)))
    with pytest.raises(ConfigError):
        tiny_config.replace(mask=MaskConfig(masked_blocks=(2,)))

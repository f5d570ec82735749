"""The paper's MaiT: deit backbone, multiplicative masks (Eq. 2), schedules, rectangular and random patterns, ALS."""

import numpy as np
import pytest

from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.errors import ConfigError, UnsupportedOption
from mait_deploy.host.model.masks import check_constants, mask_patterns, token_keep, window_allowed

torch = pytest.importorskip("torch")
from mait_deploy.host.model.locality import SuggestRule, attention_locality, uniform_baseline
from mait_deploy.host.model.mait import PAPER_FIGURES, MaiT, variant_config


def deit_config(**mask: object) -> MaiTConfig:
    return MaiTConfig(name="tiny_deit", backbone="deit", img_size=16, patch_size=4, in_chans=1, num_classes=5,
                      embed_dim=32, depth=3, num_heads=4, init_values=None, mask=MaskConfig(**mask),
                      preprocess=PreprocessConfig(input_size=16, channels=1, mean=(0.5,), std=(0.25,)))


def test_schedule_presets_expand_per_block():
    assert MaskConfig(schedule="uniform:2").layer_heads(3, 4) == ((0, 1),) * 3
    assert MaskConfig(schedule="mixed").layer_heads(24, 3) == ((0, 1, 2),) * 8 + ((0,),) * 8 + ((),) * 8
    assert MaskConfig(schedule="none").layer_heads(2, 4) == ((), ())
    assert MaskConfig(schedule=[[1, 0], [], [3]]).layer_heads(3, 4) == ((0, 1), (), (3,))
    # The legacy fields still mean what they meant: the first half of the heads in every block.
    assert MaskConfig().layer_heads(2, 4) == ((0, 1), (0, 1))
    assert MaskConfig(enabled=False, schedule="uniform:1").layer_heads(2, 4) == ((), ())


@pytest.mark.parametrize("bad", [
    dict(schedule="uniform:x"), dict(schedule="every"), dict(schedule=5), dict(schedule=[[0], "a"]),
    dict(schedule="mixed", masked_heads=(0,)), dict(mode="hard"), dict(pattern="checker"), dict(window=(3, 4)),
    dict(window=(3, 3, 3)), dict(seed=-1),
])
def test_bad_mask_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        MaskConfig(**bad)


@pytest.mark.parametrize("bad", [
    dict(schedule="uniform:5"), dict(schedule=[[0], [1]]), dict(schedule=[[0], [4], []]),
])
def test_schedules_that_do_not_fit_the_model_are_config_errors(bad):
    with pytest.raises(ConfigError):
        deit_config(**bad)


def test_backbone_options_that_contradict_are_errors():
    with pytest.raises(ConfigError, match="class-attention"):
        deit_config().replace(depth_token_only=2)
    with pytest.raises(ConfigError, match="distillation"):
        MaiTConfig(distilled=True)
    with pytest.raises(ConfigError, match="talking heads"):
        MaiTConfig(talking_heads=True, mask=MaskConfig(mode="multiplicative"))
    with pytest.raises(ConfigError, match="backbone"):
        MaiTConfig(backbone="swin")


def test_config_round_trips_and_old_configs_keep_their_meaning():
    config = deit_config(mode="multiplicative", schedule=[[0, 1], [0], []], window=(3, 5), pattern="random", seed=7)
    assert MaiTConfig.from_dict(config.to_dict()) == config
    # A first-release config (no backbone, no mode) is the CaiT model with additive masks.
    old = {"name": "old", "img_size": 28, "patch_size": 4, "in_chans": 1, "num_classes": 10, "embed_dim": 64,
           "depth": 2, "num_heads": 4, "depth_token_only": 2, "init_values": 0.1,
           "mask": {"window": 3, "masked_heads": None, "masked_blocks": None, "mask_value": -1e4, "enabled": True},
           "preprocess": {"input_size": 28, "channels": 1, "mean": [0.5], "std": [0.5]}}
    restored = MaiTConfig.from_dict(old)
    assert restored.backbone == "cait" and restored.mask.mode == "additive" and restored.depth_token_only == 2


def test_rectangular_window_keeps_rows_and_cols_separately():
    allowed = window_allowed(7, (3, 5))
    query = 3 * 7 + 3  # centre
    rows, cols = np.divmod(np.flatnonzero(allowed[query]), 7)
    assert set(rows) == {2, 3, 4} and set(cols) == {1, 2, 3, 4, 5}
    assert allowed.sum(1).max() == 15


def test_multiplicative_constant_is_the_scaled_binary_mask_and_prefix_tokens_are_global():
    config = deit_config(mode="multiplicative", schedule="uniform:1")
    (pattern,) = mask_patterns(config)
    scale = np.float32(8 ** -0.5)
    keep = token_keep(config)
    assert keep[0].all() and keep[:, 0].all()  # the class token sees and is seen by everything
    assert pattern.constant.shape == (1, 4, 17, 17)  # multiplicative: 4-D (masks.py says why)
    assert np.array_equal(pattern.constant[0, 0], np.where(keep, scale, 0).astype(np.float32))
    assert (pattern.constant[0, 1:] == scale).all()
    assert set(np.unique(pattern.constant)) == {0.0, scale}  # FP16-safe: 0 and 1/sqrt(d)


def test_random_pattern_has_the_window_density_but_other_positions():
    window = deit_config(schedule="uniform:1")
    random = deit_config(schedule="uniform:1", pattern="random", seed=3)
    assert np.array_equal(token_keep(window).sum(1), token_keep(random).sum(1))
    assert not np.array_equal(token_keep(window), token_keep(random))
    assert np.array_equal(token_keep(random), token_keep(deit_config(schedule="uniform:1", pattern="random", seed=3)))


def test_one_buffer_per_distinct_pattern_each_shared_by_its_blocks():
    model = MaiT(deit_config(mode="multiplicative", schedule=[[0, 1, 2, 3], [0], [0, 1, 2, 3]]))
    assert model.mask_names == ["attn_mask_0", "attn_mask_1"]
    assert model.block_mask(0) is model.block_mask(2) is model.attn_mask_0
    assert model.block_mask(1) is model.attn_mask_1
    assert MaiT(deit_config(schedule="none")).mask_names == []


def test_multiplicative_mask_is_eq2_in_torch():
    """A masked head computes Softmax((M * QK^T) / sqrt(d)): out-of-window products become 0, not -inf."""
    torch.manual_seed(0)
    model = MaiT(deit_config(mode="multiplicative", schedule="uniform:1")).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, model.config.num_tokens, 32)
    weights, _ = attn.attention_weights(x, model.block_mask(0))
    q, k, _ = attn.qkv(x).reshape(2, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)
    products = q @ k.transpose(-2, -1)
    keep = torch.from_numpy(token_keep(model.config))
    expected_masked = ((products[:, 0] * keep) / 8 ** 0.5).softmax(-1)
    expected_global = (products[:, 1:] / 8 ** 0.5).softmax(-1)
    assert torch.allclose(weights[:, 0], expected_masked, atol=1e-6)
    assert torch.allclose(weights[:, 1:], expected_global, atol=1e-6)
    assert (weights[:, 0][:, ~keep] > 0).all()  # bypassable: masked-out keys keep weight e^0/Z


def test_distilled_deit_averages_both_heads():
    torch.manual_seed(0)
    model = MaiT(deit_config().replace(distilled=True)).eval()
    x = torch.randn(2, 1, 16, 16)
    features = model.forward_features(x)
    assert torch.allclose(model(x), (model.head(features[:, 0]) + model.head_dist(features[:, 1])) / 2)
    assert model.pos_embed.shape[1] == 16 + 2


def test_paper_variants_count_within_5_percent_of_the_paper():
    from mait_deploy.host.model.stats import model_stats

    for name, figures in PAPER_FIGURES.items():
        config = variant_config(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in MaiT(config).parameters())
        assert abs(params / (figures["params_m"] * 1e6) - 1) < 0.05, name
    stats = model_stats(variant_config("mait_xt_patch16_224"))
    assert abs(stats.gmacs / PAPER_FIGURES["mait_xt_patch16_224"]["gmacs"] - 1) < 0.05
    assert stats.mask_patterns == 2 and stats.masked_heads_per_block == (3,) * 8 + (1,) * 8 + (0,) * 8


def test_als_is_one_for_an_additive_masked_head_and_uniform_share_for_a_uniform_head():
    torch.manual_seed(0)
    model = MaiT(deit_config(mode="additive", schedule="uniform:1")).eval()
    # Head 1 of block 0 attends uniformly: zero query weights make every product 0.
    with torch.no_grad():
        model.blocks[0].attn.qkv.weight[32 + 8:32 + 16].zero_()  # keys of head 1
        model.blocks[0].attn.qkv.bias[32 + 8:32 + 16].zero_()
    images = torch.randn(6, 1, 16, 16).numpy()
    scores = attention_locality(model, images, batch=4)
    assert scores.shape == (3, 4)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-6)
    assert scores[0, 1] == pytest.approx(uniform_baseline(model.config), abs=1e-6)
    grid_share = window_allowed(4, 3).sum(1).mean()
    assert uniform_baseline(model.config) == pytest.approx((grid_share + 1) / 17)


def test_suggest_rule_follows_section_4_2():
    scores = np.array([[0.9, 0.2], [0.5, 0.1], [0.1, 0.1]])
    assert SuggestRule(0.75, 0.35).schedule(scores) == [[0, 1], [0], []]
    with pytest.raises(UnsupportedOption):
        SuggestRule(0.2, 0.5)


def test_check_constants_catches_a_missing_pattern_or_a_wrong_block_count():
    config = deit_config(mode="multiplicative", schedule=[[0, 1, 2, 3], [0], [0, 1, 2, 3]])
    patterns = mask_patterns(config)
    found = [("Mul", p.constant, len(p.blocks)) for p in patterns]
    assert check_constants(found, config) == []
    assert "expected 2" in check_constants(found[:1], config)[0]
    assert "feeds 1" in check_constants([found[0][:2] + (1,), found[1]], config)[0]
    assert "no Mul" in check_constants([("Add", p.constant, len(p.blocks)) for p in patterns], config)[0]

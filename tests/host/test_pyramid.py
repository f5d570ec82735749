"""The hierarchical MaiT (pyramid backbone): stages at decreasing token resolution, one mask constant per
(stage grid, masked heads), exported, compiled, gated and verified like the monolithic family."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mait_deploy.config import MaiTConfig, MaskConfig
from mait_deploy.errors import ConfigError
from mait_deploy.host.model.mait import MaiT, create_model, variant_config
from mait_deploy.host.model.masks import mask_patterns, window_allowed
from tests.small_models import small_pyramid_config


def test_mixed_schedule_masks_the_high_resolution_stages_one_constant_per_grid():
    config = small_pyramid_config("p", depth=6, stage_depths=(2, 2, 2), stage_dims=(16, 32, 64),
                                  stage_heads=(2, 4, 4), embed_dim=16, patch_size=1, mask=MaskConfig(mode="multiplicative",
                                                                                        schedule="mixed"))
    assert config.block_grids() == (28, 28, 14, 14, 7, 7)
    assert config.layer_heads() == ((0, 1), (0, 1), (0,), (0,), (), ())
    patterns = mask_patterns(config)
    assert [(p.stage, p.heads, p.blocks) for p in patterns] == [(0, (0, 1), (0, 1)), (1, (0,), (2, 3))]
    assert [p.constant.shape for p in patterns] == [(1, 2, 784, 784), (1, 4, 196, 196)]
    # Multiplicative: the masked head keeps its 3x3 window, scaled by its stage's 1/sqrt(head_dim) (32/4 = 8).
    stage1 = patterns[1].constant[0]
    assert np.array_equal(stage1[0] != 0, window_allowed(14, 3))
    assert np.allclose(stage1[1], 8 ** -0.5) and np.allclose(stage1[0][stage1[0] != 0], 8 ** -0.5)
    model = MaiT(config).eval()
    assert model.mask_names == ["attn_mask_0", "attn_mask_1"]
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_explicit_schedule_is_checked_against_each_stage_and_configs_round_trip():
    with pytest.raises(ConfigError, match="block 2 out of range for its 2 heads"):
        small_pyramid_config("p", stage_heads=(4, 2), stage_dims=(32, 64), num_heads=4,
                             mask=MaskConfig(schedule=[[0], [0], [3], []]))
    with pytest.raises(ConfigError, match="depth 5 must be the sum"):
        small_pyramid_config("p", depth=5)
    with pytest.raises(ConfigError, match="cannot be halved"):
        small_pyramid_config("p", patch_size=4, depth=6, stage_depths=(2, 2, 2), stage_dims=(32, 32, 32),
                             stage_heads=(2, 2, 2))
    with pytest.raises(ConfigError, match="belong to the pyramid backbone"):
        variant_config("mait_deit_28", stage_depths=(2, 2))
    config = small_pyramid_config("p", mask=MaskConfig(mode="additive", schedule=[[0, 1], [0], [0], []]))
    assert MaiTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("name", ["mait_pyramid_t_224", "mait_pyramid_s_224"])
def test_registered_pyramids_are_the_size_of_deit_t_and_swin_t(name):
    from mait_deploy.host.model.stats import model_stats
    stats = model_stats(create_model(name))
    # DeiT-T: 5.7 M params, 1.3 GMACs; Swin-T: 28.3 M, 4.5 GMACs (timm). Within 25 %.
    params, gmacs = {"mait_pyramid_t_224": (5.7e6, 1.3), "mait_pyramid_s_224": (28.3e6, 4.5)}[name]
    assert abs(stats.params / params - 1) < 0.25 and abs(stats.gmacs / gmacs - 1) < 0.25, stats
    assert stats.mask_patterns == 2

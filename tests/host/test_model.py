import numpy as np
import pytest

from mait_deploy.config import MaiTConfig, MaskConfig
from mait_deploy.errors import ConfigError
from mait_deploy.host.model.masks import window_allowed

torch = pytest.importorskip("torch")
from mait_deploy.host.model.layers import MaskedSelfAttention
from mait_deploy.host.model.mait import (
    VARIANTS,
    MaiT,
    create_model,
    variant_config,
)


def _head_outputs(attn, x, bias):
    """Per-head attention outputs [tokens, heads, head_dim] with the output projection set to identity."""
    with torch.no_grad():
        attn.proj.weight.copy_(torch.eye(attn.proj.in_features))
        attn.proj.bias.zero_()
        out = attn(x, bias)
    return out[0].reshape(x.shape[1], attn.num_heads, -1)


@pytest.mark.parametrize("talking_heads", [False])
def test_masked_head_is_local_and_global_head_is_not(tiny_config, talking_heads):
    torch.manual_seed(0)
    model = MaiT(tiny_config.replace(talking_heads=talking_heads)).eval()
    attn = model.blocks[0].attn
    grid = tiny_config.grid_size
    x = torch.randn(1, tiny_config.num_patches, tiny_config.embed_dim)
    query = 0  # corner patch (0, 0)
    far = grid * grid - 1  # patch (3, 3): outside a 3x3 window around (0, 0)
    assert not window_allowed(grid, 3)[query, far]
    before = _head_outputs(attn, x, model.attn_masks[0])
    x2 = x.clone()
    x2[0, far] += 5.0
    after = _head_outputs(attn, x2, model.attn_masks[0])
    masked, global_ = tiny_config.mask.heads(4), [h for h in range(4) if h not in tiny_config.mask.heads(4)]
    for head in masked:
        assert torch.equal(before[query, head], after[query, head]), "masked head saw a patch outside its window"
    for head in global_:
        assert not torch.allclose(before[query, head], after[query, head]), "global head ignored a patch"
    # And a patch inside the window does reach the masked head.
    near = 1
    x3 = x.clone()
    x3[0, near] += 5.0
    inside = _head_outputs(attn, x3, model.attn_masks[0])
    assert not torch.allclose(before[query, masked[0]], inside[query, masked[0]])


def test_bias_is_one_shared_buffer(tiny_config):
    model = MaiT(tiny_config)
    buffers = dict(model.named_buffers())
    assert list(buffers) == ["attn_mask_0"]
    # Not in the state dict: it is derived from the config, so a checkpoint cannot carry a stale mask.
    assert "attn_mask_0" not in model.state_dict()
    seen = []
    for block in model.blocks:
        block.attn.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    model(torch.zeros(2, 1, 16, 16))
    assert len(seen) == tiny_config.depth
    assert all(b is model.attn_masks[0] for b in seen)


def test_masked_blocks_option(tiny_config):
    model = MaiT(tiny_config.replace(mask=MaskConfig(masked_blocks=(1,))))
    seen = []
    for block in model.blocks:
        block.attn.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    model(torch.zeros(1, 1, 16, 16))
    assert seen[0] is None and seen[1] is model.attn_masks[0]


def test_unmasked_twin_shares_weights_and_differs_only_by_masks(tiny_config):
    torch.manual_seed(0)
    model = MaiT(tiny_config).eval()
    twin = model.unmasked().eval()
    assert twin.attn_masks == [] and not twin.config.mask.enabled
    x = torch.randn(3, 1, 16, 16)
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.allclose(model(x), twin(x))
    # With no masked heads at all, the two networks are the same function.
    none_masked = MaiT(tiny_config.replace(mask=MaskConfig(masked_heads=()))).eval()
    none_masked.load_state_dict(model.state_dict())
    assert torch.allclose(none_masked(x), twin(x), atol=1e-6)


def test_talking_heads_bias_added_after_proj_l(tiny_config):
    torch.manual_seed(0)
    attn = MaskedSelfAttention(32, 4, qkv_bias=True, talking_heads=True)
    bias = torch.from_numpy(np.where(window_allowed(4, 3), 0, -1e4).astype(np.float32)).expand(4, 16, 16)
    captured = {}
    original = torch.Tensor.softmax

    def spy(self, dim):
        captured["scores"] = self.detach().clone()
        return original(self, dim)

    torch.Tensor.softmax = spy
    try:
        attn(torch.randn(1, 16, 32), bias)
    finally:
        torch.Tensor.softmax = original
    # If the bias had gone in before proj_l, head mixing would have smeared -1e4 across heads and scaled it.
    outside = ~torch.from_numpy(window_allowed(4, 3))
    assert (captured["scores"][0][:, outside] < -9e3).all()
    assert (captured["scores"][0][:, ~outside].abs() < 100).all()


def test_forward_shapes_and_fp16_no_nan(tiny_config):
    model = MaiT(tiny_config).eval()
    x = torch.randn(4, 1, 16, 16)
    assert model(x).shape == (4, 5)
    half = MaiT(tiny_config).eval().half()
    out = half(x.half())
    assert torch.isfinite(out).all()


def test_variants_registered_with_paper_dimensions():
    assert {"mait_xxs24_224", "mait_xs24_224", "mait_s24_224", "mait_demo_28"} <= set(VARIANTS)
    xxs = VARIANTS["mait_xxs24_224"]
    assert (xxs.embed_dim, xxs.depth, xxs.num_heads, xxs.img_size, xxs.patch_size) == (192, 24, 4, 224, 16)
    assert (VARIANTS["mait_xs24_224"].embed_dim, VARIANTS["mait_xs24_224"].num_heads) == (288, 6)
    assert (VARIANTS["mait_s24_224"].embed_dim, VARIANTS["mait_s24_224"].num_heads) == (384, 8)
    demo = VARIANTS["mait_demo_28"]
    assert (demo.img_size, demo.in_chans, demo.grid_size) == (28, 1, 7)


def test_unknown_variant_and_bad_config():
    with pytest.raises(ConfigError, match="unknown variant"):
        create_model("mait_huge_999")
    with pytest.raises(ConfigError):
        MaiTConfig(img_size=30, patch_size=4)
    with pytest.raises(ConfigError):
        MaiTConfig(embed_dim=100, num_heads=3)
    with pytest.raises(ConfigError, match="unknown keys"):
        MaiTConfig.from_dict({"embed_dimm": 3})


def test_counted_stats_match_cait_xxs24():
    from mait_deploy.host.model.stats import model_stats

    stats = model_stats(variant_config("mait_xxs24_224"))
    # CaiT-XXS24 (224): 12.0 M params, 2.5 GMACs in the CaiT paper.
    assert 11.9e6 < stats.params < 12.0e6
    assert 2.4 < stats.gmacs < 2.6

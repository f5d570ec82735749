import json
import os
import pickle

import pytest

from mait_deploy.errors import CheckpointError, ConfigError

torch = pytest.importorskip("torch")
from mait_deploy.host.model.checkpoint import (
    cait_config_from_state_dict,
    import_timm_cait,
    load_checkpoint,
    save_checkpoint,
)
from mait_deploy.host.model.mait import MaiT


@pytest.fixture
def saved(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = MaiT(tiny_config).eval()
    return model, save_checkpoint(model, tmp_path / "ckpt")


def test_round_trip(saved):
    model, folder = saved
    loaded = load_checkpoint(folder)
    assert loaded.config == model.config
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(load_checkpoint(folder / "model.safetensors")(x), model(x))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_missing_and_empty(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(tmp_path / "empty")


def test_empty_truncated_and_random_safetensors(saved, tmp_path):
    _, folder = saved
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(folder)
    weights.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(folder)
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(folder)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['MAIT_PWNED']}",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch, tiny_config):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("MAIT_PWNED", str(marker))
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": _RunsCode()}, handle)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path, config=tiny_config)
    assert not marker.exists(), "the pickle's code ran"


def test_pt_state_dict_loads_with_config(tmp_path, saved, tiny_config):
    model, _ = saved
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    loaded = load_checkpoint(path, config=tiny_config)
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(path)


def test_config_weights_mismatch_names_the_key(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["model"]["embed_dim"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatch .*patch_embed|cls_token"):
        load_checkpoint(folder)


def test_bad_config_json(saved):
    _, folder = saved
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({"model": {"name": "x", "bogus": 1}}))
    with pytest.raises(CheckpointError, match="unknown keys"):
        load_checkpoint(folder)


def _timm_cait_state_dict(dim=32, depth=2, heads=4, patch=4, grid=4, chans=3, classes=7):
    """A state dict laid out exactly as timm's cait.py names and shapes it (timm is not a dependency)."""
    sd = {
        "cls_token": torch.randn(1, 1, dim), "pos_embed": torch.randn(1, grid * grid, dim),
        "patch_embed.proj.weight": torch.randn(dim, chans, patch, patch), "patch_embed.proj.bias": torch.randn(dim),
        "norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim),
        "head.weight": torch.randn(classes, dim), "head.bias": torch.zeros(classes),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "gamma_1": torch.full((dim,), 1e-5), p + "gamma_2": torch.full((dim,), 1e-5),
            p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
            p + "attn.qkv.weight": torch.randn(3 * dim, dim), p + "attn.qkv.bias": torch.zeros(3 * dim),
            p + "attn.proj.weight": torch.randn(dim, dim), p + "attn.proj.bias": torch.zeros(dim),
            p + "attn.proj_l.weight": torch.randn(heads, heads), p + "attn.proj_l.bias": torch.zeros(heads),
            p + "attn.proj_w.weight": torch.randn(heads, heads), p + "attn.proj_w.bias": torch.zeros(heads),
            p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
            p + "mlp.fc1.weight": torch.randn(4 * dim, dim), p + "mlp.fc1.bias": torch.zeros(4 * dim),
            p + "mlp.fc2.weight": torch.randn(dim, 4 * dim), p + "mlp.fc2.bias": torch.zeros(dim),
        })
    for i in range(2):
        p = f"blocks_token_only.{i}."
        sd.update({
            p + "gamma_1": torch.full((dim,), 1e-5), p + "gamma_2": torch.full((dim,), 1e-5),
            p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
            p + "attn.q.weight": torch.randn(dim, dim), p + "attn.q.bias": torch.zeros(dim),
            p + "attn.k.weight": torch.randn(dim, dim), p + "attn.k.bias": torch.zeros(dim),
            p + "attn.v.weight": torch.randn(dim, dim), p + "attn.v.bias": torch.zeros(dim),
            p + "attn.proj.weight": torch.randn(dim, dim), p + "attn.proj.bias": torch.zeros(dim),
            p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
            p + "mlp.fc1.weight": torch.randn(4 * dim, dim), p + "mlp.fc1.bias": torch.zeros(4 * dim),
            p + "mlp.fc2.weight": torch.randn(dim, 4 * dim), p + "mlp.fc2.bias": torch.zeros(dim),
        })
    return sd


def test_timm_cait_import_maps_every_key(tmp_path):
    torch.manual_seed(0)
    sd = _timm_cait_state_dict()
    config = cait_config_from_state_dict(sd)
    assert (config.embed_dim, config.depth, config.num_heads, config.img_size, config.talking_heads) == (32, 2, 4, 16, True)
    model = import_timm_cait({"model": {"module." + k: v for k, v in sd.items()}})
    for key, value in sd.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.attn_masks and model.config.mask.enabled
    path = tmp_path / "cait.pth"
    torch.save(sd, path)
    assert torch.equal(import_timm_cait(path).head.weight, sd["head.weight"])


def test_timm_state_dict_of_wrong_size_is_named():
    sd = _timm_cait_state_dict()
    with pytest.raises(CheckpointError, match="shape mismatch"):
        import_timm_cait(sd, variant="mait_xxs24_224")
    with pytest.raises(ConfigError, match="unknown variant"):
        import_timm_cait(sd, variant="cait_nope")
    del sd["head.weight"]
    with pytest.raises(CheckpointError, match="not a timm CaiT"):
        import_timm_cait(sd)

"""timm DeiT/ViT weights into the deit backbone: parity against timm's own VisionTransformer (masks off), then the
mask schedule on top.

timm needs a torchvision that imports; PyPI's torchvision is a CUDA build that does not import beside the CPU
torch 2.13.0 wheel, so timm runs in its own venv (torch 2.14.1 + torchvision 0.29.1, ~5.5 GB, ~1.5 min from the
local wheel cache) or in the Python named by MAIT_TIMM_PYTHON. The reference outputs come from
tests/fixtures/timm_reference.py run there; the comparison runs here, without timm.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mait_deploy.config import MaskConfig
from mait_deploy.errors import CheckpointError
from mait_deploy.host.model.mait import MaiT, variant_config
from mait_deploy.host.model.timm_import import import_timm_deit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _timm_python(venv: Path) -> str:
    configured = os.environ.get("MAIT_TIMM_PYTHON")
    if configured:
        return configured
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    cpu_torch = ["torch==2.14.1", "torchvision==0.29.1", "--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    for args in (cpu_torch, ["--no-deps", "timm==1.0.31"], ["pyyaml", "numpy"]):
        result = subprocess.run(pip + args, capture_output=True, text=True, timeout=1800)
        if result.returncode:
            pytest.skip(f"cannot install timm's venv ({' '.join(args)}): {result.stderr.strip().splitlines()[-1:]}")
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    out = tmp_path_factory.mktemp("timm-ref")
    venv = tmp_path_factory.mktemp("timm") / "venv"
    try:
        subprocess.run([_timm_python(venv), str(FIXTURES / "timm_reference.py"), str(out)], check=True,
                       timeout=900)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 5.5 GB: not kept among pytest's last three temp folders
    loaded = {}
    for path in out.glob("*.npz"):
        with np.load(path) as data:
            loaded[path.stem] = {
                "state": {k.removeprefix("state/"): torch.from_numpy(data[k]) for k in data if k.startswith("state/")},
                "input": torch.from_numpy(data["input"]), "output": data["output"],
            }
    return loaded


@pytest.mark.slow
@pytest.mark.big_download
@pytest.mark.parametrize("name", ["deit_tiny", "deit_tiny_distilled", "deit_tiny_layerscale"])
def test_deit_backbone_matches_timm_with_masks_off(references, name):
    ref = references[name]
    model = import_timm_deit(ref["state"])
    assert model.config.backbone == "deit" and model.config.num_heads == 3 and model.mask_names == []
    assert model.config.distilled == (name == "deit_tiny_distilled")
    with torch.no_grad():
        ours = model(ref["input"]).numpy()
    assert np.abs(ours - ref["output"]).max() < 1e-5
    # The same weights with the paper's masks: same parameters, a different function (random weights keep the
    # difference small, but far above the parity error).
    masked = import_timm_deit(ref["state"], mask=MaskConfig(mode="multiplicative", schedule="mixed"))
    assert masked.mask_names == ["attn_mask_0", "attn_mask_1"]
    with torch.no_grad():
        assert np.abs(masked(ref["input"]).numpy() - ref["output"]).max() > 2e-5


@pytest.mark.slow
@pytest.mark.big_download
def test_vit_with_positions_outside_the_class_token_is_refused(references):
    with pytest.raises(CheckpointError, match="square grid"):
        import_timm_deit(references["deit3_small"]["state"])


def test_import_infers_the_architecture_and_fits_a_variant():
    config = variant_config("mait_t_patch16_224").replace(depth=2)
    state = MaiT(config).state_dict()
    model = import_timm_deit(state)
    assert (model.config.embed_dim, model.config.depth, model.config.num_heads) == (192, 2, 3)
    assert model.config.preprocess.crop_pct == 0.875 and model.mask_names == []
    with pytest.raises(CheckpointError, match="does not match"):
        import_timm_deit(state, variant="mait_t_patch16_224")  # 24 blocks expected, 2 given
    with pytest.raises(CheckpointError, match="register tokens"):
        import_timm_deit({**state, "reg_token": torch.zeros(1, 4, 192)})
    with pytest.raises(CheckpointError, match="missing"):
        import_timm_deit({"head.weight": torch.zeros(2, 2)})


def test_the_mask_transform_picks_the_architecture_and_refuses_the_rest():
    from mait_deploy.host.model.timm_import import import_timm

    deit_state = MaiT(variant_config("mait_t_patch16_224").replace(depth=3, mask=MaskConfig(enabled=False))).state_dict()
    deit = import_timm(deit_state)
    assert deit.config.backbone == "deit" and deit.config.mask.mode == "multiplicative"
    assert deit.config.layer_heads() == ((0, 1, 2), (0,), ())  # the paper's mixed schedule over 3 blocks
    assert all(torch.equal(deit.state_dict()[key], value) for key, value in deit_state.items())  # weights kept
    cait_state = MaiT(variant_config("mait_xxs24_224").replace(depth=2, talking_heads=True)).state_dict()
    cait = import_timm(cait_state, mask=MaskConfig(mode="additive", schedule="uniform:1"))
    assert cait.config.backbone == "cait" and cait.config.layer_heads() == ((0,), (0,))
    with pytest.raises(CheckpointError, match="Swin"):
        import_timm({"layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(169, 3)})
    with pytest.raises(CheckpointError, match="convolutional network"):
        import_timm({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)})
    with pytest.raises(CheckpointError, match="supports"):
        import_timm({"foo": torch.zeros(1)})

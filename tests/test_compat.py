"""Checkpoints and bundles written by the first release keep loading and computing the same thing."""

from pathlib import Path

import numpy as np
import pytest

from mait_deploy.device.bundle import load_bundle, verify_bundle

OLD = Path(__file__).resolve().parent / "fixtures" / "release_0_1"


def test_old_bundle_loads_runs_and_verifies():
    pytest.importorskip("onnxruntime")
    report = verify_bundle(OLD / "bundle_ort_fp32")
    assert report.passed and report.max_abs_diff < 1e-4
    with load_bundle(OLD / "bundle_ort_fp32") as runner:
        assert runner.run(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)


def test_old_checkpoint_is_the_cait_additive_model_and_computes_the_same_logits():
    torch = pytest.importorskip("torch")
    from mait_deploy.host.model.checkpoint import load_checkpoint

    model = load_checkpoint(OLD / "checkpoint")
    config = model.config
    assert (config.backbone, config.mask.mode, config.depth_token_only) == ("cait", "additive", 2)
    assert config.layer_heads() == ((0,), (0,))
    x = torch.linspace(-2, 2, 2 * 28 * 28).reshape(2, 1, 28, 28)
    with torch.no_grad():
        logits = model(x).numpy()
    assert np.abs(logits - np.load(OLD / "checkpoint" / "reference_logits.npy")).max() < 1e-5


def test_old_onnx_metadata_gives_the_same_config():
    pytest.importorskip("onnx")
    from mait_deploy.host.compile.source import source_from_onnx

    source = source_from_onnx(OLD / "bundle_ort_fp32" / "model.onnx")
    assert source.config.name == "tiny_v1" and source.config.backbone == "cait"

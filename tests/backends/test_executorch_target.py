"""ExecuTorch target: the export shaped for XNNPACK computes what the model computes (every backbone), the shipped
model's .pte is delegated whole and matches, INT8 passes its gate, and the one-line errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch.runtime")

from mait_deploy.backends.executorch.target import _decompositions, edge_model
from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.errors import MissingDependency, UnsupportedOption
from mait_deploy.host import catalog
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.model.checkpoint import load_checkpoint
from mait_deploy.host.model.mait import MaiT
from mait_deploy.host.model.zoo import resolve_checkpoint
from mait_deploy.mask_config import MaskConfig
from tests.small_models import small_config, small_pyramid_config

SHAPED_CONFIGS = {
    "deit": lambda: small_config("s-deit", backbone="deit", depth_token_only=0, init_values=None),
    "deit distilled, multiplicative masks": lambda: small_config(
        "s-dist", backbone="deit", depth_token_only=0, init_values=None, distilled=True,
        mask=MaskConfig(mode="multiplicative")),
    "cait with talking heads": lambda: small_config("s-cait", talking_heads=True),
    "pyramid": lambda: small_pyramid_config("s-pyr"),
}


@pytest.mark.parametrize("name, batch", [("deit", 1), *((name, 3) for name in SHAPED_CONFIGS)])
def test_the_shaped_export_computes_what_the_model_computes(name, batch):
    torch.manual_seed(0)
    model = MaiT(SHAPED_CONFIGS[name]()).eval()
    shaped = edge_model(model)
    x = torch.randn(batch, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(shaped(x), expected, atol=1e-5, rtol=1e-5)
        exported = torch.export.export(shaped, (x,)).run_decompositions(_decompositions(torch))
        assert torch.allclose(exported.module()(x), expected, atol=1e-5, rtol=1e-5)
    # The model itself is untouched: its LayerNorms and its masks' stride-0 views are still there.
    assert any(isinstance(module, torch.nn.LayerNorm) for module in model.modules())


@pytest.mark.slow
def test_cait_backbones_lower_whole_and_the_pyramid_leaves_its_token_sum():
    from mait_deploy.backends.executorch.target import ExecuTorchTarget

    left = {}
    for name in ("cait with talking heads", "pyramid"):
        torch.manual_seed(0)
        with torch.no_grad():
            _, delegation = ExecuTorchTarget._lower(torch, edge_model(MaiT(SHAPED_CONFIGS[name]()).eval()),
                                                   torch.zeros(2, 1, 28, 28))
        left[name] = delegation["undelegated_by_op"]
    assert left["cait with talking heads"] == {}
    # The pyramid's mean over tokens (a sum over axis 1) and one layout copy stay with the portable kernels.
    assert sum(left["pyramid"].values()) <= 2 and "aten_sum_dim_int_list" in left["pyramid"], left


def test_the_decompositions_are_the_ops_they_replace():
    select, expand = (_decompositions(torch)[op] for op in (torch.ops.aten.select.int, torch.ops.aten.expand.default))
    x = torch.randn(2, 5, 3)
    for dim, index in [(1, 0), (1, -1), (-1, 2), (0, 1)]:
        assert torch.equal(select(x, dim, index), x.select(dim, index))
    token = torch.randn(1, 1, 4)
    assert torch.equal(expand(token, [3, -1, -1]), token.expand(3, -1, -1))
    assert torch.equal(expand(token, [2, 3, 1, 4]), token.expand(2, 3, 1, 4))  # new leading axes too
    with pytest.raises(Exception, match="cannot expand"):
        expand(torch.randn(2, 4), [3, 4])


@pytest.fixture(scope="module")
def fp32(shipped_bundles):
    built = shipped_bundles["executorch", "fp32"]
    return built.folder, built.result


def test_the_shipped_model_is_delegated_whole_and_matches_torch(fp32):
    out, result = fp32
    assert sorted(p.name for p in out.iterdir()) == ["golden.bin", "manifest.json", "model.pte"]
    delegation = result.manifest.build["delegation"]
    assert delegation["undelegated_ops"] == 0 and delegation["undelegated_by_op"] == {}, delegation
    assert delegation["subgraphs"] == 1 and delegation["delegated_share"] == 1.0
    assert result.manifest.batch == 1 and result.gate.passed
    assert result.gate.max_abs_diff <= 1e-4 and result.gate.top1_agreement == 1.0
    summary = dict(catalog.target("executorch").summary_lines(result.manifest))
    assert summary["XNNPACK delegation"].endswith("(100%); left: nothing")
    assert verify_bundle(out).passed
    with load_bundle(out) as runner:
        assert runner.runtime_info()["via"] == "executorch.runtime"
        with pytest.raises(UnsupportedOption, match="fixed batch of 1"):
            runner.timed_call(np.zeros((2, 1, 28, 28), np.float32))
        # predict() chunks to the static batch: 5 images, 5 rows, each the row batch 1 gives.
        inputs = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
        rows = runner.run(inputs)
        assert rows.shape == (5, 10)
        assert np.allclose(rows[3], runner.run(inputs[3:4])[0], atol=1e-6)


def test_a_device_without_executorchs_python_runtime_is_told_to_use_the_native_runner(fp32, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_executorch(name, *args, **kwargs):
        if name.startswith("executorch"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_executorch)
    with pytest.raises(MissingDependency, match="mait-deploy app BUNDLE -o DIR") as caught:
        load_bundle(fp32[0]).activate()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("options, message", [
    (CompileOptions(precision="fp32", batch="dynamic"), "static batch"),
    (CompileOptions(precision="fp16"), "does not support precision fp16"),
    (CompileOptions(precision="int8", calibration=CalibrationOptions(method="entropy")), "own observers"),
])
def test_impossible_options_are_one_line_errors(options, message, tmp_path):
    with pytest.raises(UnsupportedOption, match=message) as caught:
        compile_model(None, "executorch", options, tmp_path / "b", evaluation=None)
    assert "\n" not in str(caught.value) and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_int8_is_delegated_whole_passes_its_gate_and_keeps_named_layers_in_float(executorch_bundles, tmp_path):
    from mait_deploy.backends.executorch.target import ExecuTorchTarget
    from mait_deploy.device.data.sources import Dataset
    from mait_deploy.device.manifest import read_manifest

    manifest = read_manifest(executorch_bundles["int8"])
    assert manifest.build["delegation"]["undelegated_ops"] == 0
    assert manifest.accuracy.passed and manifest.accuracy.drop_points <= 1.0
    assert (executorch_bundles["int8"] / "model.pte").stat().st_size < 0.35 * (
        executorch_bundles["fp32"] / "model.pte").stat().st_size
    # A layer kept in float (what --float-layers and the per-layer fallback ask for) gets no quantized weight:
    # the PT2E graph before lowering, where the quantizer's choices are visible.
    model = edge_model(load_checkpoint(resolve_checkpoint(None)))
    images = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    calibration = Dataset(inputs=images, labels=np.zeros(8, np.int64), origin="test")
    sample = torch.zeros(1, 1, 28, 28)

    def quantized_weights(float_layers):
        converted, report = ExecuTorchTarget._quantize(torch, model, sample, calibration, 1, float_layers)
        # Each per-channel weight dequantization feeds its layer's linear/conv, whose module path is its owner.
        owners = {list(user.meta["nn_module_stack"].values())[-1][0] for node in converted.graph.nodes
                  if "dequantize_per_channel" in str(node.target) for user in node.users}
        return owners, report

    everything, report = quantized_weights(())
    kept, kept_report = quantized_weights(("head",))
    assert "head" in everything and "head" not in kept and everything - {"head"} == kept
    assert kept_report["float_layers"] == ["head"]
    assert kept_report["quantized_layers"] == report["quantized_layers"] - 1
    with pytest.raises(UnsupportedOption, match="unknown layer"):
        ExecuTorchTarget._quantize(torch, model, sample, calibration, 1, ("nope",))

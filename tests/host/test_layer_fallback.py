"""Per-layer INT8 fallback: a layer made INT8-hostile (same FP32 function) is found and kept in float."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.gate import AccuracyGateFailed
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from tests.small_models import small_config, train_small

HOSTILE = "head"
# The gate limit these tests use: it separates the mechanism's two outcomes on every CPU. The hostile head costs
# ~41 points in INT8 (measured on a VNNI EPYC, 1,000 images); with it in float the 2-epoch model loses 0.4 point
# there and up to 1.5 on an AMX Xeon, the spread that the CPU's float kernels give its training
# (FIELD_NOTES: "Tests that train a tiny model"). A 1-point limit sat inside that spread; the product's own default
# gate (DEFAULT_MAX_DROP) is not changed, only what this test asks of a 2-epoch model.
LIMIT = 5.0


@pytest.fixture(scope="module")
def hostile_model():
    """A trained small model whose classifier head breaks in INT8: its input feature 0 is scaled down 1000x by the
    final LayerNorm and the head's weights for that feature up 1000x, so FP32 computes the same function while
    that column dominates every per-channel weight scale (the other columns round to 0)."""
    model = train_small(small_config("hostile", backbone="deit", init_values=None))
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        model.norm.weight[0] /= 1000
        model.norm.bias[0] /= 1000
        model.head.weight[:, 0] *= 1000
        assert torch.allclose(model(x), before, atol=1e-3)
    return model


@pytest.fixture(scope="module")
def hostile_source(hostile_model, tmp_path_factory):
    """``hostile_model`` exported and verified once (a ModelSource, as deploy compiles one export for every row):
    each test compiles it without exporting it again."""
    from mait_deploy.host.compile.source import source_from_checkpoint

    return source_from_checkpoint(hostile_model, tmp_path_factory.mktemp("hostile-export"))


def test_fallback_finds_the_hostile_layer_and_keeps_it_in_float(hostile_source, tmp_path):
    options = CompileOptions(precision="int8", max_accuracy_drop=LIMIT, calibration=CalibrationOptions(count=128))
    result = compile_model(hostile_source, "onnxruntime", options, tmp_path / "int8", eval_count=1000)
    fallback = result.manifest.build["layer_fallback"]
    assert fallback["first_gate"]["drop_points"] > 4 * LIMIT  # full INT8 really broke, far beyond the limit
    assert fallback["sensitivity"][0]["layer"] == HOSTILE  # ranked most sensitive
    assert HOSTILE in fallback["kept_float"] and len(fallback["kept_float"]) <= 2
    assert result.gate.passed and result.gate.drop_points <= LIMIT
    assert result.manifest.build["options"]["float_layers"] == fallback["kept_float"]
    assert result.manifest.build["quantization"]["quantized_ops"]  # the rest is still INT8


def test_without_fallback_the_gate_fails_and_named_float_layers_pass(hostile_source, tmp_path):
    base = dict(precision="int8", max_accuracy_drop=LIMIT, calibration=CalibrationOptions(count=128))
    with pytest.raises(AccuracyGateFailed):
        compile_model(hostile_source, "onnxruntime", CompileOptions(**base, layer_fallback=False), tmp_path / "a",
                      eval_count=1000)
    assert not (tmp_path / "a").exists()
    result = compile_model(hostile_source, "tensorrt", CompileOptions(**base, float_layers=(HOSTILE,)),
                           tmp_path / "b", eval_count=1000)
    assert result.gate.passed and "layer_fallback" not in result.manifest.build
    with pytest.raises(UnsupportedOption, match="unknown layer"):
        compile_model(hostile_source, "onnxruntime", CompileOptions(**base, float_layers=("blocks.9.nope",)),
                      tmp_path / "c", eval_count=100)
    with pytest.raises(UnsupportedOption, match="int8 only"):
        CompileOptions(precision="fp32", float_layers=(HOSTILE,))
    np.testing.assert_equal((tmp_path / "c").exists(), False)


def test_precision_auto_keeps_the_fastest_that_passes_and_says_why(hostile_source, tmp_path):
    from mait_deploy.device.bundle import verify_bundle

    options = CompileOptions(precision="auto", max_accuracy_drop=LIMIT, calibration=CalibrationOptions(count=128),
                             layer_fallback=False)  # so INT8 fails its gate here: one candidate ruled out by it
    result = compile_model(hostile_source, "onnxruntime", options, tmp_path / "auto", eval_count=500)
    choice = result.manifest.build["precision_choice"]
    timing = choice["side_by_side"]
    assert result.precision == choice["chosen"] == result.manifest.precision
    assert set(timing["median_ms"]) | set(choice["not_chosen"]) == {"fp32", "fp16", "int8"}
    assert "side by side" in choice["why"]
    assert "failed the accuracy gate" in choice["not_chosen"]["int8"]
    for why in choice["not_chosen"].values():
        assert "gate" in why or "not shown faster than fp32" in why
    if result.precision != "fp32":  # a reduced precision only where it beat FP32 in the race
        assert timing["ratio"][result.precision]["median"] > 1.0
    assert verify_bundle(tmp_path / "auto").passed
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == ["golden.bin", "manifest.json", "model.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["auto"]  # no candidate left behind


def test_precision_auto_refuses_what_it_cannot_time(hostile_source, tmp_path):
    with pytest.raises(UnsupportedOption, match="cannot run tensorrt"):
        compile_model(hostile_source, "tensorrt", CompileOptions(precision="auto"), tmp_path / "a", eval_count=100)
    with pytest.raises(UnsupportedOption, match="needs the accuracy gate"):
        compile_model(hostile_source, "onnxruntime", CompileOptions(precision="auto"), tmp_path / "b", evaluation=None)
    with pytest.raises(UnsupportedOption, match="int8 only"):
        CompileOptions(precision="auto", float_layers=("head",))


@pytest.mark.slow
def test_openvino_keeps_named_layers_out_of_nncf_quantization(hostile_source, tmp_path):
    pytest.importorskip("nncf")
    base = dict(precision="int8", max_accuracy_drop=LIMIT, calibration=CalibrationOptions(count=128))
    with pytest.raises(AccuracyGateFailed):
        compile_model(hostile_source, "openvino", CompileOptions(**base, layer_fallback=False), tmp_path / "a",
                      eval_count=1000)
    result = compile_model(hostile_source, "openvino", CompileOptions(**base, float_layers=(HOSTILE,)),
                           tmp_path / "b", eval_count=1000)
    quantization = result.manifest.build["quantization"]
    assert result.gate.passed and len(quantization["ignored_scope"]) == 1
    assert quantization["ignored_scope"][0] in result.manifest.build["ir"]["float_compute_layers"]


@pytest.mark.slow
def test_litert_keeps_named_modules_out_of_pt2e_quantization(hostile_source, tmp_path):
    pytest.importorskip("litert_torch")
    base = dict(precision="int8", max_accuracy_drop=LIMIT, calibration=CalibrationOptions(count=64))
    with pytest.raises(AccuracyGateFailed):
        compile_model(hostile_source, "litert", CompileOptions(**base, layer_fallback=False), tmp_path / "a",
                      eval_count=1000)
    result = compile_model(hostile_source, "litert", CompileOptions(**base, float_layers=(HOSTILE,)),
                           tmp_path / "b", eval_count=1000)
    assert result.gate.passed and result.manifest.build["quantization"]["float_layers"] == [HOSTILE]
    with pytest.raises(UnsupportedOption, match="unknown layer"):
        compile_model(hostile_source, "litert", CompileOptions(**base, float_layers=("node_matmul",)),
                      tmp_path / "c", eval_count=100)

import json

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mait_deploy.device.logits import Tolerance
from mait_deploy.errors import MaitDeployError, UnsupportedOption, ValidationError
from mait_deploy.host.export import graph
from mait_deploy.host.export.onnx import ExportOptions, export_onnx, read_onnx_metadata
from mait_deploy.host.export.parity import reference_inputs
from mait_deploy.host.model.checkpoint import load_checkpoint
from mait_deploy.host.model.zoo import resolve_checkpoint


@pytest.fixture(scope="module")
def demo_model():
    # The first release's CaiT/additive checkpoint, still shipped by name (the default, deit/multiplicative, is
    # exported by every target test).
    return load_checkpoint(resolve_checkpoint("mait_demo_28.fmnist"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_model):
    path = tmp_path_factory.mktemp("export") / "demo.onnx"
    return export_onnx(demo_model, path), path


def test_one_shared_bias_no_inf_no_mask_ops(exported, demo_model):
    result, path = exported
    model = onnx.load(str(path))
    report = graph.analyze(model)
    assert len(report.mask_constants) == 1
    bias = report.mask_constants[0]
    assert bias.shape == [4, 49, 49] and bias.consumers == demo_model.config.depth
    assert bias.min_value == -1e4
    assert report.mask_building_ops == {}
    assert report.non_finite_initializers == [] and report.fp16_unsafe_initializers == []
    # The bias values in the file are the model's mask.
    array = onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == bias.name))
    assert np.array_equal(array, demo_model.attn_masks[0].numpy())
    # And the report beside the file says the same.
    on_disk = json.loads(path.with_name(path.name + ".json").read_text())
    assert on_disk["graph"]["mask_constants"][0]["consumers"] == demo_model.config.depth
    assert on_disk["nodes_exported"] > 0 and on_disk["nodes_simplified"] > 0
    assert on_disk["tool_versions"]["onnxsim"] != "not installed"


def test_metadata_makes_the_file_self_describing(exported, demo_model):
    _, path = exported
    meta = read_onnx_metadata(path)
    assert meta["model"] == demo_model.config.to_dict()
    assert meta["labels"][0] == "T-shirt/top" and meta["preprocess"]["channels"] == 1
    assert meta["mask"]["window"] == 3 and meta["batch"] == "dynamic"


def test_parity_on_real_images_and_dynamic_batch(exported, demo_model):
    result, path = exported
    assert result.parity["max_abs_diff"] <= 1e-4 and result.parity["top1_agreement"] == 1.0
    assert result.parity["real_images"] == 256
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = reference_inputs(demo_model.config, real=16, random=0).inputs
    import torch

    with torch.no_grad():
        expected = demo_model(torch.from_numpy(inputs)).numpy()
    for batch in (1, 3, 8, 16):
        got = session.run(None, {"input": inputs[:batch]})[0]
        assert got.shape == (batch, 10)
        assert np.abs(got - expected[:batch]).max() < 1e-4


def test_fp16_export_has_no_nan_and_keeps_fp32_io(tmp_path, demo_model):
    result = export_onnx(demo_model, tmp_path / "half.onnx", ExportOptions(precision="fp16"))
    model = onnx.load(str(tmp_path / "half.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    report = graph.analyze(model)
    assert len(report.mask_constants) == 1 and report.mask_constants[0].dtype == "float16"
    assert result.parity["non_finite_outputs"] == 0
    assert result.parity["max_abs_diff"] <= 1e-2 and result.parity["top1_agreement"] >= 0.995


def test_fixed_batch_and_opset_20(tmp_path, demo_model):
    result = export_onnx(demo_model, tmp_path / "b4.onnx", ExportOptions(batch=4, opset=20))
    model = onnx.load(str(tmp_path / "b4.onnx"))
    assert model.opset_import[0].version == 20
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 1, 28, 28]
    assert result.parity["batch_sizes_checked"] == [4]


def test_unmasked_twin_exports_without_bias(tmp_path, demo_model):
    export_onnx(demo_model.unmasked(), tmp_path / "plain.onnx")
    assert graph.analyze(onnx.load(str(tmp_path / "plain.onnx"))).mask_constants == []


def test_failed_verification_leaves_nothing_behind(tmp_path, demo_model):
    out = tmp_path / "strict.onnx"
    impossible = ExportOptions(tolerance=Tolerance(max_abs_diff=0.0, min_top1_agreement=1.0))
    with pytest.raises(ValidationError, match="max \\|diff\\|"):
        export_onnx(demo_model, out, impossible)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_force(exported, demo_model):
    _, path = exported
    before = path.read_bytes()
    with pytest.raises(MaitDeployError, match="--force"):
        export_onnx(demo_model, path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("kwargs", [{"opset": 16}, {"opset": 21}, {"precision": "int8"}, {"batch": 0},
                                    {"fp16_io": True}])
def test_bad_options_rejected(kwargs):
    with pytest.raises(UnsupportedOption):
        ExportOptions(**kwargs)


def test_unwritable_folder_and_missing_checkpoint(tmp_path, demo_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MaitDeployError, match="not a folder"):
        export_onnx(demo_model, blocker / "m.onnx")
    with pytest.raises(MaitDeployError, match="checkpoint not found"):
        export_onnx(str(tmp_path / "missing"), tmp_path / "m.onnx")


def test_deduplicate_merges_copies_of_the_bias(exported):
    _, path = exported
    model = onnx.load(str(path))
    bias = next(i for i in model.graph.initializer if i.name == "attn_mask_0")
    copy = onnx.TensorProto()
    copy.CopyFrom(bias)
    copy.name = "attn_mask_0_copy"
    model.graph.initializer.append(copy)
    first_user = next(n for n in model.graph.node if "attn_mask_0" in n.input)
    first_user.input[list(first_user.input).index("attn_mask_0")] = "attn_mask_0_copy"
    assert len(graph.analyze(model).mask_constants) == 2
    assert graph.deduplicate_initializers(model) == 1
    report = graph.analyze(model)
    assert len(report.mask_constants) == 1 and report.mask_constants[0].consumers == 6

"""The ONNX Runtime target end to end on the shipped checkpoint: compile, gate, bundle, verify, predict."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy.backends.onnxruntime.target import WEIGHT_TYPES, choose_int8_format
from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.device.manifest import read_manifest
from mait_deploy.errors import (
    BundleError,
    DataError,
    UnsupportedOption,
    ValidationError,
)
from mait_deploy.host.catalog import target as get_target
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.export import graph
from tests.shipped import SHIPPED_EVAL_COUNT, default_checkpoint, golden_arrays, shift_golden_logits

EVAL_COUNT = SHIPPED_EVAL_COUNT


@pytest.fixture(scope="module")
def bundles(shipped_bundles):
    return shipped_bundles.of("onnxruntime", ("fp32", "int8"))


def test_bundle_layout_and_manifest(bundles):
    folders, results = bundles
    for precision in ("fp32", "int8"):
        folder = folders[precision]
        assert sorted(p.name for p in folder.iterdir()) == ["golden.bin", "manifest.json", "model.onnx"]
        manifest = read_manifest(folder)
        assert manifest.target == "onnxruntime" and manifest.precision == precision
        assert manifest.batch == "dynamic" and manifest.inputs[0].shape == ["batch", 1, 28, 28]
        assert manifest.model["name"] == default_checkpoint().name and manifest.labels[1] == "Trouser"
        assert manifest.accuracy.count == EVAL_COUNT and manifest.accuracy.passed
        assert "test" in manifest.accuracy.data
        assert manifest.golden.count == 8 and manifest.golden.kind == "images"
        assert manifest.tool_versions["onnxruntime"]
    assert not [p for p in folders["fp32"].parent.iterdir() if p.name.startswith(".mait-tmp")]


def test_int8_gate_and_quantization_structure(bundles):
    folders, results = bundles
    gate = results["int8"].gate
    assert gate.drop_points <= 1.0 and gate.top1_agreement > 0.95
    quant = results["int8"].manifest.build["quantization"]
    assert quant["quantized_ops"].get("MatMul", 0) + quant["quantized_ops"].get("Gemm", 0) > 0
    assert {"Softmax", "LayerNormalization"} <= set(quant["float_ops"])
    import onnx

    model = onnx.load(str(folders["int8"] / "model.onnx"))
    report = graph.analyze(model)
    assert len(report.mask_constants) == default_checkpoint().patterns == 1
    assert report.mask_constants[0].consumers == default_checkpoint().masked_blocks
    assert report.mask_constants[0].dtype == "float32"
    assert (folders["int8"] / "model.onnx").stat().st_size < 0.5 * (folders["fp32"] / "model.onnx").stat().st_size
    # uint8 activations everywhere; int8 weights (u8s8, ORT's fast x86 path) where this CPU's u8s8 kernels are
    # exact, uint8 weights (u8u8) where they saturate (x86 without VNNI): the format auto chose on this machine.
    chosen = results["int8"].manifest.build["int8_format"]["format"]
    assert chosen == choose_int8_format("auto")[0]
    initializers = {init.name: init for init in model.graph.initializer}

    def dtype(name):
        return onnx.helper.tensor_dtype_to_np_dtype(initializers[name].data_type).name

    activations = {dtype(n.input[2]) for n in model.graph.node if n.op_type == "QuantizeLinear"}
    weights = {dtype(n.input[0]) for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in initializers and len(initializers[n.input[0]].dims) == 2}
    assert activations == {"uint8"} and weights == {WEIGHT_TYPES[chosen]}
    assert quant["options"]["activation_type"] == "uint8"


def test_qdq_option_checks():
    from mait_deploy.errors import UnsupportedOption
    from mait_deploy.host.compile.qdq import QdqOptions

    with pytest.raises(UnsupportedOption, match="symmetric activations need int8"):
        QdqOptions(activation_type="uint8", activation_symmetric=True)
    with pytest.raises(UnsupportedOption, match="int8 or uint8"):
        QdqOptions(activation_type="int4")
    from mait_deploy.backends.tensorrt.target import tensorrt_qdq_options

    assert tensorrt_qdq_options().activation_type == "int8"


def test_verify_and_predict_on_the_device_path(bundles):
    folders, _ = bundles
    for precision in ("fp32", "int8"):
        report = verify_bundle(folders[precision])
        assert report.passed and report.count == 8
    with load_bundle(folders["int8"]) as runner:
        golden = golden_arrays(folders["int8"])
        prediction = runner.predict(golden["images"])
        assert prediction.logits.shape == (8, 10) and len(prediction.labels) == 8
        assert np.array_equal(prediction.indices, golden["logits"].argmax(-1))
        single = runner.predict(golden["images"][0])
        assert single.labels == prediction.labels[:1]


def test_tampered_artifact_is_refused(bundles, tmp_path):
    folders, _ = bundles
    copy = tmp_path / "copy"
    shutil.copytree(folders["fp32"], copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        load_bundle(copy)


def test_golden_mismatch_fails_loudly(bundles, tmp_path):
    folders, _ = bundles
    copy = tmp_path / "copy"
    shutil.copytree(folders["fp32"], copy)
    shift_golden_logits(copy, 1.0)
    with pytest.raises(ValidationError, match="golden outputs do not match"):
        verify_bundle(copy)


def test_runner_input_checks(bundles):
    folders, _ = bundles
    with load_bundle(folders["fp32"]) as runner:
        ok = np.zeros((2, 1, 28, 28), np.float32)
        assert runner.run(ok).shape == (2, 10)
        for bad, message in [
            (np.zeros((2, 3, 28, 28), np.float32), "shape"),
            (np.zeros((2, 1, 28, 28), np.float64), "float32"),
            (np.full((1, 1, 28, 28), np.nan, np.float32), "NaN"),
            (np.zeros((0, 1, 28, 28), np.float32), "empty batch"),
            ([[1, 2]], "numpy array"),
        ]:
            with pytest.raises(DataError, match=message):
                runner.run(bad)
        big = runner.run(np.zeros((1500, 1, 28, 28), np.float32))  # chunked by max_batch
        assert big.shape == (1500, 10)


def test_gate_failure_leaves_no_bundle(monkeypatch, tmp_path):
    import mait_deploy.host.compile.target as base

    def failing_gate(*args, **kwargs):
        raise ValidationError("accuracy gate failed: forced for the test")

    monkeypatch.setattr(base, "accuracy_gate", failing_gate)
    out = tmp_path / "bundle"
    with pytest.raises(ValidationError, match="forced"):
        compile_model(None, "onnxruntime", CompileOptions(precision="fp32"), out, eval_count=50)
    assert list(tmp_path.iterdir()) == []


def test_impossible_options_are_errors(tmp_path):
    with pytest.raises(UnsupportedOption, match="unknown target"):
        get_target("coreml")
    with pytest.raises(UnsupportedOption, match="--batch"):
        compile_model(None, "onnxruntime", CompileOptions(batch=4), tmp_path / "b")
    with pytest.raises(UnsupportedOption, match="precision"):
        CompileOptions(precision="int4")
    with pytest.raises(UnsupportedOption, match="calibration method"):
        CalibrationOptions(method="magic")
    assert list(tmp_path.iterdir()) == []


def test_compile_from_exported_onnx(bundles, tmp_path):
    folders, _ = bundles
    # The fp32 bundle's model.onnx is the verified export with its metadata: a valid MODEL argument.
    result = compile_model(str(folders["fp32"] / "model.onnx"), "onnxruntime", CompileOptions(precision="fp16"),
                           tmp_path / "fp16", eval_count=200)
    assert result.gate.passed and result.manifest.source["from_checkpoint"] is False


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("artifact"), "'artifact' is a required property"),
    (lambda m: m.update(schema_version=99), "schema version 99"),
    (lambda m: m.update(schema_version="1"), "no valid schema_version"),
    (lambda m: m["artifact"].update(path="../../etc/passwd"), "escapes the bundle"),
    (lambda m: m["artifact"].update(path="/etc/passwd"), "escapes the bundle"),
    (lambda m: m.update(batch=0), "batch: 0 is less than the minimum of 1"),
    (lambda m: m.update(surprise=1), r"Additional properties are not allowed \('surprise' was unexpected\)"),
    (lambda m: m["model"].pop("preprocess"), "model: 'preprocess' is a required property"),
])
def test_bad_manifests_are_refused(bundles, tmp_path, edit, message):
    folders, _ = bundles
    copy = tmp_path / "copy"
    shutil.copytree(folders["fp32"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing")
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)

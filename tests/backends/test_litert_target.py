"""LiteRT target: conversion of the shipped model at each precision, parity, gate, no Flex ops, int8 I/O in the
runner, static batch, and the one-line errors."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from mait_deploy.device.bundle import load_bundle, verify_bundle  # noqa: E402
from mait_deploy.device.runner import RunnerOptions  # noqa: E402
from mait_deploy.errors import UnsupportedOption  # noqa: E402
from mait_deploy.host.compile.api import compile_model  # noqa: E402
from mait_deploy.host.compile.target import CalibrationOptions, CompileOptions  # noqa: E402
from tests.shipped import golden_arrays  # noqa: E402


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("litert")
    results = {}
    for precision in ("fp32", "fp16", "int8"):
        options = CompileOptions(precision=precision, calibration=CalibrationOptions(count=128))
        results[precision] = compile_model(None, "litert", options, root / precision, eval_count=1000)
    return root, results


def test_files_ops_and_sizes(bundles):
    root, results = bundles
    sizes = {}
    for precision in ("fp32", "fp16", "int8"):
        assert sorted(p.name for p in (root / precision).iterdir()) == ["golden.bin", "manifest.json", "model.tflite"]
        check = results[precision].manifest.build["interpreter_check"]
        assert not [op for op in check["ops"] if op.startswith("Flex") or op == "CUSTOM"]
        assert check["delegated"], "XNNPACK did not take the graph"
        assert results[precision].manifest.batch == 1
        sizes[precision] = (root / precision / "model.tflite").stat().st_size
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8"] < 0.4 * sizes["fp32"]
    assert results["int8"].manifest.build["interpreter_check"]["input_dtype"] == "int8"


def test_parity_and_gate(bundles):
    _, results = bundles
    assert results["fp32"].gate.max_abs_diff <= 1e-4 and results["fp32"].gate.top1_agreement == 1.0
    assert results["fp16"].gate.top1_agreement >= 0.995
    assert results["int8"].gate.passed and results["int8"].gate.drop_points <= 1.0


def test_int8_io_is_handled_by_the_runner(bundles):
    root, _ = bundles
    golden = golden_arrays(root / "int8")
    with load_bundle(root / "int8") as runner:
        prediction = runner.predict(golden["images"])
        assert prediction.logits.dtype == np.float32 and prediction.logits.shape == (8, 10)
        assert np.array_equal(prediction.indices, golden["logits"].argmax(-1))
        assert runner.runtime_info()["input_dtype"] == "int8"
    for precision in ("fp32", "fp16", "int8"):
        assert verify_bundle(root / precision).passed


def test_xnnpack_switch_gives_the_same_answers(bundles):
    root, _ = bundles
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with load_bundle(root / "fp32") as fast, load_bundle(root / "fp32", RunnerOptions(extra={"xnnpack": False})) as slow:
        assert np.abs(fast.run(x) - slow.run(x)).max() < 1e-4
        assert slow.runtime_info()["xnnpack"] is False


def test_threads_default_to_the_usable_cores(bundles):
    import os

    root, _ = bundles
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    with load_bundle(root / "fp32") as default, load_bundle(root / "fp32", RunnerOptions(threads=1)) as one:
        assert default.runtime_info()["threads"] == len(os.sched_getaffinity(0))
        assert one.runtime_info()["threads"] == 1
        assert np.abs(default.run(x) - one.run(x)).max() < 1e-4


def test_fixed_batch_bundle_pads_partial_batches(tmp_path):
    result = compile_model(None, "litert", CompileOptions(precision="fp32", batch=4), tmp_path / "b4", eval_count=100)
    assert result.manifest.batch == 4 and result.manifest.inputs[0].shape == [4, 1, 28, 28]
    with load_bundle(tmp_path / "b4") as runner:
        assert runner.run(np.zeros((6, 1, 28, 28), np.float32)).shape == (6, 10)


def test_litert_errors(tmp_path, bundles):
    root, _ = bundles
    with pytest.raises(UnsupportedOption, match="static batch"):
        compile_model(None, "litert", CompileOptions(batch="dynamic"), tmp_path / "x")
    from mait_deploy.host.export.onnx import export_onnx

    export_onnx(None, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOption, match="converts from PyTorch"):
        compile_model(str(tmp_path / "m.onnx"), "litert", CompileOptions(), tmp_path / "x")
    assert not (tmp_path / "x").exists()

"""LiteRT target: conversion of the shipped model at each precision, parity, gate, no Flex ops, int8 I/O in the
runner, static batch, and the one-line errors."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CompileOptions
from tests.shipped import golden_arrays


@pytest.fixture(scope="module")
def bundles(shipped_bundles):
    return shipped_bundles.of("litert", ("fp32", "fp16", "int8"))


def test_files_ops_and_sizes(bundles):
    folders, results = bundles
    sizes = {}
    for precision in ("fp32", "fp16", "int8"):
        assert sorted(p.name for p in (folders[precision]).iterdir()) == ["golden.bin", "manifest.json", "model.tflite"]
        check = results[precision].manifest.build["interpreter_check"]
        assert not [op for op in check["ops"] if op.startswith("Flex") or op == "CUSTOM"]
        assert check["delegated"], "XNNPACK did not take the graph"
        assert results[precision].manifest.batch == 1
        sizes[precision] = (folders[precision] / "model.tflite").stat().st_size
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8"] < 0.4 * sizes["fp32"]
    assert results["int8"].manifest.build["interpreter_check"]["input_dtype"] == "int8"


def test_parity_and_gate(bundles):
    _, results = bundles
    assert results["fp32"].gate.max_abs_diff <= 1e-4 and results["fp32"].gate.top1_agreement == 1.0
    assert results["fp16"].gate.top1_agreement >= 0.995
    assert results["int8"].gate.passed and results["int8"].gate.drop_points <= 1.0


def test_each_operation_cut_out_computes_what_it_computes_in_the_whole_model(bundles):
    """The per-layer profile times each op as a model of its own: that model must be the op (same output on the
    same inputs as in the whole model), for every op of the FP32 and INT8 graphs."""
    from ai_edge_litert.tools import flatbuffer_utils

    from mait_deploy.backends.litert.op_profile import single_op_model, tensor_values
    from mait_deploy.backends.litert.runner import _Io, make_interpreter

    folders, _ = bundles
    for precision in ("fp32", "int8"):
        path = str(folders[precision] / "model.tflite")
        with load_bundle(folders[precision]) as runner:
            inputs = np.random.default_rng(0).standard_normal((1, *runner.sample_shape)).astype(np.float32)
        values = tensor_values(path, inputs, lambda interpreter, batch: _Io(interpreter).set_input(batch))
        model = flatbuffer_utils.read_model(path)
        graph = model.subgraphs[0]
        for index, op in enumerate(graph.operators):
            content, variable = single_op_model(model, index)
            interpreter = make_interpreter(None, 1, False, content=content)[0]  # the reference kernels, as above
            for detail, original in zip(interpreter.get_input_details(), variable):
                interpreter.set_tensor(detail["index"], values[original])
            interpreter.invoke()
            got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            want = values[op.outputs[0]]
            assert got.shape == want.shape and got.dtype == want.dtype, (precision, index)
            # The whole-model run and this one pick different reference kernels for some ops (reductions, GEMMs):
            # float results agree to ~1e-6 relative, int8 ones to one step of rounding.
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0)
            limit = 1.0 if got.dtype.kind in "iu" else 1e-5 * max(1.0, float(np.abs(want).max(initial=0.0)))
            assert diff <= limit, (precision, index, diff)


def test_the_per_layer_profile_maps_every_operation_to_the_blocks(bundles):
    from mait_deploy.device.profiling.layers import profile_layers

    folders, _ = bundles
    for precision in ("fp32", "int8"):
        with load_bundle(folders[precision]) as runner:
            profile = profile_layers(runner, batch=1, iterations=5, warmup=1)
            depth = runner.manifest.model["depth"]
        assert profile.mapping == "blocks" and len(profile.parts) == 2 * depth + 2
        assert profile.parts[0].part == "patch embed" and profile.parts[-1].part == "head"
        assert any(part.masked for part in profile.parts)
        assert all(layer.ms >= 0 for layer in profile.layers) and profile.total_ms > 0 and profile.call_ms > 0
        assert profile.by_kind["matmul/conv"] > 0 and profile.by_kind["norm"] > 0
        expected = {"float"} if precision == "fp32" else {"int8", "float", "q/dq"}
        assert set(profile.by_precision) == expected, profile.by_precision


def test_int8_io_is_handled_by_the_runner(bundles):
    folders, _ = bundles
    golden = golden_arrays(folders["int8"])
    with load_bundle(folders["int8"]) as runner:
        prediction = runner.predict(golden["images"])
        assert prediction.logits.dtype == np.float32 and prediction.logits.shape == (8, 10)
        assert np.array_equal(prediction.indices, golden["logits"].argmax(-1))
        assert runner.runtime_info()["input_dtype"] == "int8"
    for precision in ("fp32", "fp16", "int8"):
        assert verify_bundle(folders[precision]).passed


def test_xnnpack_switch_gives_the_same_answers(bundles):
    folders, _ = bundles
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with load_bundle(folders["fp32"]) as fast, load_bundle(folders["fp32"], RunnerOptions(extra={"xnnpack": False})) as slow:
        assert np.abs(fast.run(x) - slow.run(x)).max() < 1e-4
        assert slow.runtime_info()["xnnpack"] is False


def test_threads_default_to_the_usable_cores(bundles):
    import os

    folders, _ = bundles
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    with load_bundle(folders["fp32"]) as default, load_bundle(folders["fp32"], RunnerOptions(threads=1)) as one:
        assert default.runtime_info()["threads"] == len(os.sched_getaffinity(0))
        assert one.runtime_info()["threads"] == 1
        assert np.abs(default.run(x) - one.run(x)).max() < 1e-4


def test_fixed_batch_bundle_pads_partial_batches(tmp_path, shipped_source):
    result = compile_model(shipped_source, "litert", CompileOptions(precision="fp32", batch=4), tmp_path / "b4",
                           eval_count=100)
    assert result.manifest.batch == 4 and result.manifest.inputs[0].shape == [4, 1, 28, 28]
    with load_bundle(tmp_path / "b4") as runner:
        assert runner.run(np.zeros((6, 1, 28, 28), np.float32)).shape == (6, 10)


def test_litert_errors(tmp_path, bundles, shipped_source):
    folders, _ = bundles
    with pytest.raises(UnsupportedOption, match="static batch"):
        compile_model(None, "litert", CompileOptions(batch="dynamic"), tmp_path / "x")
    with pytest.raises(UnsupportedOption, match="converts from PyTorch"):
        compile_model(str(shipped_source.onnx_path), "litert", CompileOptions(), tmp_path / "x")
    assert not (tmp_path / "x").exists()

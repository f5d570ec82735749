"""A build job's memory: the activations read from the ONNX graph, the calibration and gate batches that keep a large
model within the budget (the default model keeps its batches), the memory each job declares (a Ray task's
``memory``, what local workers admit jobs by) and a worker's measured peak within that declaration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mait_deploy.host.compile.activations import (
    ACTIVATION_BUDGET_BYTES,
    CALIBRATION_BATCH,
    GATE_BATCH,
    activation_bytes,
    calibration_batch,
    gate_batch,
)
from mait_deploy.host.jobs.executors import admissible

onnx = pytest.importorskip("onnx")

MB = 2**20


def test_activation_bytes_sums_every_intermediate_tensor_of_one_image(tmp_path):
    """x[batch, 4] -> MatMul -> h[batch, 8] -> Relu -> r[batch, 8] -> MatMul -> y[batch, 3]: h and r are the
    intermediates, 2 x 8 floats for one image, whatever the batch axis is called."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.ones((4, 8), np.float32), "w1"),
         numpy_helper.from_array(np.ones((8, 3), np.float32), "w2")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert activation_bytes(path) == 2 * 8 * 4


def test_the_default_model_keeps_its_batches_and_a_224px_maits_stays_within_the_budget(ort_fp32_bundle):
    per_image = activation_bytes(ort_fp32_bundle / "model.onnx")
    assert 1 * MB < per_image < 64 * MB, per_image  # the shipped 28-px model: about 11 MB
    assert calibration_batch(per_image) == CALIBRATION_BATCH and gate_batch(per_image) == GATE_BATCH
    maits = 400 * MB  # a 224-px MaiT-S, measured with the same function on its export
    assert calibration_batch(maits) * maits <= ACTIVATION_BUDGET_BYTES and calibration_batch(maits) >= 1
    assert 1 <= gate_batch(maits) < GATE_BATCH
    assert calibration_batch(10 * ACTIVATION_BUDGET_BYTES) == gate_batch(100 * ACTIVATION_BUDGET_BYTES) == 1


def test_the_calibration_batch_does_not_change_the_int8_model(ort_fp32_bundle, tmp_path):
    """ONNX Runtime's MinMax calibration merges the ranges of its batches exactly: a smaller batch (a large
    model's) writes the same scales."""
    from mait_deploy.host.compile.api import load_data
    from mait_deploy.host.compile.qdq import QdqOptions, quantize_qdq
    from mait_deploy.host.compile.source import source_from_onnx
    from mait_deploy.host.compile.spec import CalibrationOptions

    pytest.importorskip("onnxruntime")
    calibration, _ = load_data(source_from_onnx(ort_fp32_bundle / "model.onnx"), "fashion-mnist",
                               CalibrationOptions(count=48), None, None)
    images = calibration.inputs
    scales = {}
    for batch in (CALIBRATION_BATCH, 5):
        out = tmp_path / f"int8-{batch}.onnx"
        quantize_qdq(ort_fp32_bundle / "model.onnx", out, images, QdqOptions(), batch=batch)
        model = onnx.load(str(out))
        scales[batch] = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer
                         if i.name.endswith("_scale")}
    assert scales[CALIBRATION_BATCH].keys() == scales[5].keys() and len(scales[5]) > 20
    for name, value in scales[CALIBRATION_BATCH].items():
        np.testing.assert_allclose(scales[5][name], value, rtol=1e-5, err_msg=name)


@dataclasses.dataclass(frozen=True)
class _Job:
    name: str


def test_workers_admit_a_job_only_where_its_memory_fits_beside_the_others():
    a, b, c = _Job("a"), _Job("b"), _Job("c")
    declared = {"a": 6, "b": 6, "c": 3}
    assert admissible([b, c], [a], declared, limit=10) is c  # b would not fit beside a; c does
    assert admissible([b], [a], declared, limit=10) is None  # wait for a to finish
    assert admissible([b, c], [], declared, limit=1) is b  # alone, a job runs whatever it declares
    assert admissible([b, c], [a], declared, limit=None) is b  # no figure from the system: by the worker count
    assert admissible([], [a], declared, limit=10) is None


def test_a_job_declares_more_for_a_larger_model_and_a_worker_stays_within_its_declaration(ort_fp32_bundle):
    """The declaration grows with the images a job holds and its activations; a real INT8 build of the shipped
    model on a worker process peaks (its own high-water mark) below what it declared."""
    from mait_deploy.host.compile.api import load_data
    from mait_deploy.host.compile.source import source_from_onnx
    from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
    from mait_deploy.host.jobs.executors import LocalProcesses
    from mait_deploy.host.jobs.job import JOB_MEMORY_BYTES, BuildJob, build_inputs, job_memory_bytes

    pytest.importorskip("onnxruntime")
    source = source_from_onnx(ort_fp32_bundle / "model.onnx")
    calibration, evaluation = load_data(source, "fashion-mnist", CalibrationOptions(count=64), "fashion-mnist", 300)
    inputs = build_inputs(source, calibration, evaluation)
    declared = job_memory_bytes(inputs)
    assert JOB_MEMORY_BYTES < declared < JOB_MEMORY_BYTES + 512 * MB, declared
    larger = dataclasses.replace(inputs, activation_bytes=400 * MB)
    assert job_memory_bytes(larger) > declared + 512 * MB

    job = BuildJob("onnxruntime-int8", "onnxruntime", "int8",
                   CompileOptions(precision="int8", calibration=CalibrationOptions(count=64)))
    [outcome] = LocalProcesses(1).run([job], {"model": inputs}, done=lambda outcome: None)
    assert outcome.status == "ok", outcome.reason
    assert 0 < outcome.worker["peak_rss_mb"] * MB < declared, (outcome.worker, declared)


def test_a_spawned_process_reports_its_own_peak_not_its_parents():
    """A build worker is spawned by the deploying process; its peak must be its own. ``ru_maxrss`` is not: Linux
    carries the parent's high-water mark across fork and exec (a worker reported the deploying process's 801 MB
    for every job whatever it built)."""
    import subprocess
    import sys

    from mait_deploy.device.profiling.measure import peak_rss_mb, rss_mb

    held = np.ones(64 * MB // 8 * 8)  # 512 MB, every page touched
    assert rss_mb() > 512
    child = subprocess.run([sys.executable, "-c", "from mait_deploy.device.profiling.measure import peak_rss_mb; "
                            "import resource; print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF)"
                            ".ru_maxrss / 1024)"], capture_output=True, text=True, check=True)
    del held
    own, inherited = map(float, child.stdout.split())
    assert 0 < own < 256, child.stdout  # the child's Python and numpy
    assert inherited > 512, child.stdout  # what the old figure said: the parent's
    assert peak_rss_mb() > 512

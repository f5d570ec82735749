"""deploy(): one failure never stops the run; every row ends with a status and a reason; bad options are errors."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from mait_deploy.device.profiling.stats import Latency
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.deploy.pipeline import DeployOptions, deploy
from mait_deploy.host.deploy.race import recommend_rows
from mait_deploy.results import BundleRun, GateFigures, Status, runs_front


def test_failures_are_rows_not_crashes(tmp_path, monkeypatch):
    from mait_deploy.backends.onnxruntime.target import OnnxRuntimeTarget

    original = OnnxRuntimeTarget._build

    def broken_fp16(self, source, options, staging, calibration, progress):
        if options.precision == "fp16":
            raise RuntimeError("converter crashed")
        return original(self, source, options, staging, calibration, progress)

    monkeypatch.setattr(OnnxRuntimeTarget, "_build", broken_fp16)  # in this process: --jobs 1
    report = deploy(None, tmp_path, DeployOptions(targets=("onnxruntime", "tensorrt"), precisions=("fp32", "fp16"),
                                                  eval_count=300, profile_batches=(1,), profile_iterations=5, jobs=1))
    rows = {(r.target, r.precision): r for r in report.rows}
    assert rows[("onnxruntime", "fp32")].status == "ok"
    assert rows[("onnxruntime", "fp16")].status == "failed"
    assert "converter crashed" in rows[("onnxruntime", "fp16")].reason
    trt = rows[("tensorrt", "fp32")]
    assert trt.status == "skipped" and "build-engine" in trt.reason and trt.bundle  # the bundle is still made
    assert not (tmp_path / "bundles" / "onnxruntime-fp16").exists()
    assert json.loads((tmp_path / "report.json").read_text())["rows"][1]["status"] == "failed"


def test_gate_failure_row_carries_the_numbers(tmp_path, monkeypatch):
    # An artifact that answers with the next class for every image (ONNX Runtime's runner, in this process: --jobs 1)
    # loses most of its top-1: its row fails the gate, carries the gate's figures and gets no profile.
    from mait_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner

    original = OnnxRuntimeRunner.run
    monkeypatch.setattr(OnnxRuntimeRunner, "run", lambda self, batch: np.roll(original(self, batch), 1, axis=-1))
    report = deploy(None, tmp_path, DeployOptions(targets=("onnxruntime",), precisions=("fp32",), eval_count=100,
                                                  gate_sample=None, profile_batches=(1,), profile_iterations=5,
                                                  jobs=1))
    row = report.rows[0]
    assert row.status == Status.FAILED_GATE
    assert "accuracy gate failed" in row.reason and "drop" in row.reason
    assert row.gate is not None and row.gate.drop_points > 50 and row.gate.top1 < 0.5, row.gate
    assert not row.latency
    saved = json.loads((tmp_path / "report.json").read_text())["rows"][0]
    assert saved["status"] == "failed_gate" and saved["gate"]["drop_points"] == row.gate.drop_points


@pytest.mark.parametrize("kwargs,message", [
    ({"targets": ("coreml",)}, "unknown target"),
    ({"precisions": ("int4",)}, "unknown precision"),
    ({"max_accuracy_drop": -1}, "max-accuracy-drop"),
    ({"profile_batches": (0,)}, "positive"),
])
def test_bad_deploy_options(kwargs, message):
    with pytest.raises(UnsupportedOption, match=message):
        DeployOptions(**kwargs)


def test_pareto_and_recommendation():
    def row(target, precision, top1, p50):
        return BundleRun(target=target, precision=precision, status=Status.OK,
                         gate=GateFigures(top1=top1, drop_points=0.0),
                         latency={"batch_1": Latency(1, p50, p50, 1000 / p50)}, bundle=target)

    rows = [row("a", "fp32", 0.90, 10.0), row("a", "int8", 0.89, 4.0), row("b", "fp32", 0.88, 12.0),
            row("b", "int8", 0.90, 8.0)]
    assert sorted(runs_front(rows)) == [1, 3]
    best = recommend_rows(rows, None)  # no race: each bundle's own profile
    assert (best.target, best.precision) == ("a", "int8") and "2.50x a fp32" in best.reason
    assert "own profile" in best.reason


def test_a_sampled_gate_goes_through_the_whole_row_and_its_note_says_so(tmp_path):
    # A gate that decides on its sample writes a manifest and a report like a full one (the main job's default).
    # 500 of 2,000 identical outputs: the interval (at least the 99% rule-of-three width, 0.8 point) decides.
    report = deploy(None, tmp_path, DeployOptions(targets=("onnxruntime",), precisions=("fp32",), eval_count=2000,
                                                  gate_sample=500, profile_batches=(1,), profile_iterations=5))
    row = report.rows[0]
    assert row.status == "ok", row.reason
    assert row.gate.images == 500 and row.gate.sampled_from == 2000
    assert row.gate.measured_on() == "500 of 2000 (sample)"
    assert "drop's 99% interval over all 2000 images" in row.notes()
    from mait_deploy.device.manifest import read_manifest

    gate = read_manifest(tmp_path / "bundles" / "onnxruntime-fp32").accuracy
    assert gate.sampled_from == 2000 and gate.count == 500 and gate.drop_interval[1] <= 1.0
    assert "| 500 of 2000 (sample) |" in (tmp_path / "report.md").read_text()

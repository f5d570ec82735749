"""The one typed result (mait_deploy/results.py) and the reports made of it: strict reading, generated schemas."""

from __future__ import annotations

import json

import pytest

from mait_deploy.device.profiling.stats import Latency
from mait_deploy.errors import ValidationError
from mait_deploy.results import BoardFacts, BundleRun, GateFigures, Memory, RunnerKind, Status, Verified, pareto_front


def full_run() -> BundleRun:
    return BundleRun(target="onnxruntime", precision="int8", status=Status.OK, reason="", where="pi-4",
                     runner=RunnerKind.NATIVE, bundle="onnxruntime-int8", model="mait_t",
                     gate=GateFigures(top1=0.91, reference_top1=0.915, drop_points=0.5, images=500, sampled_from=2000,
                                      drop_interval=(0.1, 0.9)),
                     latency={"batch_1": Latency(1, 2.5, 3.0, 400.0)}, memory=Memory(120.5, 30.1),
                     verify=Verified(passed=True, runtime="onnxruntime 1.32.0", images=8, max_abs_diff=1e-3),
                     size_bytes=1234, seconds=4.2, cpp_app=True,
                     board=BoardFacts(machine="aarch64", pushed=True, top1=0.9, host_top1=0.905,
                                      state={"load_avg": [1.0, 0.5, 0.2]}, steps={"push": 1.5}, overhead=0.02))


def test_a_run_reads_back_as_itself():
    run = full_run()
    data = json.loads(json.dumps(run.to_dict()))
    assert data["status"] == "ok" and data["runner"] == "native" and data["gate"]["drop_interval"] == [0.1, 0.9]
    assert BundleRun.from_dict(data) == run
    assert BundleRun.from_dict({"target": "litert", "precision": "fp32", "status": "skipped"}).reason == ""


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "bundle run has unknown fields: colour"),
    ({"status": "great"}, "bundle run.status is 'great', not one of ok, failed_gate, failed, skipped"),
    ({"latency": {"batch_1": {"batch": 1, "p50_ms": "fast", "p99_ms": None, "throughput": 1.0}}},
     "bundle run.latency.batch_1.p50_ms is not a number"),
    ({"gate": {"top1": True}}, "bundle run.gate.top1 is not a number"),
    ({"board": {"steps": {"push": [1]}}}, "bundle run.board.steps.push is not a number"),
    ({"target": None}, "bundle run.target is null"),
    ({"size_bytes": 1.5}, "bundle run.size_bytes is not an integer"),
    ({"gate": {"drop_interval": [1, 2, 3]}}, "bundle run.gate.drop_interval"),
])
def test_what_does_not_fit_is_one_line_naming_where(change, message):
    data = {**full_run().to_dict(), **change}
    with pytest.raises(ValidationError) as caught:
        BundleRun.from_dict(data)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    missing = {k: v for k, v in full_run().to_dict().items() if k != "precision"}
    with pytest.raises(ValidationError, match="bundle run has no precision"):
        BundleRun.from_dict(missing)


def test_the_pareto_front_keeps_what_nothing_beats():
    points = [(0.90, 10.0), (0.89, 4.0), (0.88, 12.0), (0.90, 8.0), (0.90, 8.0)]
    assert pareto_front(points) == [1, 3, 4]  # equal points beat neither
    assert pareto_front([]) == []


@pytest.mark.parametrize("name", ["deploy_report", "fleet_report", "compare_report"])
def test_the_checked_in_report_schemas_are_the_generated_ones(name):
    from mait_deploy.host.report_schemas import report_schema, schema_file

    assert json.loads(schema_file(name).read_text()) == report_schema(name), \
        "run `python -m mait_deploy.host.report_schemas`"


def test_a_fleet_report_validates_against_its_schema_and_a_hostile_one_does_not():
    jsonschema = pytest.importorskip("jsonschema")
    from mait_deploy.host.remote.fleet_report import FleetBundle, FleetReport
    from mait_deploy.host.report_schemas import schema_file

    report = FleetReport(created="2026-12-03T10:00:00", seconds=3.0, device_seconds={"pi-4": 2.5},
                         devices=[{"name": "pi-4"}], bundles=[FleetBundle("onnxruntime-int8", "onnxruntime", "int8",
                                                                          "0" * 64, True)],
                         evaluation=None, profile_options={"batches": [1]}, rows=[full_run()])
    validator = jsonschema.Draft202012Validator(json.loads(schema_file("fleet_report").read_text()))
    data = json.loads(json.dumps(report.to_dict()))
    validator.validate(data)
    assert FleetReport.from_dict(data) == report
    data["rows"][0]["board"]["top1"] = 5.0
    assert not validator.is_valid(data)

"""profile() on a real bundle: report round trip, plots, failure recorded in the report, CLI."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy.device.profiling.measure import ProfileOptions, profile
from mait_deploy.device.profiling.report import load_reports, plot_reports, save_reports
from mait_deploy.errors import MaitDeployError


@pytest.fixture
def bundle(ort_fp32_bundle):
    return ort_fp32_bundle


def test_profile_report_round_trip_and_plots(bundle, tmp_path):
    report = profile(bundle, ProfileOptions(batches=(1, 4), warmup=2, iterations=25))
    assert report.error is None and [r.batch for r in report.results] == [1, 4]
    first = report.results[0]
    assert first.model.count == 25 and len(first.samples_ms) == 25
    assert first.warmup.count == 2 and first.warmup.first_ms > 0
    assert first.runtime_reported is None  # ONNX Runtime keeps no per-call timing of its own
    assert first.end_to_end.percentiles_ms["p50"] >= first.preprocess.percentiles_ms["p50"]
    assert report.memory.peak_rss_mb > 0 and report.memory.load_increase_mb is not None
    assert report.device.before["cpu"]["cores"] >= 1 and report.accuracy.passed
    path = tmp_path / "r.json"
    save_reports([report], path)
    loaded = load_reports(path)
    assert loaded[0].to_dict() == json.loads(json.dumps(report.to_dict()))
    single, many = tmp_path / "one.png", tmp_path / "many.png"
    one = profile(bundle, ProfileOptions(batches=(1,), warmup=1, iterations=30))
    plot_reports([one], single)
    plot_reports([report, one], many)
    for png in (single, many):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # The terminal table at 80 columns: the bundle's name whole, p50 shown, what did not fit named.
    import io

    from rich.console import Console

    from mait_deploy.device.profiling.report import print_summary

    out = io.StringIO()
    print_summary([report, one], Console(file=out, width=80))
    lines = out.getvalue().splitlines()
    assert max(map(len, lines[:-1])) <= 80 and "…" not in out.getvalue()
    assert bundle.name in out.getvalue() and "p50 ms" in out.getvalue() and "left out at this width" in out.getvalue()


def test_throughput_mode_uses_the_runtime_async_api(bundle):
    report = profile(bundle, ProfileOptions(batches=(2,), warmup=1, iterations=20, mode="throughput", requests=2))
    result = report.results[0]
    assert result.throughput.inferences == 20 and result.throughput.requests_in_flight == 2
    assert result.throughput.images_per_s > 0


def test_failure_part_way_is_in_the_report(bundle, monkeypatch, tmp_path):
    from mait_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner

    calls = {"n": 0}
    original = OnnxRuntimeRunner._infer

    def flaky(self, batch):
        calls["n"] += 1
        if batch.shape[0] == 4:
            raise RuntimeError("device lost")
        return original(self, batch)

    monkeypatch.setattr(OnnxRuntimeRunner, "_infer", flaky)
    report = profile(bundle, ProfileOptions(batches=(1, 4), warmup=1, iterations=5))
    # The runtime's own error, named by the runner (which runtime, which program) on one line.
    lost = f"onnxruntime failed to run {bundle / 'model.onnx'}: device lost"
    assert report.results[0].error is None and report.results[1].error == lost
    assert report.error == f"batch 4: {lost}"
    save_reports([report], tmp_path / "partial.json")
    assert load_reports(tmp_path / "partial.json")[0].error == f"batch 4: {lost}"


def test_bad_report_files(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "other"}')
    with pytest.raises(MaitDeployError, match="not a mait-deploy profile report"):
        load_reports(tmp_path / "x.json")
    with pytest.raises(MaitDeployError, match="not found"):
        load_reports(tmp_path / "none.json")


def test_profile_cli(bundle, tmp_path):
    out, png = tmp_path / "p.json", tmp_path / "p.png"
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "profile", str(bundle), "--batch", "1,2",
                             "--iterations", "10", "--warmup", "1", "--json", str(out), "--plot", str(png)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and png.is_file() and "p50 ms" in result.stdout
    compare = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "profile", "--compare", str(out), str(out)],
                             capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0 and compare.stdout.count("onnxrunt") >= 4
    bad = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "profile", str(bundle), "--iterations", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: Invalid value for '--iterations'"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

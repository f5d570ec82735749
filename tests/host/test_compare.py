"""`mait-deploy compare` on tiny models: a small MaiT checkpoint and a small pyramid against an ONNX baseline (the
unmasked twin, exported), compiled for ONNX Runtime, OpenVINO and LiteRT, timed side by side, reported."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy.errors import MaitDeployError, UnsupportedOption
from mait_deploy.host.compare.run import CompareOptions, compare
from mait_deploy.host.export.onnx import ExportOptions, export_onnx
from mait_deploy.host.model.checkpoint import save_checkpoint
from mait_deploy.host.model.mait import MaiT
from tests.small_models import small_config, small_pyramid_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    torch.manual_seed(0)
    save_checkpoint(MaiT(small_config("tiny_mait", backbone="deit", init_values=None)).eval(), root / "tiny_mait")
    save_checkpoint(MaiT(small_pyramid_config("tiny_pyramid")).eval(), root / "tiny_pyramid")
    twin = MaiT(small_config("tiny_deit", backbone="deit", init_values=None).unmasked()).eval()
    export_onnx(twin, root / "tiny_deit.onnx", ExportOptions(force=True))
    return root


def test_compare_times_side_by_side_on_one_target_and_says_what_it_could_not_build(tiny):
    """The default run's share, through the command (the slow one below adds LiteRT's one-bundle-per-batch path and
    the pyramid): its table, what it could not build, and every file it wrote."""
    out = tiny / "quick"
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "compare", str(tiny / "tiny_mait"),
                             "--baselines", str(tiny / "tiny_deit.onnx"), "--targets", "onnxruntime,tensorrt",
                             "--precisions", "fp32,int8", "--batch", "1,4", "--rounds", "2", "--block", "2",
                             "--calib-count", "16", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "throughput ratio" in result.stdout and "not built: tiny_mait tensorrt" in result.stdout
    reports = result.stdout[result.stdout.index("reports: "):].replace("\n", "").strip()  # wrapped off a terminal
    assert reports == f"reports: {out / 'compare.json'}, {out / 'compare.md'}, {out / 'compare.png'}"
    data = json.loads((out / "compare.json").read_text())
    assert {(c["precision"], c["batch"]) for c in data["cells"]} == {(p, b) for p in ("fp32", "int8") for b in (1, 4)}
    for cell in data["cells"]:
        assert [r["model"] for r in cell["rows"]] == ["tiny_mait", "tiny_deit"]
        assert all((out / r["bundle"] / "manifest.json").is_file() for r in cell["rows"])  # inside the output
        (ratio,) = cell["throughput_ratios"]
        assert (ratio["mait"], ratio["baseline"]) == ("tiny_mait", "tiny_deit")
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    assert {f["target"] for f in data["failures"]} == {"tensorrt"}
    assert (out / "compare.png").is_file() and data["pareto_plot"] is None
    jsonschema = pytest.importorskip("jsonschema")
    from mait_deploy.host.report_schemas import schema_file

    jsonschema.Draft202012Validator(json.loads(schema_file("compare_report").read_text())).validate(data)


@pytest.mark.slow
def test_compare_builds_times_and_reports_every_pair(tiny):
    out = tiny / "out"
    options = CompareOptions(targets=("onnxruntime", "openvino", "litert", "tensorrt"), precisions=("fp32", "int8"),
                             batches=(1, 4), rounds=3, block=3, calibration_count=16)
    report = compare([str(tiny / "tiny_mait"), str(tiny / "tiny_pyramid")], [str(tiny / "tiny_deit.onnx")], out,
                     options)
    data = json.loads((out / "compare.json").read_text())
    assert {(c["target"], c["precision"], c["batch"]) for c in data["cells"]} == {
        (t, p, b) for t in ("onnxruntime", "openvino", "litert") for p in ("fp32", "int8") for b in (1, 4)}
    for cell in data["cells"]:
        expected = {"onnxruntime": 3, "openvino": 3, "litert": 2}[cell["target"]]  # LiteRT: no baseline module
        assert len(cell["rows"]) == expected and cell["rounds"] >= 3
        latency = [row["latency"][f"batch_{cell['batch']}"] for row in cell["rows"]]
        assert all(one["p50_ms"] > 0 and one["throughput"] > 0 for one in latency)
        pairs = {(r["mait"], r["baseline"]) for r in cell["throughput_ratios"]}
        if cell["target"] != "litert":
            assert pairs == {("tiny_mait", "tiny_deit"), ("tiny_pyramid", "tiny_deit")}
            for ratio in cell["throughput_ratios"]:
                assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    why = {(f["model"], f["target"]): f["reason"] for f in data["failures"]}
    assert "ONNX file has no PyTorch module" in why[("tiny_deit", "litert")]
    assert "cannot run tensorrt" in why[("tiny_mait", "tensorrt")]
    # Every bundle is inside the output (checkpoint paths name models by their folder's name).
    assert sorted(p.name for p in tiny.iterdir() if p.name != "quick") == [
        "out", "tiny_deit.onnx", "tiny_deit.onnx.json", "tiny_mait", "tiny_pyramid"]
    assert {m["role"] for m in data["models"]} == {"mait", "baseline"}
    assert all(m["flops"] > 0 for m in data["models"] if m["role"] == "mait")
    assert (out / "compare.png").stat().st_size > 10_000 and "| tiny_deit |" in (out / "compare.md").read_text()
    # Checkpoints and ONNX files have no paper accuracy: no Pareto plot rather than an empty one.
    assert data["pareto_plot"] is None and not (out / "compare_pareto.png").exists()
    assert all(m["paper_top1"] is None for m in data["models"])
    # Every bundle is a real bundle (the baseline's manifest says it is external): `remote profile` can take them.
    manifest = json.loads((out / "bundles" / "tiny_deit-onnxruntime-int8" / "manifest.json").read_text())
    assert manifest["source"]["external"].startswith("onnx ") and manifest["accuracy"] is None
    assert report.cells and not (tiny / "out.partial").exists()
    # A second run refuses to overwrite without --force, and --force replaces only a comparison folder.
    with pytest.raises(MaitDeployError, match="--force"):
        compare([str(tiny / "tiny_mait")], [str(tiny / "tiny_deit.onnx")], out, options)
    with pytest.raises(MaitDeployError, match="not mait-deploy's own comparison"):
        compare([str(tiny / "tiny_mait")], [str(tiny / "tiny_deit.onnx")], tiny / "tiny_pyramid",
                CompareOptions(force=True))


def test_impossible_options_and_bad_baselines_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(UnsupportedOption, match="unknown target"):
        CompareOptions(targets=("tpu",))
    with pytest.raises(UnsupportedOption, match="batch sizes"):
        CompareOptions(batches=(0,))
    with pytest.raises(UnsupportedOption, match="neither a timm model name"):
        compare([str(tiny / "tiny_mait")], ["deit; rm -rf /"], tmp_path / "a", CompareOptions(targets=("onnxruntime",)))
    assert not (tmp_path / "a").exists()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "compare", str(tiny / "tiny_mait"),
                             "--baselines", str(bad), "-o", str(tmp_path / "b"), "--targets", "onnxruntime"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not an ONNX model" in result.stderr and not (tmp_path / "b").exists()
    assert "exporting" not in result.stderr, "a bad baseline file is reported before the MaiT models' exports"
    # A timm name without timm in this Python: one line naming --timm-python (timm does not import here), or
    # with timm installed the export runs; either way nothing is left behind on failure.
    try:
        import timm  # noqa: F401
    except Exception:
        with pytest.raises(UnsupportedOption, match="--timm-python"):
            compare([str(tiny / "tiny_mait")], ["deit_tiny_patch16_224"], tmp_path / "c",
                    CompareOptions(targets=("onnxruntime",)))
        assert not (tmp_path / "c").exists()


def test_the_pareto_frontier_keeps_only_models_nothing_beats_on_accuracy_and_speed():
    from mait_deploy.host.compare.report import frontier_line

    points = [(79.1, 30.0), (81.3, 12.0), (81.0, 14.0), (83.0, 7.0), (82.1, 6.0), (72.2, 25.0), (81.0, 13.0)]
    assert frontier_line(points) == [(79.1, 30.0), (81.0, 14.0), (81.3, 12.0), (83.0, 7.0)]
    assert frontier_line([]) == []


def test_the_pareto_plot_places_models_by_their_papers_accuracy(tmp_path):
    import dataclasses

    from mait_deploy.device.profiling.stats import Latency
    from mait_deploy.host.compare.models import ModelFacts
    from mait_deploy.host.compare.report import markdown, pareto_plot
    from mait_deploy.host.compare.run import CompareCell, CompareReport
    from mait_deploy.results import BundleRun, Status

    models = [ModelFacts("mait_xs_patch16_224", "mait", "variant", 24_550_000, None, 10.6, [3, 224, 224],
                         paper_top1=81.0, paper_source="MaiT"),
              ModelFacts("swin_tiny_patch4_window7_224", "baseline", "timm", 28_300_000, None, 9.0, [3, 224, 224],
                         paper_top1=81.3, paper_source="Swin"),
              ModelFacts("mystery.onnx", "baseline", "onnx file", 1, None, None, [3, 224, 224])]
    cells = [CompareCell(t, "fp32", 1, 3, 3, [BundleRun(t, "fp32", Status.OK, model=m.name, latency={
        "batch_1": Latency(1, 50.0 + i, None, 20.0 - i)}) for i, m in enumerate(models)], [])
             for t in ("onnxruntime", "openvino")]
    report = CompareReport(models=models, cells=cells)
    assert pareto_plot(report, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert "| 81.3% (Swin) |" in markdown(report)
    # What compare.json holds reads back as the same report (strictly: typed_json.decode).
    assert CompareReport.from_dict(report.to_dict()) == report
    alone = dataclasses.replace(report, models=[models[0], models[2]])  # one paper figure: nothing to compare
    assert not pareto_plot(alone, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_a_baselines_torch_export_program_travels_to_build_workers(tmp_path):
    """A timm baseline reaches the PyTorch-converting targets as a torch.export program; the build jobs send the
    model to their workers pickled (host/jobs/job.py), which a module class local to a function cannot be."""
    import io

    torch = pytest.importorskip("torch")
    from mait_deploy.host.compare.models import _load_exported

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    sample = torch.randn(1, 3, 8, 8)
    model(sample)
    torch.export.save(torch.export.export(model.eval(), (sample,)), tmp_path / "model.pt2")
    module, missing = _load_exported(tmp_path / "model.pt2", "tiny", "python")
    assert missing == "" and module is not None
    buffer = io.BytesIO()
    torch.save(module.eval(), buffer)
    again = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert torch.equal(again(sample), model(sample))

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def run_cli(*args, check=False):
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", *args], capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_models_json_lists_variants_with_counted_stats():
    result = run_cli("models", "--json", check=True)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"mait_xxs24_224", "mait_xs24_224", "mait_s24_224", "mait_demo_28"} <= set(rows)
    assert rows["mait_xxs24_224"]["params"] == 11955304
    assert rows["mait_demo_28"]["flops"] > 0


def test_the_shipped_variant_table_is_what_torch_counts():
    # `models` reads the shipped table (no torch import); it must be what the registered variants count today
    # (regenerate with `python -m mait_deploy.host.model.stats`).
    pytest.importorskip("torch")
    from mait_deploy._assets import VARIANT_TABLE
    from mait_deploy._io import read_json
    from mait_deploy.host.model.stats import variant_stats

    assert read_json(VARIANT_TABLE) == json.loads(json.dumps([s.to_dict() for s in variant_stats()]))


def test_targets_come_from_the_registry():
    from mait_deploy import backends

    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["target"] for row in rows] == list(backends.names())
    assert all(row["summary"] and row["device_extra"] for row in rows)


def test_info_of_shipped_checkpoint():
    pytest.importorskip("torch")
    from tests.shipped import default_checkpoint

    result = run_cli("info", "--json", check=True)
    details = json.loads(result.stdout)
    assert details["variant"] == default_checkpoint().name and len(details["labels"]) == 10
    assert details["masked heads per block"] == [list(heads) for heads in default_checkpoint().layer_heads]


@pytest.mark.parametrize("args,message", [
    (("info", "/nonexistent/ckpt"), "checkpoint not found"),
    (("evaluate", "--data", "imagenet"), "data source not found: imagenet"),
])
def test_errors_are_one_line_and_non_zero(args, message):
    result = run_cli(*args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr


def test_debug_shows_traceback():
    result = run_cli("--debug", "info", "/nonexistent/ckpt")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_export_cli_writes_verified_model_and_report(tmp_path):
    out = tmp_path / "m.onnx"
    result = run_cli("export", "-o", str(out), "--json", check=True)
    report = json.loads(result.stdout)
    assert out.is_file() and (tmp_path / "m.onnx.json").is_file()
    assert report["parity"]["top1_agreement"] == 1.0
    again = run_cli("export", "-o", str(out))
    assert again.returncode != 0 and "--force" in again.stderr


@pytest.mark.parametrize("args,message", [
    (("export", "-o", "OUT", "--opset", "12"), "opset 12 is out of range"),
    (("export", "-o", "OUT", "--precision", "int4"), "precision 'int4'"),
    (("export", "/no/such/ckpt", "-o", "OUT"), "checkpoint not found"),
])
def test_export_cli_errors(tmp_path, args, message):
    args = [str(tmp_path / "m.onnx") if a == "OUT" else a for a in args]
    result = run_cli(*args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_compile_verify_predict_evaluate_cli(tmp_path):
    from PIL import Image

    from tests.shipped import golden_arrays

    bundle = tmp_path / "bundle"
    result = run_cli("compile", "--target", "onnxruntime", "--precision", "int8", "--calib-count", "64",
                     "--eval-count", "200", "-o", str(bundle), "--json", check=True)
    assert json.loads(result.stdout)["gate"]["passed"]
    verify = run_cli("verify", str(bundle), "--json", check=True)
    assert json.loads(verify.stdout)["passed"]
    image = tmp_path / "img.png"
    Image.fromarray(golden_arrays(bundle)["images"][0]).save(image)
    predict = run_cli("predict", str(bundle), str(image), "--top", "3", "--json", check=True)
    row = json.loads(predict.stdout)["predictions"][0]
    assert len(row["top"]) == 3 and row["label"] and row["top"][0]["label"] == row["label"]
    # A folder stands for the images in it, in name order; non-images beside them are skipped.
    Image.fromarray(golden_arrays(bundle)["images"][1]).save(tmp_path / "img2.png")
    (tmp_path / "notes.txt").write_text("not an image")
    folder = json.loads(run_cli("predict", str(bundle), str(tmp_path), "--json", check=True).stdout)["predictions"]
    assert [Path(row["image"]).name for row in folder] == ["img.png", "img2.png"]
    assert folder[0]["label"] == row["label"]
    info = json.loads(run_cli("info", str(bundle), "--json", check=True).stdout)
    assert (info["target"], info["precision"], info["accuracy_gate"]["images"]) == ("onnxruntime", "int8", 200)
    assert info["files"] == {"model.onnx": (bundle / "model.onnx").stat().st_size}
    evaluate = run_cli("evaluate", str(bundle), "--count", "100", "--json", check=True)
    assert json.loads(evaluate.stdout)["count"] == 100
    again = run_cli("compile", "-o", str(bundle))  # refused before the export, not after it
    assert again.returncode != 0 and "--force" in again.stderr and "exporting" not in again.stderr


@pytest.mark.parametrize("args,message", [
    (("compile", "-o", "OUT", "--target", "coreml"), "unknown target 'coreml'"),
    (("compile", "-o", "OUT", "--batch", "4"), "--batch is not supported"),
    (("compile", "-o", "OUT", "--precision", "int8", "--calib", "/no/such/dir"), "data source not found"),
    (("deploy", "-o", "OUT", "--eval", "/no/such/dir"), "data source not found"),
    (("compile", "-o", "OUT", "--calib-method", "magic"), "unknown calibration method"),
    (("predict", "/no/bundle", "x.png"), "bundle not found"),
    (("verify", "/no/bundle"), "bundle not found"),
])
def test_compile_and_device_cli_errors(tmp_path, args, message):
    args = [str(tmp_path / "b") if a == "OUT" else a for a in args]
    result = run_cli(*args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
    assert "exporting" not in result.stderr, "a user's mistake is reported before the slow work"


def test_every_command_takes_json():
    """--json on every command: a flag that prints JSON (profile and locality: the file the report goes to)."""
    import typer.main

    from mait_deploy.cli import app

    group = typer.main.get_command(app)
    missing = []

    def walk(command, prefix):
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, prefix + [name])
            elif not any("--json" in param.opts for param in sub.params):
                missing.append(" ".join(prefix + [name]))

    walk(group, [])
    assert not missing, missing


@pytest.mark.parametrize("args", [["pack", "/nonexistent", "-o", "x.tar.gz"], ["unpack", "/nonexistent", "-o", "x"],
                                  ["remote", "setup", "-i", "/nonexistent"], ["import-timm", "/nonexistent", "-o", "x"],
                                  ["compile", "-t", "nope", "-o", "x"], ["verify", "/nonexistent"]])
def test_an_error_with_json_is_a_json_object_too(args, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", *args, "--json"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    error = json.loads(result.stdout)
    assert error["exit_code"] == result.returncode and error["error"] in result.stderr


def test_help_is_readable_at_80_columns():
    """Every command's --help at 80 columns: no line wider, no option name cut, no '%%' escape or '<bool>' shown on
    a flag, and the command list's one-line summaries not cut inside a sentence's abbreviation."""
    import typer.main
    from typer.testing import CliRunner

    from mait_deploy.cli import app

    group = typer.main.get_command(app)
    commands = [[]]

    def walk(command, prefix):
        for name, sub in getattr(command, "commands", {}).items():
            commands.append(prefix + [name])
            walk(sub, prefix + [name])

    walk(group, [])
    runner = CliRunner()
    for command in commands:
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
        assert text.startswith("Usage:"), (command, text)
        wide = [line for line in text.splitlines() if len(line) > 80]
        assert not wide, (command, wide)
        assert "%%" not in text and "<bool>" not in text, (command, text)
        sub = group
        for name in command:
            sub = sub.commands[name]
        for param in sub.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in text, (command, opt)

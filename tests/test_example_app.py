"""The example app runs on the shipped sample images with a bundle made by deploy."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from mait_deploy.host.deploy.pipeline import DeployOptions, deploy

    out = tmp_path_factory.mktemp("deploy")
    report = deploy(None, out, DeployOptions(targets=("onnxruntime",), precisions=("fp32", "int8"), eval_count=500,
                                             profile_batches=(1,), profile_iterations=10))
    return out, report


def test_example_classifies_sample_images(deployed, tmp_path):
    from PIL import Image

    out, report = deployed
    bundle = next(Path(r.bundle) for r in report.rows if r.precision == "int8")
    with np.load(ROOT / "mait_deploy" / "assets" / "fashion_mnist_sample.npz") as data:
        images, labels = data["test_images"][:20], data["test_labels"][:20]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    log = tmp_path / "log.jsonl"
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "classify.py"), str(bundle), "--folder",
                             str(folder), "--log", str(log)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout and "classified 20 image(s)" in result.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 20
    names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    correct = sum(r["label"] == names[labels[int(Path(r["image"]).stem)]] for r in records)
    assert correct >= 12, f"only {correct}/20 correct"


def test_example_refuses_a_tampered_bundle(deployed, tmp_path):
    import shutil

    out, report = deployed
    bundle = tmp_path / "b"
    shutil.copytree(next(Path(r.bundle) for r in report.rows if r.precision == "fp32"), bundle)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[100] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "classify.py"), str(bundle), "--folder",
                             str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "sha256" in result.stderr


def test_deploy_report_and_reuse(deployed):
    from mait_deploy.host.deploy.pipeline import DeployOptions, deploy

    out, report = deployed
    assert {r.status for r in report.rows} == {"ok"}
    for name in ("report.json", "report.md", "report.png", "model.onnx"):
        assert (out / name).is_file()
    data = json.loads((out / "report.json").read_text())
    _valid(data, "deploy_report")  # the report as written, against its generated schema
    recommended = data["recommended"]
    assert recommended["target"] == "onnxruntime" and "side by side" in recommended["reason"]
    race = data["side_by_side"]
    assert set(race["median_ms"]) == {"onnxruntime fp32", "onnxruntime int8"} and race["rounds"] >= 12
    if recommended["precision"] == "int8":  # only where INT8 beat FP32 in the race
        assert "x onnxruntime fp32" in recommended["reason"]
    else:
        assert "not shown faster than onnxruntime fp32" in recommended["not_recommended"]["onnxruntime int8"]
    assert "| onnxruntime | int8 | ok | yes |" in (out / "report.md").read_text()  # yes: a C++ app can link it
    assert all(row.cpp_app for row in report.rows)
    again = deploy(None, out, DeployOptions(targets=("onnxruntime",), precisions=("fp32", "int8"), eval_count=500,
                                            profile_batches=(1,), profile_iterations=10))
    assert again.export["reused"] and all(r.reused for r in again.rows)


def _valid(data, name):
    jsonschema = pytest.importorskip("jsonschema")
    from mait_deploy.host.report_schemas import schema_file

    jsonschema.Draft202012Validator(json.loads(schema_file(name).read_text())).validate(data)


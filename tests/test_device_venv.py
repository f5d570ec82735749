"""A clean virtual environment with only the device install (`pip install .[onnxruntime]`: numpy, Pillow, the CLI
and ONNX Runtime; no torch) runs `mait-deploy verify` and `predict` on a bundle built on the host."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("venv") / "device"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = venv / "bin" / "pip"
    result = subprocess.run([str(pip), "install", "-q", f"{ROOT}[onnxruntime]"], capture_output=True, text=True,
                            timeout=1200)
    if result.returncode != 0:
        pytest.fail(f"device install failed: {result.stderr[-2000:]}")
    return venv


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("torch")
    from mait_deploy.compiler import compile_model
    from mait_deploy.exporters.base import CalibrationOptions, CompileOptions

    folder = tmp_path_factory.mktemp("host") / "int8"
    compile_model(None, "onnxruntime", CompileOptions(precision="int8", calibration=CalibrationOptions(count=64)),
                  folder, eval_count=200)
    return folder


def test_device_install_has_no_torch(device_venv):
    python = device_venv / "bin" / "python"
    result = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('torch'), "
                             "u.find_spec('onnx'))"], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["None", "None"]


def test_verify_and_predict_in_the_device_venv(device_venv, bundle, tmp_path):
    from PIL import Image
    import numpy as np

    image = tmp_path / "item.png"
    Image.fromarray(np.load(bundle / "golden.npz")["images"][0]).save(image)
    cli = device_venv / "bin" / "mait-deploy"
    verify = subprocess.run([str(cli), "verify", str(bundle), "--json"], capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["passed"]
    predict = subprocess.run([str(cli), "predict", str(bundle), str(image), "--json"], capture_output=True,
                             text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert json.loads(predict.stdout)["predictions"][0]["label"]

"""A clean virtual environment with only a device install, as docs/usage.md gives it (a wheel built from this
checkout, `pip install "mait_deploy-...whl[onnxruntime]"` or `[litert]`: numpy, Pillow, the CLI and one runtime;
no torch), runs `mait-deploy verify`, `predict` and `profile` on a bundle built on the host."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shipped import golden_arrays

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnxruntime", "litert")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The docs' host step: `python -m pip wheel --no-deps -w dist .` (mait-deploy is not on PyPI)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)], check=True,
                   timeout=600, capture_output=True)
    (built,) = dist.glob("mait_deploy-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module", params=RUNTIMES)
def device(request, wheel, tmp_path_factory, shipped_bundles):
    extra = request.param
    venv = tmp_path_factory.mktemp(f"venv-{extra}") / "device"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[{extra}]"], capture_output=True,
                            text=True, timeout=1200)
    if result.returncode != 0:
        pytest.fail(f"device install of [{extra}] failed: {result.stderr[-2000:]}")
    return venv, shipped_bundles[extra, "int8"].folder


def test_device_install_has_no_torch(device):
    venv, _ = device
    result = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; "
                             "print(u.find_spec('torch'), u.find_spec('onnx'))"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["None", "None"]


def test_verify_predict_profile_in_the_device_venv(device, tmp_path):
    from PIL import Image

    venv, bundle = device
    image = tmp_path / "item.png"
    Image.fromarray(golden_arrays(bundle)["images"][0]).save(image)
    cli = str(venv / "bin" / "mait-deploy")
    verify = subprocess.run([cli, "verify", str(bundle), "--json"], capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["passed"]
    predict = subprocess.run([cli, "predict", str(bundle), str(image), "--json"], capture_output=True, text=True,
                             timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert json.loads(predict.stdout)["predictions"][0]["label"]
    report = tmp_path / "profile.json"
    profile = subprocess.run([cli, "profile", str(bundle), "--iterations", "20", "--json", str(report)],
                             capture_output=True, text=True, timeout=300)
    assert profile.returncode == 0, profile.stderr
    assert json.loads(report.read_text())["reports"][0]["results"][0]["model"]["count"] == 20

"""The device side (runtimes, bundle, profiling, the CLI's device commands) must run with torch, onnx and onnxsim
unimportable: proved in a fresh subprocess whose import system refuses them."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import BLOCKER
from tests.shipped import golden_arrays

pytest.importorskip("onnxruntime")



@pytest.fixture(scope="module")
def bundle(shipped_bundles):
    return shipped_bundles["onnxruntime", "int8"].folder


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_blocker_really_blocks():
    result = run_blocked("import torch")
    assert result.returncode != 0 and "blocked on the device" in result.stderr


def test_device_modules_import_and_run_without_torch(bundle, tmp_path):
    from PIL import Image

    golden = golden_arrays(bundle)
    image = tmp_path / "shirt.png"
    Image.fromarray(golden["images"][0]).save(image)
    result = run_blocked(f'''
        import json, sys
        import importlib, pkgutil, mait_deploy.device, mait_deploy.backends
        for module in pkgutil.walk_packages(mait_deploy.device.__path__, "mait_deploy.device."):
            importlib.import_module(module.name)
        for name in mait_deploy.backends.names():  # every backend's declaration and device side
            mait_deploy.device.runner.runner_class(name)
        import mait_deploy.device.profiling.measure, mait_deploy.device.profiling.report, mait_deploy.device.profiling.state
        from mait_deploy.device.profiling.measure import ProfileOptions, profile
        from mait_deploy.device.bundle import load_bundle, verify_bundle
        from mait_deploy.device.accuracy import evaluate_bundle
        report = verify_bundle({str(bundle)!r})
        with load_bundle({str(bundle)!r}) as runner:
            prediction = runner.predict([{str(image)!r}])
        accuracy = evaluate_bundle({str(bundle)!r}, count=100)
        timing = profile({str(bundle)!r}, ProfileOptions(batches=(1,), warmup=1, iterations=5))
        assert timing.error is None
        from mait_deploy.device.archive import pack_bundle, unpack_bundle
        archive = pack_bundle({str(bundle)!r}, {str(tmp_path / "b.tar.gz")!r})
        assert verify_bundle(unpack_bundle(archive, {str(tmp_path / "unpacked")!r})).passed
        assert "torch" not in sys.modules and "onnx" not in sys.modules
        print(json.dumps({{"passed": report.passed, "label": prediction.labels[0], "top1": accuracy.top1}}))
    ''')
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["passed"] and out["label"] and out["top1"] > 0.5


def test_device_cli_commands_without_torch(bundle):
    for args in (["verify", str(bundle)], ["predict", str(bundle), "--json",
                                           str(bundle.parent / "x.png")]):
        if args[0] == "predict":
            from PIL import Image

            Image.fromarray(golden_arrays(bundle)["images"][1]).save(args[-1])
        result = run_blocked(f'''
            import sys
            from mait_deploy.cli import app
            sys.argv = ["mait-deploy", *{args!r}]
            app()
        ''')
        assert result.returncode == 0, result.stderr
        assert "torch" not in result.stderr


@pytest.mark.parametrize("args", [["targets"], ["targets", "--json"], ["models"], ["--help"], ["deploy", "--help"]])
def test_info_commands_load_no_torch_and_no_runtime(args):
    """A newcomer's first commands stay fast: listing targets and models, and help, import neither torch nor any
    runtime or converter (checked on the modules loaded, not on a timing)."""
    code = (f"import sys; sys.argv = ['mait-deploy', *{args!r}]\n"
            "from mait_deploy.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'onnx', 'onnxruntime', 'openvino', 'ai_edge_litert', 'executorch', 'nncf', "
            "'litert_torch', 'tensorflow', 'jax', 'matplotlib')\n"
            "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
            "print('LOADED', loaded, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in done.stderr, done.stderr[-2000:]

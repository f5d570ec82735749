"""Without --verbose, stderr holds only mait-deploy's own lines: its progress ("[  1.2 s] ..."), notes and
warnings; none of the converters' or runtimes' (NNCF's bars, ai-edge-quantizer's tqdm bars in LiteRT's FP16 build, TensorFlow/absl, LiteRT's "Created TensorFlow Lite
XNNPACK delegate", ExecuTorch's cpuinfo and thread-pool lines), which are silenced at the file-descriptor level
where a library offers no switch."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("executorch")
pytest.importorskip("nncf")

pytestmark = pytest.mark.slow
OWN_LINE = re.compile(r"^(\[\s*\d+\.\d s\] |note: |warning: )")


def _run(*args: str, verbose: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mait_deploy.cli", *(["--verbose"] if verbose else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _foreign(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not OWN_LINE.match(line)]


def test_deploy_compile_verify_and_predict_print_only_their_own_lines(tmp_path):
    from PIL import Image

    from tests.shipped import golden_arrays

    out = tmp_path / "out"
    # FP16 and INT8 run every converter FP32 does and their own (ai-edge-quantizer, NNCF).
    deployed = _run("deploy", "--targets", "litert,openvino", "--precisions", "fp16,int8", "-o", str(out),
                    "--eval-count", "300", "--profile-batches", "1", "--iterations", "5")
    assert not _foreign(deployed.stderr), _foreign(deployed.stderr)
    executorch = tmp_path / "executorch-fp32"
    compiled = _run("compile", "-t", "executorch", "--precision", "fp32", "--eval-count", "200", "-o", str(executorch))
    assert not _foreign(compiled.stderr), _foreign(compiled.stderr)
    image = tmp_path / "shirt.png"
    Image.fromarray(golden_arrays(executorch)["images"][0]).save(image)
    for bundle in (out / "bundles" / "litert-int8", out / "bundles" / "openvino-int8", executorch):
        for args in (("verify", str(bundle)), ("predict", str(bundle), str(image))):
            done = _run(*args)
            assert not _foreign(done.stderr), (args, _foreign(done.stderr))
    # --verbose lets them through: the check above is not passing on a runtime that prints nothing.
    loud = _run("predict", str(out / "bundles" / "litert-int8"), str(image), verbose=True)
    assert any("XNNPACK" in line for line in _foreign(loud.stderr)), loud.stderr

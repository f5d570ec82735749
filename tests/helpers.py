"""Helpers several test modules share (fixtures are in the conftest.py files; facts about the shipped checkpoint in
shipped.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from mait_deploy.config import PreprocessConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "mait_deploy" / "assets" / "fashion_mnist_sample.npz"
SHIPPED = ROOT / "mait_deploy" / "assets" / "mait_demo_28.fmnist"

# A valid manifest of the shipped model's shape (hashes made up), for the parser's property and fuzz tests.
GREY = PreprocessConfig(input_size=28, channels=1, mean=(0.286,), std=(0.353,))
VALID = {
    "schema_version": 1, "created": "2026-11-25T00:00:00+00:00",
    "model": {"num_classes": 10, "preprocess": GREY.to_dict(), "img_size": 28, "patch_size": 4, "in_chans": 1},
    "target": "onnxruntime", "precision": "fp32",
    "artifact": {"path": "model.onnx", "sha256": "0" * 64, "bytes": 1},
    "inputs": [{"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}],
    "batch": "dynamic", "runtime": {"name": "onnxruntime"},
    "golden": {"file": "golden.bin", "sha256": "0" * 64, "count": 8,
               "tolerance": {"max_abs_diff": 1e-3, "min_top1_agreement": 1.0}, "kind": "images"},
}

# Prepended to a subprocess's script: its import system refuses what a device never has.
BLOCKER = textwrap.dedent('''
    import importlib.abc, sys
    BLOCKED = {"torch", "onnx", "onnxsim", "onnxscript", "torchao", "litert_torch", "nncf", "safetensors"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked on the device: {name}")
            return None
    sys.meta_path.insert(0, Block())
''')


def cli(*args, timeout=600, env=None) -> subprocess.CompletedProcess:
    """``mait-deploy ARGS`` in a subprocess, its output captured."""
    return subprocess.run([sys.executable, "-m", "mait_deploy.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_clean_failure(result, message, folder) -> None:
    """A non-zero exit with one error line naming ``message``, no traceback, no temporary left in ``folder``."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("INFO:", "W1125"))]
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert message.lower() in error_lines[0].lower(), result.stderr
    assert "Traceback" not in result.stderr
    leftovers = [p.name for p in Path(folder).iterdir() if p.name.startswith(".mait-tmp")]
    assert not leftovers, leftovers


def one_error_line(stderr: str) -> bool:
    """The failure is one line; progress lines ("[  1.2 s] step", off a terminal) may come before it."""
    lines = [line for line in stderr.strip().splitlines() if not re.match(r"^\[\s*[\d.]+ s\] ", line)]
    return len(lines) == 1 and lines[0].startswith("error: ")


def user_folder(root: Path, per_class: int = 4) -> Path:
    """RGB 40x40 images in class sub-folders named by index (a label with '/' cannot name a folder)."""
    from PIL import Image

    with np.load(SAMPLE) as data:
        images, labels = data["test_images"], data["test_labels"]
    for cls in range(10):
        (root / str(cls)).mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(labels == cls)[:per_class]):
            Image.fromarray(images[i]).convert("RGB").resize((40, 40)).save(root / str(cls) / f"{n}.png")
    return root

"""Hostile and careless input on the device side, as the CLI gets it: each case one `error:` line and exit 1 (2 for
usage), no traceback, no hang (every run has a timeout), bounded memory; and signed bundles (device/signing.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.shipped import edited_copy

MEMORY_LIMIT_MB = 512


# Linux carries a process's peak RSS across fork and exec (a child of pytest starts at pytest's hundreds of MB):
# a small launcher starts the command and reads its own child's peak from wait4, which is the command's alone.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(child.returncode)
"""


def cli(*args: object, env: dict | None = None, timeout: int = 240) -> tuple[subprocess.CompletedProcess, float]:
    """`mait-deploy ARGS` in a child process; returns it and the command's own peak RSS in MB."""
    with tempfile.NamedTemporaryFile("r") as peak:
        command = [sys.executable, "-c", LAUNCHER, peak.name, sys.executable, "-m", "mait_deploy.cli",
                   *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        text = peak.read()
    return done, int(text) / 1024 if text else float("nan")


def assert_one_line(done: subprocess.CompletedProcess, message: str, code: int = 1) -> None:
    """One `error:` line, the last on stderr (progress lines may come before it), no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and message in lines[-1] and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_manifest_naming_code_or_an_undeclared_option_is_refused(ort_fp32_bundle, tmp_path):
    """Runtime options come from the runner's declarations (the schema is generated from them): a manifest cannot
    name a library to load, nor an option or value the native runner would read differently."""
    cases = {
        "native_library": lambda d: d["runtime"]["options"].update(native_library=str(tmp_path / "evil.so")),
        "unknown": lambda d: d["runtime"]["options"].update(providers_path="/tmp"),
        "wrong type": lambda d: d["runtime"]["options"].update(simulate_int8="yes"),
    }
    for name, change in cases.items():
        bundle = edited_copy(ort_fp32_bundle, tmp_path / name.replace(" ", "-"), change)
        done, _ = cli("verify", bundle)
        assert_one_line(done, "runtime.options")
    # The same declarations for OpenVINO: values the Python runner refuses are refused in the manifest.
    from mait_deploy.device.manifest_schema import manifest_schema

    rules = {rule["if"]["properties"]["runtime"]["properties"]["name"]["const"]:
             rule["then"]["properties"]["runtime"]["properties"]["options"] for rule in manifest_schema()["allOf"]}
    assert rules["openvino"]["properties"]["inference_precision"]["enum"] == ["f32", "bf16", "f16"]
    assert rules["openvino"]["properties"]["performance_hint"]["enum"] == ["LATENCY", "THROUGHPUT",
                                                                           "CUMULATIVE_THROUGHPUT"]
    assert rules["executorch"]["properties"] == {} and rules["executorch"]["additionalProperties"] is False


def test_an_unrelated_library_is_refused_before_any_of_its_functions_runs(tmp_path):
    from mait_deploy.device.native_library import load_library
    from mait_deploy.errors import BundleError

    libz = next((Path(p) for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                                   "/lib/aarch64-linux-gnu/libz.so.1") if Path(p).exists()), None)
    if libz is None:
        pytest.skip("no libz.so.1 here")
    with pytest.raises(BundleError, match="is not mait-deploy's native runner library"):
        load_library(libz)
    with pytest.raises(BundleError, match="does not exist"):
        load_library(tmp_path / "absent.so")


@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-images")
    # 31 KB of PNG that decodes to 16 MP and would resize to 28 x 448,000,000 before the crop.
    Image.fromarray(np.full((16_000_000, 1), 128, np.uint8)).save(folder / "tall.png", optimize=True)
    plain = Image.fromarray(np.full((28, 28), 100, np.uint8))
    plain.save(folder / "a\nerror: forged.png")
    plain.save(os.fsdecode(b"%s/bad\xff.png" % os.fsencode(folder)))
    os.mkfifo(folder / "fifo.png")
    return folder


def test_images_that_would_take_gigabytes_or_hang_are_one_line(ort_fp32_bundle, hostile_images):
    tall = hostile_images / "tall.png"
    assert tall.stat().st_size < 64 << 10
    done, peak_mb = cli("predict", ort_fp32_bundle, tall)
    assert_one_line(done, "tall.png: a 1x16000000 image resizes to 28x448000000 before the centre crop")
    assert peak_mb < MEMORY_LIMIT_MB, peak_mb
    assert_one_line(cli("predict", ort_fp32_bundle, hostile_images / "fifo.png", timeout=60)[0],
                    "fifo.png is not a regular file")
    # A folder stands for its image files (the FIFO is skipped, not opened): the tall one still fails in one line.
    done, peak_mb = cli("predict", ort_fp32_bundle, hostile_images)
    assert_one_line(done, "tall.png: a 1x16000000 image resizes to 28x448000000 before the centre crop")
    assert peak_mb < MEMORY_LIMIT_MB, peak_mb


def test_names_cannot_forge_output_lines_and_json_stays_valid(ort_fp32_bundle, hostile_images):
    names = [hostile_images / "a\nerror: forged.png", Path(os.fsdecode(b"%s/bad\xff.png" % os.fsencode(hostile_images)))]
    done, _ = cli("predict", ort_fp32_bundle, *names, "--json")
    assert done.returncode == 0, done.stderr
    images = [row["image"] for row in json.loads(done.stdout)["predictions"]]
    assert [Path(name).name for name in images] == ["a\\x0aerror: forged.png", "bad\\xff.png"]
    done, _ = cli("predict", ort_fp32_bundle, *names)
    assert done.returncode == 0 and not any(line.startswith("error") for line in done.stdout.splitlines())
    # Labels are bounded by the schema: no control characters.
    bundle = edited_copy(ort_fp32_bundle, hostile_images.parent / "label-newline",
                         lambda d: d["model"]["labels"].__setitem__(0, "T-shirt\nerror: forged"))
    assert_one_line(cli("verify", bundle)[0], "model.labels.0")


@pytest.mark.parametrize("args, message, code", [
    (("--threads", "100000"), "Invalid value for '--threads'", 2),
    (("--threads", "4294967297"), "Invalid value for '--threads'", 2),
    (("--threads", "abc", "--json"), "Invalid value for '--threads'", 2),
])
def test_usage_errors_are_one_line_and_json_under_json(ort_fp32_bundle, args, message, code):
    done, _ = cli("verify", ort_fp32_bundle, *args)
    assert_one_line(done, message, code)
    if "--json" in args:
        assert json.loads(done.stdout) == {"error": done.stderr.strip()[len("error: "):], "exit_code": 2}


def test_profile_bounds_its_batch_and_iterations(ort_fp32_bundle):
    assert_one_line(cli("profile", ort_fp32_bundle, "--batch", "100000000", "--layers")[0], "the limit is 1024 MiB", 2)
    assert_one_line(cli("profile", ort_fp32_bundle, "--iterations", "0")[0], "'--iterations'", 2)


def test_malformed_manifests_are_one_line(ort_fp32_bundle, tmp_path):
    def float_offset(data):
        data["golden"]["arrays"][1]["offset"] = float(data["golden"]["arrays"][1]["offset"])

    def deep_build(data):
        data["build"] = {"x": json.loads("[" * 900 + "]" * 900)}

    cases = {
        "float offset": (float_offset, "golden.arrays.1.offset"),
        "float shape": (lambda d: d["golden"]["arrays"][0].update(shape=[8.0, 1, 28, 28]), "golden.arrays.0.shape"),
        "deep build": (deep_build, "nested deeper than 32 levels"),
        "tiny crop_pct": (lambda d: d["model"]["preprocess"].update(crop_pct=1e-300), "crop_pct"),
        "recorded_on": (lambda d: d["golden"].update(recorded_on="x86"), "golden.recorded_on"),
        "input name": (lambda d: d["inputs"][0].update(name="pixels"), "the manifest's input is 'pixels'"),
        "flat images": (lambda d: d["golden"]["arrays"][0].update(shape=[8, 784]), "golden array images must be"),
    }
    for name, (change, message) in cases.items():
        bundle = edited_copy(ort_fp32_bundle, tmp_path / name.replace(" ", "-"), change)
        assert_one_line(cli("verify", bundle)[0], message)


def test_a_corrupt_program_with_a_matching_hash_is_one_line(ort_fp32_bundle, tmp_path):
    """Rehashed corrupt artifacts pass the hash check and reach the runtime: its refusal is one line naming the
    bundle, in verify, predict and profile --layers; flipped weights still load, and verify's golden set says so."""
    artifact = (ort_fp32_bundle / "model.onnx").read_bytes()
    flipped = bytearray(artifact)
    for index in range(len(flipped) // 3, len(flipped) // 3 + 64):
        flipped[index] ^= 0x5A
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    for name, data in (("random", os.urandom(4096)), ("cut", artifact[:1000])):
        bundle = edited_copy(ort_fp32_bundle, tmp_path / name, artifact=data)
        for args in (("verify", bundle), ("predict", bundle, image), ("profile", bundle, "--layers")):
            assert_one_line(cli(*args)[0], f"onnxruntime cannot load {bundle}/model.onnx")
    bundle = edited_copy(ort_fp32_bundle, tmp_path / "flipped", artifact=bytes(flipped))
    assert_one_line(cli("verify", bundle)[0], "golden outputs do not match on this device")


def test_signed_bundles_run_only_with_the_right_key_and_unchanged(ort_fp32_bundle, tmp_path):
    pytest.importorskip("cryptography")
    done, _ = cli("keygen", "-o", tmp_path / "builder")
    assert done.returncode == 0, done.stderr
    cli("keygen", "-o", tmp_path / "other")
    assert oct((tmp_path / "builder").stat().st_mode & 0o777) == "0o600"
    key, trusted, other = tmp_path / "builder", tmp_path / "builder.pub", tmp_path / "other.pub"
    bundle = tmp_path / "signed"
    shutil.copytree(ort_fp32_bundle, bundle)
    assert cli("sign", bundle, "--key", key)[0].returncode == 0
    done, _ = cli("verify", bundle, "--trust", trusted)
    assert done.returncode == 0 and done.stdout.startswith("PASS"), done.stderr
    # The device setting does the same as the flag; the wrong key, no signature, or any change is refused.
    assert cli("verify", bundle, env={"MAIT_TRUSTED_KEY": str(trusted)})[0].returncode == 0
    assert_one_line(cli("verify", bundle, "--trust", other)[0], "is not a valid signature by the trusted key")
    assert_one_line(cli("verify", ort_fp32_bundle, "--trust", trusted)[0], "is not signed")
    changed = tmp_path / "changed"
    shutil.copytree(bundle, changed)
    manifest = (changed / "manifest.json").read_bytes()
    (changed / "manifest.json").write_bytes(manifest.replace(b'"fp32"', b'"fp16"', 1))
    assert_one_line(cli("verify", changed, "--trust", trusted)[0], "differs from the manifest its signature covers")
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    golden = bytearray((tampered / "golden.bin").read_bytes())
    golden[-1] ^= 1
    (tampered / "golden.bin").write_bytes(bytes(golden))
    assert_one_line(cli("verify", tampered, "--trust", trusted)[0], "golden.bin does not match its sha256")
    resigned = tmp_path / "resigned"  # changed, then signed again by someone else's key
    shutil.copytree(changed, resigned)
    assert cli("sign", resigned, "--key", tmp_path / "other")[0].returncode == 0
    assert_one_line(cli("verify", resigned, "--trust", trusted)[0], "is not a valid signature by the trusted key")
    assert_one_line(cli("verify", bundle, "--trust", key)[0], "is not a PEM public key", 2)
    # The signature travels with the bundle.
    archive = tmp_path / "signed.tar.gz"
    assert cli("pack", bundle, "-o", archive)[0].returncode == 0
    assert cli("unpack", archive, "-o", tmp_path / "unpacked")[0].returncode == 0
    assert cli("verify", tmp_path / "unpacked", "--trust", trusted)[0].returncode == 0


def test_a_runtime_that_dies_on_a_corrupt_program_is_one_line(ort_fp32_bundle, tmp_path):
    """ExecuTorch's Python runtime aborts (std::terminate in its bindings) on some corrupt programs whose hashes
    match: the load runs in a child process first, and its death by a signal is one line naming the program."""
    pytest.importorskip("executorch.runtime")
    import random

    program = random.Random(0).randbytes(4096)

    def as_executorch(data):
        data.update(target="executorch", batch=1)
        data["artifact"]["path"] = "model.pte"
        data["runtime"].update(name="executorch", extra="executorch-device", options={})
        data["inputs"][0]["shape"][0] = 1
        data["outputs"][0]["shape"][0] = 1

    bundle = tmp_path / "executorch"
    shutil.copytree(ort_fp32_bundle, bundle)
    (bundle / "model.onnx").unlink()
    (bundle / "model.pte").write_bytes(program)
    data = json.loads((bundle / "manifest.json").read_text())
    as_executorch(data)
    data["artifact"].update(sha256=hashlib.sha256(program).hexdigest(), bytes=len(program))
    (bundle / "manifest.json").write_text(json.dumps(data))
    done, _ = cli("verify", bundle)
    assert_one_line(done, f"executorch crashed (SIGABRT) loading {bundle}/model.pte: the program is corrupt")


def test_runtime_lines_on_file_descriptor_2_are_silenced_only_when_asked():
    code = ("import os; from mait_deploy._runtime_logs import runtime_stderr_silenced\n"
            "with runtime_stderr_silenced():\n    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate\\n')\n"
            "os.write(2, b'after\\n')")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "MAIT_QUIET_RUNTIMES": "1"})
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "MAIT_QUIET_RUNTIMES"})
    assert quiet.stderr == "after\n" and loud.stderr.startswith("INFO: Created"), (quiet.stderr, loud.stderr)


def test_both_sides_declare_the_same_bounds():
    """The thread range and the image pixel budget are declared once per side; the native header must say what the
    Python side says."""
    import re

    from mait_deploy.device.preprocess import MAX_IMAGE_PIXELS
    from mait_deploy.options import MAX_THREADS

    header = (Path(__file__).parents[2] / "mait_deploy" / "native" / "include" / "mait" / "mait.hpp").read_text()
    assert int(re.search(r"kMaxThreads = (\d+);", header).group(1)) == MAX_THREADS
    assert int(re.search(r"kMaxImagePixels = ([\d']+);", header).group(1).replace("'", "")) == MAX_IMAGE_PIXELS

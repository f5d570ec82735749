"""The typed bundle contract: a bundle gated on the user's own data (an image folder, a float .npz) verifies like
one gated on the built-in set; schema-1 bundles still load; batch limits are enforced by the runner."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy._io import sha256_file
from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.device.data.builtin import load_sample
from mait_deploy.device.manifest import MANIFEST_FILE, read_manifest
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CompileOptions
from tests.shipped import golden_arrays, shift_golden_logits

LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _image_folder(root, count_per_class=6):
    """The user's own labelled images: RGB, 40x40 (not the model's 28x28 grey), one sub-folder per class (by index:
    a label with '/' cannot be a folder name)."""
    from PIL import Image

    sample = load_sample("test")
    for index in range(len(LABELS)):
        folder = root / str(index)
        folder.mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(sample.labels == index)[:count_per_class]):
            Image.fromarray(sample.images[i]).convert("RGB").resize((40, 40)).save(folder / f"{n}.png")
    return root


def _float_npz(path, count=60):
    sample = load_sample("test")
    np.savez(path, images=sample.images[-count:].astype(np.float32) / 255.0, labels=sample.labels[-count:])
    return path


@pytest.mark.parametrize("source", ["folder", "float-npz", "builtin"])
def test_a_bundle_gated_on_any_data_source_verifies(shipped_onnx, tmp_path, source):
    data = {"folder": lambda: _image_folder(tmp_path / "images"), "float-npz": lambda: _float_npz(tmp_path / "e.npz"),
            "builtin": lambda: "fashion-mnist"}[source]()
    bundle = tmp_path / "bundle"
    result = compile_model(shipped_onnx, "onnxruntime", CompileOptions(precision="fp32"), bundle, evaluation=data,
                           eval_count=None if source != "builtin" else 60)
    manifest = read_manifest(bundle)
    assert manifest.golden.kind == ("images" if source == "builtin" else "inputs")
    assert result.gate.passed and manifest.accuracy.count == 60
    report = verify_bundle(bundle)
    assert report.passed and report.golden_kind == manifest.golden.kind and report.max_abs_diff <= 1e-3
    if source == "folder":  # the user's own files also classify through the device path
        with load_bundle(bundle) as runner:
            prediction = runner.predict(sorted(str(p) for p in (tmp_path / "images").rglob("*.png"))[:4])
        assert len(prediction.labels) == 4


def test_schema_1_bundles_still_load_and_verify(ort_fp32_bundle, tmp_path):
    import shutil

    old = tmp_path / "v1"
    shutil.copytree(ort_fp32_bundle, old)
    data = json.loads((old / MANIFEST_FILE).read_text())
    data["schema_version"] = 1
    del data["golden"]["kind"]  # schema 1 had no kind: it is read from the golden file
    golden = golden_arrays(old)  # schema 1-2 golden sets are .npz files (schema 3: golden.bin, laid out)
    (old / "golden.bin").unlink()
    np.savez_compressed(old / "golden.npz", **golden)
    del data["golden"]["arrays"]
    data["golden"].update(file="golden.npz", sha256=sha256_file(old / "golden.npz"))
    for key in ("runtime", "host_isa"):  # schema-1 gate results had neither
        data["accuracy"].pop(key)
    (old / MANIFEST_FILE).write_text(json.dumps(data))
    manifest = read_manifest(old)
    assert manifest.schema_version == 1 and manifest.golden.kind is None
    assert verify_bundle(old).golden_kind == "images"


def test_a_batch_above_the_limit_is_chunked_by_run_and_refused_by_a_timed_call(ort_fp32_bundle):
    from mait_deploy.device.profiling.measure import ProfileOptions, profile

    x = np.random.default_rng(0).standard_normal((10, 1, 28, 28)).astype(np.float32)
    with load_bundle(ort_fp32_bundle, RunnerOptions(max_batch=4)) as runner:
        assert runner.batch_limit == 4
        assert runner.run(x).shape == (10, 10)  # three calls of 4, 4 and 2
        with pytest.raises(UnsupportedOption, match="batch 8 is above this bundle's limit of 4"):
            runner.timed_call(x[:8])
    report = profile(load_bundle(ort_fp32_bundle, RunnerOptions(max_batch=4)),
                     ProfileOptions(batches=(1, 8), warmup=1, iterations=3))
    assert report.results[0].model is not None
    assert "batch 8 is above this bundle's limit of 4" in report.results[1].error


def test_the_tensorrt_runner_knows_its_profile_limit_before_any_gpu_is_touched(ort_fp32_bundle, tmp_path):
    """profile --batch 64 on a bundle with max_batch=32 is refused in one line (it used to write 64 samples into
    a device buffer sized for 32)."""
    from mait_deploy.device.runner import runner_class

    manifest = read_manifest(ort_fp32_bundle)
    manifest.runtime.options = {"plan": {"max_batch": 32}}
    runner = runner_class("tensorrt")(ort_fp32_bundle, manifest, RunnerOptions())
    assert runner.batch_limit == 32
    with pytest.raises(UnsupportedOption, match="batch 64 is above this bundle's limit of 32"):
        runner.timed_call(np.zeros((64, 1, 28, 28), np.float32))
    assert not runner.is_active


def test_verify_says_when_an_int8_bundle_runs_on_another_int8_class_than_its_gate(ort_fp32_bundle):
    from mait_deploy.device.bundle import isa_difference
    from mait_deploy.device.profiling.isa import cpu_isa, int8_class

    manifest = read_manifest(ort_fp32_bundle)
    here = cpu_isa()
    assert isa_difference(manifest, here) is None  # FP32: nothing int8 to differ
    manifest.precision = "int8"
    manifest.accuracy.host_isa = {**here}
    assert isa_difference(manifest, here) is None  # gated on this very CPU class
    manifest.accuracy.host_isa = {"int8_class": "x86-avx2", "model": "AMD EPYC 7763"}
    device = {**here, "int8_class": "x86-vnni"}
    note = isa_difference(manifest, device)
    assert "gated on x86-avx2 (AMD EPYC 7763) and runs here on x86-vnni" in note
    assert int8_class("aarch64", {"asimd", "asimddp"}) == "arm64-dotprod"
    assert int8_class("x86_64", {"avx2", "avx512bw"}) == "x86-avx512"
    assert int8_class("x86_64", {"avx2", "avx512_vnni"}) == "x86-vnni"


def test_verify_says_what_the_golden_tolerance_was_calibrated_on(ort_fp32_bundle, tmp_path):
    import shutil

    from mait_deploy.device.golden import TOLERANCE_BASIS
    from mait_deploy.device.profiling.isa import cpu_isa
    from mait_deploy.errors import ValidationError

    manifest = read_manifest(ort_fp32_bundle)
    recorded = manifest.golden.recorded_on
    assert recorded["int8_class"] == cpu_isa()["int8_class"] and recorded["cpu"] == cpu_isa()["model"]
    assert recorded["runtime"]["runtime"] == "onnxruntime" and recorded["runtime"]["version"]
    assert manifest.golden.tolerance_basis == TOLERANCE_BASIS["fp32"]
    report = verify_bundle(ort_fp32_bundle)
    assert report.golden_recorded_on == recorded and report.tolerance_basis == TOLERANCE_BASIS["fp32"]
    assert report.calibration().startswith(f"golden outputs recorded on {recorded['int8_class']} (")
    assert f"with onnxruntime {recorded['runtime']['version']}; this device: " in report.calibration()

    # A device whose outputs leave the tolerance is told what the golden outputs were recorded on.
    strict = tmp_path / "strict"
    shutil.copytree(ort_fp32_bundle, strict)
    shift_golden_logits(strict, 1.0)  # golden logits this device cannot meet, hashed as recorded
    data = json.loads((strict / MANIFEST_FILE).read_text())
    with pytest.raises(ValidationError, match=r"do not match on this device: .*golden outputs recorded on "
                                              rf"{recorded['int8_class']} .* with onnxruntime"):
        verify_bundle(strict)

    # Bundles built before the calibration was recorded still verify and say so.
    data["golden"]["tolerance"]["max_abs_diff"] = 2.0
    for key in ("recorded_on", "tolerance_basis"):
        del data["golden"][key]
    (strict / MANIFEST_FILE).write_text(json.dumps(data))
    assert "not described in this older bundle" in verify_bundle(strict).calibration()
    data["golden"]["recorded_on"] = "x86"
    (strict / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(Exception, match="golden.recorded_on: 'x86' is not an object or null"):
        read_manifest(strict)


def test_the_uncompressed_golden_file_is_read_only_as_its_manifest_lays_it_out(ort_fp32_bundle, tmp_path):
    from mait_deploy.errors import BundleError

    def variant(name, change):
        folder = tmp_path / name
        shutil.copytree(ort_fp32_bundle, folder)
        data = json.loads((folder / MANIFEST_FILE).read_text())
        change(folder, data)
        (folder / MANIFEST_FILE).write_text(json.dumps(data))
        return folder

    def gap(folder, data):
        data["golden"]["arrays"][2]["offset"] += 4

    def truncated(folder, data):
        path = folder / "golden.bin"
        path.write_bytes(path.read_bytes()[:-4])
        data["golden"]["sha256"] = sha256_file(path)

    def schema_2(folder, data):
        data["schema_version"] = 2

    with pytest.raises(BundleError, match="packed back to back, so it must start at"):
        read_manifest(variant("gap", gap))
    with pytest.raises(BundleError, match="golden.arrays lays out schema 3's .* schema 2 has none"):
        read_manifest(variant("schema_2", schema_2))
    with pytest.raises(BundleError, match=r"golden file is \d+ bytes; its manifest lays out \d+"):
        verify_bundle(variant("truncated", truncated))
    manifest = read_manifest(ort_fp32_bundle)
    assert [a.name for a in manifest.golden.arrays] == ["images", "logits", "reference_logits"]
    assert (ort_fp32_bundle / "golden.bin").stat().st_size == sum(a.nbytes for a in manifest.golden.arrays)

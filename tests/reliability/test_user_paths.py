"""Off the demo path, through the CLI: --force never destroys the user's files, the user's own data makes bundles
that verify, results are never stale, nothing is written beside the input, small hostile inputs stay small,
bundles cannot be escaped, dependencies' errors are one line, and one failure keeps the good results."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from PIL import Image

from tests.helpers import SAMPLE, SHIPPED, assert_clean_failure, cli, user_folder
from tests.shipped import default_checkpoint

PRLIMIT = shutil.which("prlimit")


def memory_bounded(limit_gb: float, *args, timeout=600):
    """Run the CLI with its address space capped (prlimit --as): a command that would allocate gigabytes dies."""
    if PRLIMIT is None:
        pytest.skip("prlimit (util-linux) is not installed")
    command = [PRLIMIT, f"--as={int(limit_gb * 2**30)}", sys.executable, "-m", "mait_deploy.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bundle(ort_fp32_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(ort_fp32_bundle, copy)
    return copy


def _precious(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work")
    return folder


# -- 1. --force replaces only what mait-deploy wrote ---------------------------------------------------------

def test_unpack_force_never_deletes_a_folder_that_is_not_a_bundle(bundle, tmp_path):
    archive = tmp_path / "b.tar.gz"
    assert cli("pack", bundle, "-o", archive).returncode == 0
    precious = _precious(tmp_path / "out" / "precious")
    result = cli("unpack", archive, "-o", precious, "--force")
    assert_clean_failure(result, "is not mait-deploy's own bundle", precious.parent)
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_compile_force_never_deletes_a_folder_that_is_not_a_bundle(shipped_onnx, tmp_path):
    precious = _precious(tmp_path / "precious")
    result = cli("compile", shipped_onnx, "--no-eval", "-o", precious, "--force")
    assert_clean_failure(result, "--force replaces only what mait-deploy wrote", tmp_path)
    assert (precious / "thesis.txt").exists() and (precious / "sub").is_dir()


def test_force_refuses_a_bundle_holding_a_users_file(bundle, shipped_onnx, tmp_path):
    (bundle / "notes.txt").write_text("mine")
    result = cli("compile", shipped_onnx, "--no-eval", "-o", bundle, "--force")
    assert_clean_failure(result, "notes.txt", tmp_path)
    assert (bundle / "notes.txt").read_text() == "mine"


def test_force_replaces_our_own_bundle(bundle, shipped_onnx, tmp_path):
    result = cli("compile", shipped_onnx, "--no-eval", "-o", bundle, "--force", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gate"] is None and cli("verify", bundle).returncode == 0


def test_export_force_never_overwrites_a_foreign_file(tmp_path):
    foreign = tmp_path / "m.onnx"
    foreign.write_bytes(b"somebody else's model")
    result = cli("export", "-o", foreign, "--force")
    assert_clean_failure(result, "is not mait-deploy's own exported ONNX", tmp_path)
    assert foreign.read_bytes() == b"somebody else's model"


def test_pack_force_never_overwrites_a_foreign_file(bundle, tmp_path):
    foreign = tmp_path / "backup.tar.gz"
    foreign.write_text("not an archive")
    result = cli("pack", bundle, "-o", foreign, "--force")
    assert_clean_failure(result, "is not mait-deploy's own bundle archive", tmp_path)
    assert foreign.read_text() == "not an archive"


# -- 2. the user's own data ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["folder", "float-npz"])
def test_compile_on_the_users_data_then_verify_and_predict(shipped_onnx, tmp_path, kind):
    if kind == "folder":
        data = user_folder(tmp_path / "mine")
    else:
        with np.load(SAMPLE) as sample:
            data = tmp_path / "mine.npz"
            np.savez(data, images=sample["test_images"][:40] / np.float32(255), labels=sample["test_labels"][:40])
    out = tmp_path / "b"
    result = cli("compile", shipped_onnx, "--eval", data, "-o", out)
    assert result.returncode == 0, result.stderr
    assert cli("verify", out).returncode == 0
    image = tmp_path / "one.png"
    Image.fromarray(np.zeros((50, 30, 3), np.uint8)).save(image)
    assert cli("predict", out, image, "--json").returncode == 0


# -- 3. never stale, never silently replaced -----------------------------------------------------------------

def test_deploy_does_not_reuse_results_after_the_data_changed(tmp_path):
    data = tmp_path / "eval.npz"
    with np.load(SAMPLE) as sample:
        np.savez(data, images=sample["test_images"][:60], labels=sample["test_labels"][:60])
        args = ("deploy", "-o", tmp_path / "out", "--targets", "onnxruntime", "--precisions", "fp32", "--eval", data,
                "--profile-batches", "1", "--iterations", "3", "--json")
        first = cli(*args)
        assert first.returncode == 0, first.stderr
        again = json.loads(cli(*args).stdout)["rows"][0]
        assert again["reused"] is True
        np.savez(data, images=sample["test_images"][60:120], labels=sample["test_labels"][60:120])  # same path
    changed = json.loads(cli(*args).stdout)["rows"][0]
    assert changed["reused"] is False and changed["status"] == "ok"


def test_deploy_survives_a_corrupt_state_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "state.json").write_text("{not json")
    result = cli("deploy", "-o", out, "--targets", "onnxruntime", "--precisions", "fp32", "--eval-count", "50",
                 "--profile-batches", "1", "--iterations", "3")
    assert result.returncode == 0, result.stderr


def test_two_compiles_to_one_output_never_both_succeed(shipped_onnx, tmp_path):
    out = tmp_path / "same"
    command = [sys.executable, "-m", "mait_deploy.cli", "compile", str(shipped_onnx), "--no-eval", "-o", str(out)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in (1, 2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    assert any("appeared while this command ran" in err or "exists; pass --force" in err for _, err in results)
    assert cli("verify", out).returncode == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mait-tmp")]


# -- 4. nothing written beside the user's input --------------------------------------------------------------

def test_int8_compiles_write_nothing_beside_the_source_onnx(shipped_onnx, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(shipped_onnx, source / "m.onnx")
    command = [sys.executable, "-m", "mait_deploy.cli", "compile", str(source / "m.onnx"), "-p", "int8",
               "--calib-count", "64", "--no-eval", "-o"]
    processes = [subprocess.Popen(command + [str(tmp_path / f"b{i}")], stderr=subprocess.PIPE, text=True)
                 for i in (1, 2)]
    assert [p.wait(timeout=600) for p in processes] == [0, 0], [p.stderr.read() for p in processes]
    assert sorted(p.name for p in source.iterdir()) == ["m.onnx"]


def test_int8_compile_from_a_read_only_folder(shipped_onnx, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        shutil.copy(shipped_onnx, folder / "m.onnx")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        result = cli("compile", folder / "m.onnx", "-p", "int8", "--calib-count", "64", "--no-eval",
                     "-o", tmp_path / "b")
        assert result.returncode == 0, result.stderr
    finally:
        subprocess.run(["umount", str(folder)])


# -- 5. small inputs, bounded resources ----------------------------------------------------------------------

@pytest.mark.parametrize("changes,message", [
    ({"embed_dim": 16384}, "embed_dim must be an integer from 1 to 8192"),
    ({"embed_dim": 4096}, "shape mismatch"),  # plausible: refused on a storage-less model, before allocating
    ({"img_size": 4096, "preprocess": {"input_size": 4096, "channels": 1, "mean": [0.5], "std": [0.5]}},
     "config too large"),
    ({"depth": 10**12}, "depth must be an integer from 1 to 1024"),
])
def test_a_huge_config_beside_real_weights_is_refused_before_allocating(tmp_path, changes, message):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(SHIPPED, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"].update(changes)
    (checkpoint / "config.json").write_text(json.dumps(config))
    result = memory_bounded(6, "info", checkpoint)
    assert_clean_failure(result, message, tmp_path)


def test_a_small_png_declaring_a_huge_image_is_refused_in_predict(bundle, tmp_path):
    import zlib

    # 13000x13000 16-bit grey: a few hundred KB compressed, 338 MB decoded and GBs once converted.
    width = height = 13000
    row = b"\x00" + bytes(width * 2)
    raw = zlib.compress(row * height, 9)

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 0, 0, 0, 0])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    assert bomb.stat().st_size < 1_000_000
    result = memory_bounded(3, "predict", bundle, bomb)
    assert_clean_failure(result, "the limit is 40 MP", tmp_path)


def test_a_small_npz_declaring_gigabytes_is_read_only_as_far_as_asked(shipped_onnx, tmp_path):
    import zipfile

    bomb = tmp_path / "calib.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("images.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (4_000_000, 28, 28)})
        block = bytes(28 * 28 * 10_000)
        for _ in range(400):
            handle.write(block)
    assert bomb.stat().st_size < 20_000_000
    # All of it: refused by its declared size; 10 of it: only those rows are kept.
    whole = memory_bounded(6, "compile", shipped_onnx, "-p", "int8", "--calib", bomb, "--calib-count", "4000000",
                           "--no-eval", "-o", tmp_path / "a")
    assert_clean_failure(whole, "use --count to draw fewer images", tmp_path)
    ten = memory_bounded(6, "compile", shipped_onnx, "-p", "int8", "--calib", bomb, "--calib-count", "10", "--no-eval",
                         "-o", tmp_path / "b")
    assert ten.returncode == 0, ten.stderr


def test_an_archive_with_an_unlisted_member_writes_nothing(bundle, tmp_path):
    import tarfile

    archive = tmp_path / "x.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("manifest.json", "golden.bin", "model.onnx"):
            tar.add(bundle / name, arcname=name)
        big = tmp_path / "big.bin"
        with open(big, "wb") as handle:
            handle.truncate(200 * 2**20)  # sparse here, 200 MB if it were extracted
        tar.add(big, arcname="payload.bin")
    out = tmp_path / "out"
    out.mkdir()
    result = cli("unpack", archive, "-o", out / "b")
    assert_clean_failure(result, "does not list: payload.bin", out)
    assert list(out.iterdir()) == []


# -- 6. nothing outside the bundle ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["verify", "predict", "pack"])
def test_a_symlinked_folder_inside_a_bundle_is_refused(bundle, tmp_path, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    shutil.move(bundle / "model.onnx", outside / "model.onnx")
    (bundle / "sub").symlink_to(outside, target_is_directory=True)
    manifest["artifact"]["path"] = "sub/model.onnx"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    args = {"verify": [bundle], "predict": [bundle, image], "pack": [bundle, "-o", tmp_path / "p.tar.gz"]}[command]
    result = cli(command, *args)
    assert_clean_failure(result, "leads outside the bundle folder", tmp_path)
    assert not (tmp_path / "p.tar.gz").exists()


# -- 7. one line, whichever library raised it ----------------------------------------------------------------

def _config_field(tmp_path, **changes):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(SHIPPED, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"].update(changes)
    (checkpoint / "config.json").write_text(json.dumps(config))
    return checkpoint


def _malformed_manifest(bundle, **changes):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


ONE_LINE_CASES = {
    "config mlp_ratio is text": (lambda t, b: ["info", _config_field(t, mlp_ratio="wide")], "mlp_ratio must be"),
    "config qkv_bias is a number": (lambda t, b: ["info", _config_field(t, qkv_bias=3)], "qkv_bias must be"),
    "config labels wrong count": (lambda t, b: ["info", _config_field(t, labels=["a"])], "labels given"),
    "corrupt npz": (lambda t, b: ["evaluate", b, "--data", _write(t / "c.npz", b"PK\x03\x04junk")],
                    "cannot read"),
    "object npz": (lambda t, b: ["evaluate", b, "--data", _object_npz(t)], "object arrays are refused"),
    "manifest batch is text": (lambda t, b: ["verify", _malformed_manifest(b, batch="lots")],
                                "batch: 'lots' is not 'dynamic' or an integer from 1 to 65536"),
    "manifest golden without tolerance": (
        lambda t, b: ["verify", _malformed_manifest(b, golden={"file": "golden.bin", "sha256": "0", "count": 8})],
        "golden: 'tolerance' is a required property"),
    "manifest accuracy is a list": (lambda t, b: ["verify", _malformed_manifest(b, accuracy=[1, 2])],
                                    "accuracy: [1, 2] is not an object or null"),
    "profile --compare on a malformed report": (
        lambda t, b: ["profile", "--compare", _write(t / "r.json", b'{"schema": "mait-deploy/profile", '
                                                     b'"schema_version": 1, "reports": [{"schema_version": 1, '
                                                     b'"results": [{"x": 1}]}]}')],
        "is malformed"),
    "profile --compare on a non-JSON file": (lambda t, b: ["profile", "--compare", _write(t / "r.json", b"\xff\xfe")],
                                             "not valid JSON"),
    "-O subset_size=-5": (lambda t, b: ["compile", "-t", "openvino", "-p", "int8", "-O", "subset_size=-5",
                                        "-o", t / "x"], "subset_size must be"),
    "-O per_channel=maybe": (lambda t, b: ["compile", "-p", "int8", "-O", "per_channel=maybe", "-o", t / "x"],
                             "per_channel takes true/false"),
    "-O max_batch=lots": (lambda t, b: ["compile", "-t", "tensorrt", "-O", "max_batch=lots", "-o", t / "x"],
                          "max_batch takes an integer"),
    "-O int8_format=s4": (lambda t, b: ["compile", "-p", "int8", "-O", "int8_format=s4", "-o", t / "x"],
                          "int8_format='s4': use one of auto"),
}


def _write(path, data):
    path.write_bytes(data)
    return path


def _object_npz(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, images=np.array([None, 1], dtype=object), labels=np.array([0, 1]))
    return path


@pytest.mark.parametrize("case", sorted(ONE_LINE_CASES))
def test_errors_from_dependencies_are_one_line(bundle, tmp_path, case):
    make, message = ONE_LINE_CASES[case]
    result = cli(*make(tmp_path, bundle))
    assert_clean_failure(result, message, tmp_path)


def test_markup_in_a_file_name_is_printed_as_it_is(bundle, tmp_path):
    folder = tmp_path / "img" / "["  # predict 'img/[/b]t0 [red].png': "[/b]" closes a tag that never opened
    folder.mkdir(parents=True)
    image = folder / "b]t0 [red].png"
    with np.load(SAMPLE) as data:
        Image.fromarray(data["test_images"][0]).save(image)
    result = cli("predict", bundle, image)
    assert result.returncode == 0, result.stderr
    assert "[/b]t0" in result.stdout  # the table printed the name as it is (rich markup would have eaten it)
    missing = cli("predict", bundle, folder / "[bold]gone[/bold].png")
    assert_clean_failure(missing, "[bold]gone[/bold].png", tmp_path)


def test_compile_without_torch_names_the_extra(tmp_path):
    code = ("import sys, importlib.abc\n"
            "class B(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, B())\n"
            "from mait_deploy.cli import app\n"
            f"sys.argv = ['mait-deploy', 'compile', '-o', {str(tmp_path / 'b')!r}]\n"
            "app()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert_clean_failure(result, "install the 'export' extra", tmp_path)


# -- 8. one failure keeps the good results ------------------------------------------------------------------

def test_profile_writes_the_report_when_one_bundle_is_tampered(bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    with open(bad / "model.onnx", "ab") as handle:
        handle.write(b"tampered")
    report = tmp_path / "r.json"
    result = cli("profile", bundle, bad, "--iterations", "3", "--warmup", "1", "--json", report)
    assert result.returncode != 0 and "1 of 2 profile run(s) failed" in result.stderr
    reports = json.loads(report.read_text())["reports"]
    assert reports[0]["error"] is None and reports[0]["results"][0]["model"]["count"] == 3
    assert "does not match its sha256" in reports[1]["error"]


# -- 10. documented behaviour --------------------------------------------------------------------------------

def test_evaluate_and_info_read_an_exported_onnx(shipped_onnx):
    info = cli("info", shipped_onnx, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["variant"] == default_checkpoint().name
    result = cli("evaluate", shipped_onnx, "--count", "100", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top1"] > 0.8

"""Bundle archives (`pack`/`unpack`): a round trip gives a bundle that verifies; a hostile archive (links, ../,
absolute paths, special files, duplicates, unlisted or modified files, corrupt data) is refused with one line,
leaves nothing behind and does not touch the bundle already at the destination."""

import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy.device.archive import pack_bundle, unpack_bundle
from mait_deploy.device.bundle import verify_bundle
from mait_deploy.errors import BundleError


@pytest.fixture
def bundle(ort_fp32_bundle):
    return ort_fp32_bundle


@pytest.fixture(scope="module")
def packed(ort_fp32_bundle, tmp_path_factory):
    return pack_bundle(ort_fp32_bundle, tmp_path_factory.mktemp("packed") / "bundle.tar.gz")


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_round_trip_verifies_and_is_reproducible(bundle, packed, tmp_path):
    with tarfile.open(packed) as tar:
        names = sorted(tar.getnames())
    assert names == sorted(p.name for p in bundle.iterdir())
    out = unpack_bundle(packed, tmp_path / "unpacked")
    assert _snapshot(out) == _snapshot(bundle)
    assert verify_bundle(out).passed
    again = pack_bundle(bundle, tmp_path / "again.tar.gz")
    assert again.read_bytes() == packed.read_bytes()  # no timestamps, owners or ordering noise


def test_tampered_bundle_is_not_packed(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        pack_bundle(copy, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


def _hostile(packed, tmp_path, add):
    """A copy of the good archive with extra members written by ``add(tar)``."""
    path = tmp_path / "hostile.tar.gz"
    with tarfile.open(packed) as source, tarfile.open(path, "w:gz") as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member))
        add(tar)
    return path


def _file(tar, name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(kind, name, target):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


def _special(kind):
    def add(tar):
        info = tarfile.TarInfo("dev0")
        info.type = kind
        tar.addfile(info)
    return add


def _replace_member(name, data):
    def build(packed, tmp_path):
        path = tmp_path / "replaced.tar.gz"
        with tarfile.open(packed) as source, tarfile.open(path, "w:gz") as tar:
            for member in source.getmembers():
                if member.name == name:
                    _file(tar, name, data)
                else:
                    tar.addfile(member, source.extractfile(member))
        return path
    return build


HOSTILE = {
    "dotdot": (lambda p, t: _hostile(p, t, lambda tar: _file(tar, "../evil.txt")), "escapes the bundle"),
    "nested_dotdot": (lambda p, t: _hostile(p, t, lambda tar: _file(tar, "sub/../../evil.txt")), "escapes the bundle"),
    "absolute": (lambda p, t: _hostile(p, t, lambda tar: _file(tar, "/tmp/evil.txt")), "absolute path"),
    "symlink": (lambda p, t: _hostile(p, t, _link(tarfile.SYMTYPE, "link", "/etc/passwd")), "is a link"),
    "symlink_inside": (lambda p, t: _hostile(p, t, _link(tarfile.SYMTYPE, "alias.onnx", "model.onnx")), "is a link"),
    "hardlink": (lambda p, t: _hostile(p, t, _link(tarfile.LNKTYPE, "hard", "model.onnx")), "is a link"),
    "device": (lambda p, t: _hostile(p, t, _special(tarfile.CHRTYPE)), "not a regular file"),
    "fifo": (lambda p, t: _hostile(p, t, _special(tarfile.FIFOTYPE)), "not a regular file"),
    "duplicate": (lambda p, t: _hostile(p, t, lambda tar: _file(tar, "model.onnx", b"evil")), "appears twice"),
    "unlisted_file": (lambda p, t: _hostile(p, t, lambda tar: _file(tar, "run_me.sh", b"rm -rf /")),
                      "does not list"),
    "modified_artifact": (_replace_member("model.onnx", b"not the model"), "sha256"),
    "no_manifest": (lambda p, t: _replace_member_drop(p, t, "manifest.json"), "no manifest.json"),
    "truncated": (lambda p, t: _truncated(p, t), "truncated or corrupt"),
    "not_a_tar": (lambda p, t: _write(t / "junk.tar.gz", os.urandom(4096)), "not a readable tar"),
}


def _replace_member_drop(packed, tmp_path, name):
    path = tmp_path / "dropped.tar.gz"
    with tarfile.open(packed) as source, tarfile.open(path, "w:gz") as tar:
        for member in source.getmembers():
            if member.name != name:
                tar.addfile(member, source.extractfile(member))
    return path


def _truncated(packed, tmp_path):
    return _write(tmp_path / "truncated.tar.gz", packed.read_bytes()[: packed.stat().st_size // 2])


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(case, bundle, packed, tmp_path):
    build, message = HOSTILE[case]
    archive = build(packed, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    good = work / "bundle"
    shutil.copytree(bundle, good)
    before = _snapshot(good)
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "unpack", str(archive), "-o", str(good),
                             "--force"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.lower() in errors[0].lower(), result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(good) == before  # the bundle already there is untouched
    assert sorted(p.name for p in work.iterdir()) == ["bundle"]  # no temporary folder left
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    # Without --force and a fresh destination: nothing is created either.
    with pytest.raises(BundleError):
        unpack_bundle(archive, work / "fresh")
    assert not (work / "fresh").exists()


def test_unpack_refuses_an_existing_destination_without_force(packed, tmp_path):
    (tmp_path / "there").mkdir()
    with pytest.raises(Exception, match="--force"):
        unpack_bundle(packed, tmp_path / "there")


def test_pack_and_unpack_cli(bundle, tmp_path):
    archive, out = tmp_path / "b.tar.gz", tmp_path / "device" / "b"
    for args in (["pack", bundle, "-o", archive], ["unpack", archive, "-o", out], ["verify", out]):
        result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", *map(str, args)], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert "PASS" in result.stdout


def test_an_unreadable_archive_is_one_line(tmp_path):
    for name, data in (("junk.tar.gz", b"\x1f\x8b\x08\x00junkjunk"), ("random.tar.gz", os.urandom(300))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BundleError, match=r"is not a readable tar archive \(gzip, bzip2, xz or plain tar\)$") \
                as caught:
            unpack_bundle(tmp_path / name, tmp_path / "out")
        assert "\n" not in str(caught.value)


def test_a_tampered_member_is_named_by_the_archive_not_a_temporary_folder(packed, tmp_path):
    with tarfile.open(packed) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    members["model.onnx"] = members["model.onnx"][:-8] + b"tampered"
    archive = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BundleError, match=rf"^{archive}: model.onnx does not match its sha256") as caught:
        unpack_bundle(archive, tmp_path / "out")
    assert ".mait-tmp" not in str(caught.value) and not (tmp_path / "out").exists()


def test_pack_and_unpack_speak_json_and_so_do_their_errors(bundle, tmp_path):
    import json

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mait_deploy.cli", *map(str, args), "--json"],
                              capture_output=True, text=True, timeout=300)

    archive = tmp_path / "b.tar.gz"
    packed = cli("pack", bundle, "-o", archive)
    assert packed.returncode == 0 and json.loads(packed.stdout)["bytes"] == archive.stat().st_size
    unpacked = cli("unpack", archive, "-o", tmp_path / "b")
    assert unpacked.returncode == 0 and json.loads(unpacked.stdout)["hashes_checked"] is True
    refused = cli("unpack", archive, "-o", tmp_path / "b")  # it is there already: --force needed
    error = json.loads(refused.stdout)
    assert refused.returncode != 0 and error["exit_code"] == refused.returncode and "--force" in error["error"]

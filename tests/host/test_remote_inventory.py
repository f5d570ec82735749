"""The inventory, host-key bookkeeping and the checks that run before anything connects (no board needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import time

import pytest

from mait_deploy.errors import RemoteError
from mait_deploy.host.remote.inventory import load_inventory, select
from mait_deploy.host.remote.setup import board_platforms
from mait_deploy.host.remote.ssh import host_listed
from tests.helpers import one_error_line

pytest.importorskip("yaml")


@pytest.fixture()
def keys(tmp_path):
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key.write_text("not read before connecting")
    known.write_text("")
    return key, known


def write(tmp_path, text: str):
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    return path


def test_own_shape_with_defaults(tmp_path, keys):
    key, known = keys
    inventory = write(tmp_path, f"""
defaults: {{user: pi, identity_file: {key}, known_hosts: {known}, workdir: mait}}
devices:
  pi5-a: {{host: 192.168.1.20, runtime: litert, tags: [pi, arm]}}
  jetson: {{host: jetson.local, port: 2222, user: nvidia, runtimes: [tensorrt, onnxruntime], install: push}}
""")
    pi, jetson = load_inventory(inventory)
    assert (pi.name, pi.host, pi.port, pi.user, pi.runtimes, pi.tags) == \
        ("pi5-a", "192.168.1.20", 22, "pi", ("litert",), ("pi", "arm"))
    assert (jetson.port, jetson.user, jetson.runtimes, jetson.install, jetson.workdir) == \
        (2222, "nvidia", ("tensorrt", "onnxruntime"), "push", "mait")
    assert [d.name for d in select([pi, jetson], tags=["pi"])] == ["pi5-a"]
    assert [d.name for d in select([pi, jetson], names=["jetson"])] == ["jetson"]
    assert len(select([pi, jetson])) == 2


def test_ansible_shape_groups_become_tags(tmp_path, keys):
    key, known = keys
    inventory = write(tmp_path, f"""
all:
  vars: {{ansible_user: pi, ansible_ssh_private_key_file: {key}, known_hosts: {known}}}
  children:
    raspberry:
      vars: {{runtime: litert}}
      hosts:
        pi5-a: {{ansible_host: 10.0.0.5, ansible_port: 2201}}
        pi4: {{ansible_host: 10.0.0.6}}
""")
    devices = {d.name: d for d in load_inventory(inventory)}
    assert devices["pi5-a"].port == 2201 and devices["pi5-a"].user == "pi"
    assert devices["pi4"].runtimes == ("litert",) and devices["pi4"].tags == ("raspberry",)


@pytest.mark.parametrize("entry, message", [
    ("'bad;name': {host: h}", "a device name is letters"),
    ("'with space': {host: h}", "a device name is letters"),
    ("ok: {host: 'h; rm -rf /'}", "is not a host name"),
    ("ok: {host: h, port: 70000}", "out of range"),
    ("ok: {host: h, port: abc}", "port must be a number"),
    ("ok: {host: h, runtime: cuda}", "runtime 'cuda' is not one of"),
    ("ok: {host: h, workdir: ../../etc}", "workdir"),
    ("ok: {host: h, workdir: 'x;y'}", "workdir"),
    ("ok: {host: h, user: 'root;id'}", "is not a login name"),
    ("ok: {host: h, user: \"root\\n\"}", "is not a login name"),
    ("\"ok\\n\": {host: h}", "a device name is letters"),
    ("ok: {host: h, workdir: \"w\\n\"}", "workdir"),
    ("ok: {host: h, python: \"python3\\n\"}", "is not a path to an interpreter"),
    ("ok: {host: h, colour: red}", "unknown setting 'colour'"),
    ("ok: {port: 22}", "'host' is missing"),
    ("ok: {host: h, runtime: []}", "'runtime' is missing"),
    ("ok: {host: h, identity_file: /nonexistent/key}", "does not exist"),
])
def test_hostile_values_are_one_line_errors(tmp_path, keys, entry, message):
    key, known = keys
    inventory = write(tmp_path, f"defaults: {{identity_file: {key}, known_hosts: {known}, runtime: onnxruntime}}\ndevices:\n  {entry}\n")
    with pytest.raises(RemoteError, match=message) as caught:
        load_inventory(inventory)
    assert "\n" not in str(caught.value)


def test_not_an_inventory(tmp_path):
    with pytest.raises(RemoteError, match="not valid YAML"):
        load_inventory(write(tmp_path, "devices: [unclosed"))
    with pytest.raises(RemoteError, match="expected a mapping"):
        load_inventory(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RemoteError, match="inventory not found"):
        load_inventory(tmp_path / "missing.yaml")


def test_unknown_device_name_is_an_error(tmp_path, keys):
    key, known = keys
    devices = load_inventory(write(tmp_path, f"devices: {{a: {{host: h, runtime: litert, identity_file: {key}, known_hosts: {known}}}}}"))
    with pytest.raises(RemoteError, match="no device named 'b'"):
        select(devices, names=["b"])


def test_known_hosts_plain_port_and_hashed_entries(tmp_path):
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, b"[10.0.0.9]:2222", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    known = tmp_path / "known_hosts"
    known.write_text(f"# comment\nboard.local ssh-ed25519 AAAA\n[127.0.0.1]:2201 ssh-ed25519 AAAA\n"
                     f"{hashed} ssh-ed25519 AAAA\n")
    assert host_listed(known, "board.local", 22)
    assert not host_listed(known, "board.local", 2200)
    assert host_listed(known, "127.0.0.1", 2201)
    assert not host_listed(known, "127.0.0.1", 22)
    assert host_listed(known, "10.0.0.9", 2222)
    assert not host_listed(known, "10.0.0.9", 22)


def test_board_platforms_from_glibc():
    tags = board_platforms("aarch64", "2.41")
    assert tags[0] == "manylinux_2_41_aarch64" and tags[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_17_aarch64" in tags
    with pytest.raises(RemoteError, match="not glibc"):
        board_platforms("aarch64", "")


def test_unreachable_board_is_one_line_and_fast(tmp_path, keys):
    """A closed port: one line naming the board, exit 1, no traceback (asyncssh is needed here)."""
    pytest.importorskip("asyncssh")
    key, known = keys
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "real_key")], check=True)
    inventory = write(tmp_path, f"devices: {{gone: {{host: 127.0.0.1, port: 9, runtime: onnxruntime, identity_file: {tmp_path / 'real_key'}, "
                                f"known_hosts: {known}, install: push}}}}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "remote", "setup", "-i", str(inventory),
                           "--wheel", str(inventory)], capture_output=True, text=True)
    assert done.returncode == 1
    assert one_error_line(done.stderr), done.stderr
    assert "not a wheel file" in done.stderr
    done = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "remote", "profile", "/nonexistent-bundle",
                           "-i", str(inventory), "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 1 and one_error_line(done.stderr), done.stderr
    assert time.perf_counter() - started < 60


def test_closed_port_gives_one_line_naming_the_board(tmp_path, keys):
    pytest.importorskip("asyncssh")
    import asyncio

    from mait_deploy.host.remote.ssh import Board

    _, known = keys
    key = tmp_path / "real_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (device,) = load_inventory(write(tmp_path, f"devices: {{gone: {{host: 127.0.0.1, port: 9, runtime: onnxruntime, identity_file: {key}, "
                                              f"known_hosts: {known}}}}}"))
    with pytest.raises(RemoteError, match=r"^gone \(root@127.0.0.1:9\): cannot connect") as caught:
        asyncio.run(Board.open(device, connect_timeout=5))
    assert "\n" not in str(caught.value)


def test_deploy_device_options_need_an_inventory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "deploy", "-o", str(tmp_path / "out"),
                           "--device", "pi"], capture_output=True, text=True)
    assert done.returncode == 1 and "need --inventory" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_silent_host_is_given_up_after_the_devices_own_timeout(tmp_path, keys):
    """A host that accepts the connection and never speaks SSH: the device's timeout (2 s), not 20 s."""
    pytest.importorskip("asyncssh")
    import asyncio
    import socket
    import threading

    from mait_deploy.host.remote.ssh import Board

    key, known = keys
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    port = server.getsockname()[1]
    (device,) = load_inventory(write(tmp_path, f"devices: {{mute: {{host: 127.0.0.1, port: {port}, runtime: onnxruntime, "
                                              f"identity_file: {key}, known_hosts: {known}, timeout: 2}}}}"))
    started = time.perf_counter()
    with pytest.raises(RemoteError, match=r"^mute \(root@127.0.0.1:\d+\): "):
        asyncio.run(Board.open(device))
    assert time.perf_counter() - started < 10
    server.close()


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + "devices: *i\n"


@pytest.mark.parametrize("text, message", [
    (ALIAS_BOMB, "anchors and aliases"),
    ("defaults: &d {runtime: onnxruntime}\ndevices: {a: {host: h, <<: *d}}\n", "anchors and aliases"),
    ("devices: [a, b]\n", "devices must be a mapping, got list"),
    ("defaults: [a]\ndevices: {a: {host: h}}\n", "defaults must be a mapping, got list"),
    ("devices: {a: [host, h]}\n", "device 'a' must be a mapping of settings"),
    ("all: [a]\n", "group all must be a mapping, got list"),
    ("all: {hosts: [a, b]}\n", "all.hosts must be a mapping, got list"),
    ("all: {vars: [1], hosts: {a: {}}}\n", "all.vars must be a mapping, got list"),
    ("all: {children: {g: {hosts: {a: [1]}}}}\n", "host 'a' must be a mapping, got list"),
    ("all: {children: [g]}\n", "all.children must be a mapping, got list"),
    ("all: {children: {\"\\n\": {vars: []}}}\n", "all.children.'\\\\n'.vars must be a mapping, got list"),
    ("all:\n" + "".join("  " * (2 * i + 1) + "children:\n" + "  " * (2 * i + 2) + f"g{i}:\n" for i in range(20)),
     "groups nested deeper than 16"),
    ("devices:\n" + "".join(f"  d{i}: {{host: h}}\n" for i in range(300)), "more than 256 devices"),
    ("devices: {a: {host: [h]}}\n", "host must be text, got list"),
    ("devices: {a: {host: {h: 1}}}\n", "host must be text, got dict"),
    ("devices: {a: {host: h, port: true}}\n", "port must be a number, got True"),
    ("devices: {a: {host: h, port: [22]}}\n", "port must be a number"),
    ("devices: {a: {host: h, runtime: {x: 1}}}\n", "runtime must be a word or a list"),
    ("devices: {a: {host: h, tags: {x: 1}}}\n", "tags must be a word or a list"),
    ("devices: {a: {host: h, tags: [" + ", ".join(f"t{i}" for i in range(40)) + "]}}\n", "at most 32"),
    ("devices: {a: {host: h, timeout: forever}}\n", "timeout must be a number"),
    ("devices: {a: {host: h, timeout: 1.0e+300}}\n", "timeout 1e\\+300 is out of range"),
    ("devices: {a: {host: h, timeout: -5}}\n", "timeout -5 is out of range"),
    ("devices: {a: {host: '" + "h" * 300 + "'}}\n", "host must be 1 to 255 characters"),
    ("devices: {a: {host: h, user: [root]}}\n", "user must be text"),
    ("devices: {a: {host: h, workdir: {x: 1}}}\n", "workdir must be text"),
    ("devices: {a: {host: h, install: [push]}}\n", "install must be text"),
])
def test_hostile_inventories_are_one_line_within_bounds(tmp_path, keys, text, message):
    import tracemalloc

    key, known = keys
    if "devices:" in text and "defaults" not in text and "runtime" not in text:
        text = f"defaults: {{identity_file: {key}, known_hosts: {known}, runtime: onnxruntime}}\n" + text
    inventory = write(tmp_path, text)
    assert inventory.stat().st_size <= 64 * 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(RemoteError, match=message) as caught:
            load_inventory(inventory)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 600
    assert peak < 64 * 2**20 and time.perf_counter() - started < 10


def test_an_inventory_over_64_kb_is_refused_unread(tmp_path):
    inventory = write(tmp_path, "# " + "x" * 70_000 + "\ndevices: {}\n")
    with pytest.raises(RemoteError, match="larger than 64 KB"):
        load_inventory(inventory)


def test_the_push_list_is_the_manifests_file_list(ort_fp32_bundle, tmp_path):
    """A symbolic link or a stray file in a bundle folder is never pushed: only what the manifest lists, each a
    plain file inside the folder with its recorded sha256."""
    import shutil

    from mait_deploy.errors import BundleError
    from mait_deploy.host.remote.fleet import read_bundles

    secret = tmp_path / "secret.txt"
    secret.write_text("the user's private file")
    bundle = tmp_path / "bundle"
    shutil.copytree(ort_fp32_bundle, bundle)
    (bundle / "notes.txt").write_text("stray")
    (bundle / "link.txt").symlink_to(secret)
    (pushed,) = read_bundles([bundle])
    assert sorted(pushed.files) == ["golden.bin", "manifest.json", "model.onnx"]
    (bundle / "model.onnx").rename(tmp_path / "model.onnx")
    (bundle / "model.onnx").symlink_to(tmp_path / "model.onnx")
    with pytest.raises(BundleError, match="symbolic link"):
        read_bundles([bundle])


def test_the_wheel_is_built_outside_the_users_checkout(tmp_path):
    """`remote setup` without --wheel builds from a copy: no build/ or *.egg-info appears in the checkout."""
    from pathlib import Path

    from mait_deploy.host.remote.setup import build_wheel

    root = Path(__file__).resolve().parents[2]
    before = {p.name for p in root.iterdir()} | {p.name for p in (root / "mait_deploy").iterdir()}
    wheel = build_wheel(tmp_path / "wheel")
    after = {p.name for p in root.iterdir()} | {p.name for p in (root / "mait_deploy").iterdir()}
    assert wheel.name.startswith("mait_deploy-") and wheel.suffix == ".whl"
    assert after - before == set(), after - before
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "mait_deploy/assets/manifest.schema.json" in names and "mait_deploy/cli/app.py" in names


def test_the_probe_report_is_found_among_a_runtimes_stdout_lines_and_its_absence_is_one_line():
    from mait_deploy.host.remote.setup import _probe_report, runtime_sdk_wheels

    report = '{"machine": "aarch64", "runtimes": {"onnxruntime": {"ok": true}}}'
    for stdout in (report + "\n", f"{report}\nlibrary noise at exit\n", f"[info] 1\n{{\"other\": 1}}\n{report}\n"):
        assert _probe_report(stdout)["machine"] == "aarch64"
    with pytest.raises(RemoteError, match="printed no report") as caught:
        _probe_report("Segmentation fault\n{not json\n")
    assert "\n" not in str(caught.value)
    # The runtimes whose wheel is their C++ SDK, installed without dependencies: ExecuTorch's, not the others'.
    assert runtime_sdk_wheels(["onnxruntime", "executorch", "litert"]) == ["executorch==1.5.1"]
    assert runtime_sdk_wheels(["onnxruntime", "openvino"]) == []

"""`remote setup` and `remote profile` against two arm64 boards (Debian arm64 userland under qemu-user, sshd inside).

Slow: the userland is built once (tests/arm64_board.py, cached), each remote Python process under emulation takes
30-60 s. Skips with the reason where binfmt_misc cannot be mounted or the tools are missing.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import arm64_board
from tests.helpers import one_error_line

pytestmark = pytest.mark.slow
pytest.importorskip("asyncssh")
pytest.importorskip("yaml")

RUNTIMES = ["onnxruntime", "litert", "openvino", "executorch"]
TARGETS = ["onnxruntime", "litert", "openvino"]  # the `bundles` fixture's; ExecuTorch's are the session's own
PROFILE = dict(iterations=10, warmup=2)  # under emulation: enough to prove the profiler runs, not to time
EVAL_COUNT = 100  # on-board images per bundle (an emulated image costs milliseconds to a second)


@pytest.fixture(scope="module")
def arm64_root():
    reason = arm64_board.ensure_binfmt()
    if reason:
        pytest.skip(reason)
    return arm64_board.userland()


def _inventory(path: Path, boards, key: Path, known: Path, workdirs: dict[str, str]) -> Path:
    lines = ["devices:"]
    for board in boards:
        lines.append(f"  {board.name}: {{host: 127.0.0.1, port: {board.port}, user: root, identity_file: {key}, "
                     f"known_hosts: {known}, runtimes: [{', '.join(RUNTIMES)}], install: push, "
                     f"workdir: {workdirs[board.name]}, timeout: 900, tags: [fixture]}}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fleet(arm64_root, tmp_path_factory):
    from mait_deploy.host.remote.inventory import load_inventory

    tmp = tmp_path_factory.mktemp("fleet")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    token = secrets.token_hex(3)
    # The two boards share one compiler cache, as a fleet's owner may set up (the boards are one userland here): the
    # second board to build a runtime reuses the first's objects (under emulation ~40 s instead of ~10 minutes).
    ccache = f"/var/cache/mait-test-ccache-{token}"
    boards = [arm64_board.make_board(name, arm64_root, environment={"CCACHE_DIR": ccache})
              for name in ("board-a", "board-b")]
    for board in boards:
        board.start(key.with_suffix(".pub").read_text())
    known = tmp / "known_hosts"
    known.write_text("".join(board.known_hosts_line() for board in boards))
    workdirs = {board.name: f"mait-test-{board.name}-{token}" for board in boards}
    inventory = _inventory(tmp / "devices.yaml", boards, key, known, workdirs)
    yield SimpleNamespace(root=arm64_root, boards={b.name: b for b in boards}, key=key, known=known, tmp=tmp,
                          inventory=inventory, devices=load_inventory(inventory), workdirs=workdirs,
                          cache=arm64_board.CACHE / "site-packages")
    for board in boards:
        board.stop()
    for workdir in workdirs.values():
        shutil.rmtree(arm64_root / "root" / workdir, ignore_errors=True)
    shutil.rmtree(arm64_root / ccache.lstrip("/"), ignore_errors=True)


@pytest.fixture(scope="module")
def set_up(fleet):
    from mait_deploy.host.remote.setup import remote_setup

    results = remote_setup(fleet.devices, cache_dir=fleet.cache)
    assert [r.status for r in results] == ["installed", "installed"], [r.reason for r in results]
    return results


@pytest.fixture(scope="module")
def bundles(shipped_bundles):
    """The shipped model as ONNX Runtime, LiteRT and OpenVINO bundles, FP32 and INT8, built on this host (once per
    session, shared with the native runner's and the backends' tests)."""
    return {f"{target}-{precision}": shipped_bundles[target, precision].folder
            for target in TARGETS for precision in ("fp32", "int8")}


@pytest.fixture(scope="module")
def board_a_run(fleet, set_up, bundles, tmp_path_factory):
    """board-a's run of the six bundles with ``--native``, shared by the two tests that read it (one emulated run
    instead of two of the same bundles): each bundle pushed, verified, scored on EVAL_COUNT images and profiled
    through the Python device side, and each runtime's C++ runner built on the board, self-tested and profiled (its
    own rows). Each runtime's FP32 bundle comes before its INT8 one, so the first builds the runner."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    out = tmp_path_factory.mktemp("board-a-run") / "out"
    report = remote_profile(fleet.devices[:1], list(bundles.values()), out, eval_source="fashion-mnist",
                            eval_count=EVAL_COUNT, options=ProfileOptionsRemote(**PROFILE, native=True))
    return SimpleNamespace(out=out, report=report)


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if not p.is_symlink()}


def test_setup_installs_the_device_side_on_arm64_and_a_rerun_changes_nothing(fleet, set_up):
    from mait_deploy.host.remote.setup import remote_setup

    for result in set_up:
        assert result.board["machine"] == "aarch64"
        assert result.board["isa"]["int8_class"].startswith("arm64")
        assert all(info["ok"] for info in result.board["runtimes"].values()), result.board["runtimes"]
    work = fleet.root / "root" / fleet.workdirs["board-a"]
    site = next((work / "venv" / "lib").glob("python3*/site-packages"))
    assert not (site / "torch").exists(), "torch must never reach a board"
    readable = [p for p in work.rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o007]
    assert not readable, f"world-accessible on the board: {readable[:3]}"
    before = _tree(work)
    again = remote_setup(fleet.devices[:1], cache_dir=fleet.cache)
    assert again[0].status == "up to date"
    assert _tree(work) == before


def test_every_bundle_verifies_and_is_scored_on_the_board(fleet, bundles, board_a_run):
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    out, report = board_a_run.out, board_a_run.report
    rows = {row["bundle"]: row for row in report.to_dict()["rows"] if row["runner"] == "python"}
    assert sorted(rows) == sorted(bundles)
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["reason"])
        assert row["board"]["machine"] == "aarch64" and row["board"]["pushed"] is True
        verified = json.loads((out / "board-a" / name / "verify.json").read_text())  # the board's whole report
        assert row["verify"]["passed"] and verified["device_isa"]["machine"] == "aarch64"
        # The same bundle on the same images: on the board vs on this x86 host (one image is 0.01).
        assert abs(row["board"]["top1"] - row["board"]["host_top1"]) <= 0.02, (name, row["board"])
        assert row["latency"]["batch_1"]["p50_ms"] > 0 and row["memory"]["peak_rss_mb"] > 0
        assert (out / "board-a" / name / "profile.json").is_file()
    for precision in ("fp32", "int8"):  # OpenVINO at the precision it was gated at, not Arm's FP16 default
        verified = json.loads((out / "board-a" / f"openvino-{precision}" / "verify.json").read_text())
        assert verified["runtime"]["inference_precision_hint"] == "f32"
    assert {(out / f).is_file() for f in ("fleet.json", "fleet.md", "fleet.png")} == {True}
    from mait_deploy.host.remote.fleet_report import FleetReport
    from mait_deploy.host.report_schemas import schema_file

    written = json.loads((out / "fleet.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(json.loads(schema_file("fleet_report").read_text())).validate(written)
    assert FleetReport.from_dict(written) == report

    rerun = [bundles["onnxruntime-int8"], bundles["openvino-fp32"]]
    again = remote_profile(fleet.devices[:1], rerun, out, options=ProfileOptionsRemote(iterations=2, warmup=1),
                           force=True)
    assert [row.board.pushed for row in again.rows] == [False, False], "a re-run pushed again"
    assert all(row.ok for row in again.rows)


def test_two_boards_run_in_parallel_and_a_lost_board_leaves_a_failed_row(fleet, set_up, bundles, tmp_path):
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    chosen = [bundles["onnxruntime-fp32"], bundles["litert-int8"]]
    report = remote_profile(fleet.devices, chosen, tmp_path / "both", options=ProfileOptionsRemote(**PROFILE))
    assert all(row.ok for row in report.rows), [r.reason for r in report.rows]
    assert report.seconds < 0.8 * sum(report.device_seconds.values()), report.device_seconds

    victim = fleet.boards["board-b"]
    killed = threading.Event()

    def progress(message: str) -> None:
        if message.startswith("board-b:") and not killed.is_set():
            killed.set()
            threading.Timer(3.0, victim.stop).start()

    try:
        lost = remote_profile(fleet.devices, chosen, tmp_path / "lost", options=ProfileOptionsRemote(**PROFILE),
                              progress=progress)
    finally:
        victim.start(fleet.key.with_suffix(".pub").read_text())
    rows = {(r.where, r.bundle): r for r in lost.rows}
    assert killed.is_set()
    assert all(rows[("board-a", b.name)].ok for b in map(Path, chosen))
    b_rows = [rows[("board-b", b.name)] for b in map(Path, chosen)]
    assert b_rows[0].status == "failed" and b_rows[0].reason, b_rows
    assert all("\n" not in r.reason for r in b_rows)

    def leftovers(name: str) -> list[Path]:
        work = fleet.root / "root" / fleet.workdirs[name]
        return list((work / "bundles").glob("*.partial-*")) + list((work / "runs").glob("*"))

    assert not leftovers("board-a")
    # The lost board, back: the next run sweeps what the drop left behind and finishes.
    back = remote_profile(fleet.devices[1:], chosen[:1], tmp_path / "back",
                          options=ProfileOptionsRemote(iterations=2, warmup=1))
    assert back.rows[0].ok, back.rows[0].reason
    assert not leftovers("board-b")


def _cli(*args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "mait_deploy.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_hostile_inventory_values_give_one_line_and_change_nothing(fleet, set_up, bundles, tmp_path):
    board = fleet.boards["board-a"]
    before = _tree(fleet.root / "root")
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    empty_known = tmp_path / "empty_known_hosts"
    empty_known.write_text("")
    wrong_known = tmp_path / "wrong_known_hosts"
    wrong_key = other_key.with_suffix(".pub").read_text().split()
    wrong_known.write_text(f"[127.0.0.1]:{board.port} {wrong_key[0]} {wrong_key[1]}\n")
    cases = {
        "unknown host key": (dict(known_hosts=empty_known), "unknown host key"),
        "changed host key": (dict(known_hosts=wrong_known), "does not match"),
        "wrong client key": (dict(identity_file=other_key), "was refused"),
        "unreachable port": (dict(port=arm64_board.free_port()), "cannot connect"),
    }
    for case, (override, message) in cases.items():
        values = dict(host="127.0.0.1", port=board.port, user="root", identity_file=fleet.key,
                      known_hosts=fleet.known, runtime="onnxruntime", install="push",
                      workdir=f"hostile-{secrets.token_hex(3)}")
        values.update(override)
        inventory = tmp_path / f"{case.replace(' ', '-')}.yaml"
        inventory.write_text("devices:\n  board-a: {" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}\n")
        done = _cli("remote", "setup", "-i", str(inventory))
        assert done.returncode == 1, (case, done.stdout, done.stderr)
        assert message in done.stderr and one_error_line(done.stderr), (case, done.stderr)
    bad_name = tmp_path / "names.yaml"
    bad_name.write_text(f"devices:\n  'a;touch /tmp/pwned': {{host: 127.0.0.1, port: {board.port}, "
                        f"identity_file: {fleet.key}, known_hosts: {fleet.known}, runtime: onnxruntime}}\n")
    done = _cli("remote", "setup", "-i", str(bad_name))
    assert done.returncode == 1 and "a device name is letters" in done.stderr
    assert _tree(fleet.root / "root") == before, "a refused run changed something on the board"

    # A bundle whose folder name is hostile shell text still reaches the board as one quoted word.
    odd = tmp_path / "my bundle; touch pwned"
    shutil.copytree(bundles["onnxruntime-fp32"], odd)
    done = _cli("remote", "profile", str(odd), "-i", str(fleet.inventory), "--device", "board-a",
                "-o", str(tmp_path / "odd-out"), "--iterations", "5", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    assert not (fleet.root / "root" / "pwned").exists()
    assert not (fleet.root / "root" / fleet.workdirs["board-a"] / "pwned").exists()
    assert (tmp_path / "odd-out" / "board-a" / odd.name / "verify.json").is_file()


def _step_processes(board_device, token: str) -> list[str]:
    """The processes on the board whose command line holds ``token`` (read from /proc: the userland has no ps)."""
    import asyncio

    from mait_deploy.host.remote.ssh import Board

    scan = ("import os, sys\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try: line = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
            "    except OSError: continue\n"
            "    if sys.argv[1] in line and 'import os' not in line: print(pid, line)\n")

    async def look():
        async with await Board.open(board_device) as board:
            done = await board.run(["python3", "-c", scan, token], timeout=300)
            return [line for line in done.stdout.splitlines() if line.strip()]

    return asyncio.run(look())


def test_a_step_that_times_out_or_loses_its_connection_ends_on_the_board(fleet):
    """No process of a remote step survives it: a timeout kills its process group from the host, a lost
    connection through the watcher the step runs beside (issue: a LiteRT job once kept a core busy for 20 min)."""
    import asyncio
    import dataclasses

    from mait_deploy.errors import RemoteError
    from mait_deploy.host.remote.ssh import Board

    device = dataclasses.replace(fleet.devices[0], timeout=120)
    token = f"mait-step-test-{secrets.token_hex(4)}"

    async def timed_out():
        async with await Board.open(device) as board:
            with pytest.raises(RemoteError, match="did not finish within 5 s"):
                await board.run(["sh", "-c", f"sleep 900; echo {token}-a"], timeout=5, what="a long step")

    asyncio.run(timed_out())
    assert _step_processes(device, f"{token}-a") == []

    async def dropped():
        board = await Board.open(device)
        step = asyncio.ensure_future(board.run(["sh", "-c", f"sleep 900; echo {token}-b"], timeout=600))
        await asyncio.sleep(8)  # the step is running on the board
        assert not step.done()
        board._connection.abort()  # the network goes: no kill command can be sent
        with pytest.raises(RemoteError, match="connection lost|the connection was lost"):
            await step

    asyncio.run(dropped())
    import time

    deadline = time.monotonic() + 60  # the watcher polls every 2 s (slower under emulation)
    while _step_processes(device, f"{token}-b") and time.monotonic() < deadline:
        time.sleep(3)
    assert _step_processes(device, f"{token}-b") == []


def native_rows(report) -> dict[tuple[str, str], dict]:
    """A fleet report's native rows by (board, bundle), as JSON."""
    return {(row["where"], row["bundle"]): row for row in report.to_dict()["rows"] if row["runner"] == "native"}


def test_the_native_runner_is_built_on_each_board_self_tested_and_profiled(fleet, bundles, board_a_run, tmp_path):
    """`remote profile --native`: each board builds the C++ runner against its own SDK (trixie's
    libonnxruntime-dev, OpenVINO's and LiteRT's libraries from the board's venv), runs each bundle's golden
    self-test and profiles it. board-a builds all three runtimes (``board_a_run``); then both boards run ONNX
    Runtime's bundles side by side, board-b building its own runner through the compiler cache the fleet shares
    (board-b's other two runtimes would repeat board-a's self-tests and profiles under emulation in the same
    userland: minutes of CI, nothing new)."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    options = ProfileOptionsRemote(iterations=10, warmup=2, native=True)
    ort = ("onnxruntime-fp32", "onnxruntime-int8")
    others = ("openvino-fp32", "openvino-int8", "litert-fp32", "litert-int8")
    one = board_a_run.report
    both = remote_profile(fleet.devices, [bundles[n] for n in ort], tmp_path / "both", options=options)
    native = {**native_rows(both), **native_rows(one)}
    expected = [(device.name, name) for device in fleet.devices for name in ort]
    assert sorted(native) == sorted(expected + [(fleet.devices[0].name, name) for name in others])
    for (device, name), row in native.items():
        assert row["status"] == "ok", (device, name, row["reason"])
        assert row["board"]["machine"] == "aarch64" and row["verify"]["passed"]
        assert row["verify"]["message"].startswith("golden outputs match on this device: 8 images")
        assert row["verify"]["runtime"].startswith(name.split("-")[0])
        assert row["latency"]["batch_1"]["p50_ms"] > 0 and row["memory"]["peak_rss_mb"] > 0 and row["board"]["overhead"] > -1
    # Each board built each of its runtimes once, for both of its bundles; board-a's were there for the second run.
    first = {key: row["board"]["steps"]["build"] for key, row in native_rows(one).items()}
    second = {key: row["board"]["steps"]["build"] for key, row in native_rows(both).items()}
    board_a, board_b = (device.name for device in fleet.devices)
    built = [first[board_a, f"{runtime}-{precision}"] for runtime in ("onnxruntime", "openvino", "litert")
             for precision in ("fp32", "int8")]
    assert all(b > 0 for b in built[0::2]) and built[1::2] == [0] * 3, built
    assert second[board_a, "onnxruntime-fp32"] == second[board_a, "onnxruntime-int8"] == 0, second
    assert second[board_b, "onnxruntime-fp32"] > 0 and second[board_b, "onnxruntime-int8"] == 0, second
    markdown = (tmp_path / "both" / "fleet.md").read_text()
    assert "| runner |" in markdown and "| native |" in markdown

    again = remote_profile(fleet.devices[:1], [bundles["openvino-int8"]], tmp_path / "again",
                           options=ProfileOptionsRemote(iterations=2, warmup=1, native=True))
    row = next(r for r in again.rows if r.runner == "native")
    assert row.ok and row.board.steps["build"] == 0.0, row  # the board kept its build


def test_deploy_with_an_inventory_recommends_per_board(fleet, set_up, tmp_path):
    """`deploy -i --for native`: the bundles that passed run on the board through Python and the native runner
    (the board's builds from the test above are reused), and the board's pick is timed by its native rows. After the
    native runner's test so that one proves each board builds each runtime once."""
    pytest.importorskip("torch")
    from mait_deploy.host.deploy.pipeline import DeployOptions, deploy

    report = deploy(None, tmp_path / "out", DeployOptions(
        targets=("litert",), precisions=("fp32", "int8"), eval_count=300, profile_batches=(1,),
        profile_iterations=10, inventory=str(fleet.inventory), devices=("board-a",), device_eval_count=EVAL_COUNT,
        recommend_for="native"))
    fleet_rows = report.devices.fleet.to_dict()["rows"]
    names = {"litert-fp32", "litert-int8"}
    assert {(r["bundle"], r["runner"]) for r in fleet_rows} == {(n, k) for n in names for k in ("python", "native")}
    assert all(r["status"] == "ok" and r["board"]["machine"] == "aarch64" for r in fleet_rows), fleet_rows
    assert all(r["board"]["steps"]["build"] == 0 for r in fleet_rows if r["runner"] == "native"), "kept its builds"
    choice = report.devices.recommended["board-a"]
    native_p50 = {f"{r['target']} {r['precision']}": r["latency"]["batch_1"]["p50_ms"] for r in fleet_rows
                  if r["runner"] == "native"}
    assert choice.bundle in names and "native runner's p50" in choice.reason, choice
    assert choice.figures_ms and all(p50 == pytest.approx(native_p50[name], rel=1e-3)
                                     for name, p50 in choice.figures_ms.items())
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## On the devices" in text and "| C++ app |" in text and "| native | yes |" in text


def test_executorch_bundles_run_on_the_board_through_the_native_runner(fleet, set_up, executorch_bundles, tmp_path):
    """A board has ExecuTorch's aarch64 wheel as an SDK (no torch, no Python runtime): `remote profile` builds the
    native runner there and the Python device side verifies, scores and profiles each bundle through its library;
    `--native` adds the C++ runner's own rows from the same build."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    work = fleet.root / "root" / fleet.workdirs["board-a"]
    site = next((work / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "executorch" / "share" / "cmake" / "executorch-config.cmake").is_file()
    assert not (site / "torch").exists() and not (site / "pandas").exists(), "the SDK wheel came with its deps"
    out = tmp_path / "out"
    report = remote_profile(fleet.devices[:1], list(executorch_bundles.values()), out, eval_source="fashion-mnist",
                            eval_count=EVAL_COUNT, options=ProfileOptionsRemote(**PROFILE, native=True))
    rows = {(row["bundle"], row["runner"]): row for row in report.to_dict()["rows"]}
    for precision in ("fp32", "int8"):
        python_row, native_row = rows[f"executorch-{precision}", "python"], rows[f"executorch-{precision}", "native"]
        for row in (python_row, native_row):
            assert row["status"] == "ok", (precision, row["runner"], row["reason"])
            assert row["board"]["machine"] == "aarch64" and row["verify"]["passed"]
            assert row["latency"]["batch_1"]["p50_ms"] > 0
        verified = json.loads((out / "board-a" / f"executorch-{precision}" / "verify.json").read_text())
        assert verified["runtime"]["via"] == "native library"
        assert abs(python_row["board"]["top1"] - python_row["board"]["host_top1"]) <= 0.02, python_row
        assert native_row["verify"]["runtime"].startswith("executorch")
    builds = [rows["executorch-fp32", "python"]["board"]["steps"]["native_build"],
              rows["executorch-int8", "python"]["board"]["steps"]["native_build"]]
    assert builds[0] > 0 and builds[1] == 0, builds  # built once on the board, for both bundles and both rows

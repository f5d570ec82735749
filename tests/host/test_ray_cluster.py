"""`deploy --cluster`: a real Ray cluster on this machine (a head and a worker node, each its own `ray start`, one
CPU each, on 127.0.0.1): bundles that match the local build's, Ctrl-C leaves no build running and no temporary
folder, and a worker node killed mid-build fails only the builds it ran."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow

TASK_TITLE = "ray::_ray_job"  # the process title of a Ray worker while it runs a build


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = root / "tmp"  # the workers' temp folder: where a build's folder would be left
        self.tmp.mkdir()
        self.env = {**os.environ, "TMPDIR": str(self.tmp), "RAY_USAGE_STATS_ENABLED": "0"}
        self.worker: subprocess.Popen | None = None

    def ray(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        return subprocess.run([ray, *args], env=self.env, capture_output=True, text=True, timeout=120, **kwargs)

    def start(self) -> None:
        common = ("--num-cpus=1", "--object-store-memory=300000000", "--disable-usage-stats")
        done = self.ray("start", "--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--temp-dir={self.root / 'ray'}", *common)
        assert done.returncode == 0, done.stderr[-2000:]
        self.start_worker()

    def start_worker(self) -> None:
        """The second node: `ray start --block` in a session of its own, so killing it kills the node."""
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        self.worker = subprocess.Popen([ray, "start", f"--address={self.address}", "--num-cpus=1", "--block",
                                        "--object-store-memory=300000000", "--disable-usage-stats"],
                                       env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = self.ray("status", f"--address={self.address}")
            if status.stdout.count("node_") >= 2:
                return
            time.sleep(2)
        raise AssertionError(f"the worker node did not join: {status.stdout[-1000:]}")

    def kill_worker(self) -> None:
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.kill_worker()
        self.ray("stop", "--force")


def build_processes(session: int | None = None) -> list[int]:
    """Processes running a build task (in ``session``, when given)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if title.startswith(TASK_TITLE) and (session is None or os.getsid(int(pid)) == session):
                found.append(int(pid))
        except (OSError, ProcessLookupError):
            continue
    return found


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


@pytest.fixture()
def cluster():
    root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    running = Cluster(root)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def options(**kwargs):
    from mait_deploy.host.deploy.pipeline import DeployOptions

    return DeployOptions(**{"targets": ("onnxruntime",), "precisions": ("fp32", "int8"), "eval_count": 300,
                            "calibration_count": 64, "profile_batches": (1,), "profile_iterations": 5, **kwargs})


def test_cluster_builds_match_local_ones_a_lost_node_fails_only_its_builds_and_ctrl_c_cleans_up(cluster, tmp_path,
                                                                                             bundle_facts):
    """One cluster for the three checks (starting one takes seconds)."""
    from mait_deploy.host.deploy.pipeline import deploy

    local = deploy(None, tmp_path / "local", options(jobs=1))
    remote = deploy(None, tmp_path / "cluster", options(cluster=cluster.address))
    assert [r.status for r in local.rows] == [r.status for r in remote.rows] == ["ok", "ok"]
    here, there = bundle_facts(tmp_path / "local"), bundle_facts(tmp_path / "cluster")
    assert all(fact["by"] == "ray worker" for fact in there.values())
    assert {n: {**f, "by": ""} for n, f in here.items()} == {n: {**f, "by": ""} for n, f in there.items()}

    # Ctrl-C while the cluster builds: no build keeps running, no worker's folder is left, nothing half-written.
    command = [sys.executable, "-m", "mait_deploy.cli", "deploy", "-o", str(tmp_path / "interrupted"), "--targets",
               "onnxruntime", "--precisions", "fp32,int8", "--eval-count", "300", "--cluster", cluster.address]
    interrupted = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: build_processes())
        time.sleep(1)
        interrupted.send_signal(signal.SIGINT)
        interrupted.communicate(timeout=120)
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
    assert interrupted.returncode != 0
    wait_for(lambda: not build_processes(), timeout=60)
    assert not list(cluster.tmp.glob("mait-job-*")), list(cluster.tmp.iterdir())
    bundles = tmp_path / "interrupted" / "bundles"
    assert not bundles.exists() or not [p for p in bundles.iterdir() if p.name.startswith(".")]

    # The worker node dies while it runs a build: that build's row fails with the reason, the head runs the rest.
    session = os.getsid(cluster.worker.pid)
    result = {}
    thread = threading.Thread(target=lambda: result.update(report=deploy(
        None, tmp_path / "lost", options(cluster=cluster.address))))
    thread.start()
    wait_for(lambda: build_processes(session))
    cluster.kill_worker()
    thread.join(timeout=900)
    rows = {f"{r.target}-{r.precision}": r for r in result["report"].rows}
    failed = [name for name, row in rows.items() if row.status == "failed"]
    assert failed and len(failed) < len(rows), {n: (r.status, r.reason) for n, r in rows.items()}
    assert all("Ray" in rows[name].reason and "the other builds went on" in rows[name].reason for name in failed)
    assert all(rows[name].status == "ok" for name in rows if name not in failed)

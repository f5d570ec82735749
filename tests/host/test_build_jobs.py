"""A deploy's builds as jobs (host/deploy/jobs.py) on worker processes (executors.py): the same bundles as one
after the other in this process, a worker that dies fails only its own job, a worker of another CPU kind refuses,
an archive damaged on its way is refused and leaves nothing. Ray's cluster: test_ray_cluster.py."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from mait_deploy.errors import BundleError, UnsupportedOption
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.deploy.pipeline import DeployOptions, deploy
from mait_deploy.host.jobs.executors import InProcess, LocalProcesses
from mait_deploy.host.jobs.job import BuildJob, land, run_job


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The shipped checkpoint's export and a small calibration and evaluation set, as jobs carry them."""
    from mait_deploy.host.compile.api import DEFAULT_DATA, load_data
    from mait_deploy.host.compile.source import source_from_checkpoint
    from mait_deploy.host.jobs.job import build_inputs

    source = source_from_checkpoint(None, tmp_path_factory.mktemp("export"))
    calibration, evaluation = load_data(source, DEFAULT_DATA, CalibrationOptions(count=64), DEFAULT_DATA, 200)
    return build_inputs(source, calibration, evaluation)


OLD_ORT_BUNDLE = str(Path(__file__).parents[1] / "fixtures" / "release_0_1" / "bundle_ort_fp32")


def job(precision: str = "fp32", target: str = "onnxruntime") -> BuildJob:
    return BuildJob(f"{target}-{precision}", target, precision,
                    CompileOptions(precision=precision, calibration=CalibrationOptions(count=64), force=True))


def test_a_worker_of_another_cpu_kind_refuses_and_a_damaged_archive_leaves_nothing(inputs, tmp_path):
    # A host of another kind than this machine, whichever kind this is (an AVX2-only Zen 3 is x86-avx2 itself).
    other_class = "x86-vnni" if inputs.host_isa["int8_class"] == "x86-avx2" else "x86-avx2"
    other = dataclasses.replace(inputs, host_isa={**inputs.host_isa, "int8_class": other_class,
                                                  "bf16": not inputs.host_isa["bf16"]})
    outcome = run_job(job(), other, "test")
    assert outcome.status == "failed" and "is not the host's" in outcome.reason and "-O device_isa" in outcome.reason
    outcome = run_job(job(), inputs, "test")
    assert outcome.status == "ok" and outcome.archive and len(outcome.archive_sha256) == 64
    damaged = dataclasses.replace(outcome, archive=outcome.archive[:-10] + bytes(10))
    with pytest.raises(BundleError, match="arrived damaged"):
        land(damaged, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    land(outcome, tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["build"]["built_on"]["by"] == "test"


def _kill_workers_while(running: threading.Event, every: bool) -> None:
    """SIGKILL this process's worker processes (once, or every one that appears) while ``running`` is set."""
    import multiprocessing

    while running.is_set():
        victims = [p for p in multiprocessing.active_children() if p.pid and p.is_alive()]
        if victims:  # killed as it starts (a worker needs seconds to import before it can finish a job)
            for process in victims:
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not every:
                return
        time.sleep(0.05)


@pytest.mark.parametrize("every", [False, True], ids=["killed-once", "killed-every-time"])
def test_a_worker_that_dies_fails_only_its_own_job(inputs, every):
    """Killed once, the jobs it broke are tried again one at a time and finish; a job whose worker dies every
    time fails with the reason, and the run returns."""
    running = threading.Event()
    running.set()
    killer = threading.Thread(target=_kill_workers_while, args=(running, every), daemon=True)
    finished = []
    killer.start()
    try:
        outcomes = LocalProcesses(2).run([job()], {"model": inputs}, finished.append)
    finally:
        running.clear()
        killer.join()
    assert [o.name for o in finished] == ["onnxruntime-fp32"]
    if every:
        assert outcomes[0].status == "failed" and "worker process died" in outcomes[0].reason
    else:
        assert outcomes[0].status == "ok", outcomes[0].reason


@pytest.mark.slow
def test_jobs_2_builds_the_bundles_jobs_1_builds(tmp_path, bundle_facts):
    """The same rows, gates, golden outputs and artifacts from two worker processes as from this process."""
    facts = {}
    for jobs in (1, 2):
        # OpenVINO's: its IR text once depended on what the process had built before (backends/openvino).
        options = DeployOptions(targets=("onnxruntime", "openvino"), precisions=("fp32", "int8"), eval_count=300,
                                calibration_count=64, profile_batches=(1,), profile_iterations=5, jobs=jobs)
        report = deploy(None, tmp_path / f"jobs{jobs}", options)
        assert [r.status for r in report.rows] == ["ok"] * 4, [(r.target, r.precision, r.reason) for r in report.rows]
        facts[jobs] = bundle_facts(tmp_path / f"jobs{jobs}")
    assert {name: fact["by"] for name, fact in facts[1].items()} == {
        name: "host" for name in ("onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-int8")}
    assert all(fact["by"] == "local worker process" for fact in facts[2].values())
    for name, fact in facts[1].items():
        assert {**fact, "by": ""} == {**facts[2][name], "by": ""}, name


def test_jobs_options_are_checked():
    with pytest.raises(UnsupportedOption, match="--jobs must be at least 1"):
        DeployOptions(jobs=0)
    with pytest.raises(UnsupportedOption, match="cannot be combined"):
        DeployOptions(jobs=2, cluster="auto")
    assert InProcess().workers == 1


def test_workers_take_the_longest_builds_first_and_a_share_of_the_cores_each():
    from mait_deploy.device.runner import usable_cores
    from mait_deploy.host.jobs.schedule import longest_first
    from mait_deploy.host.jobs.share import core_shares

    names = [j.name for j in longest_first([job("fp32", "tensorrt"), job("fp32"), job("int8", "executorch"),
                                            job("fp32", "openvino"), job("int8", "litert")])]
    assert names[:2] == ["executorch-int8", "litert-int8"]
    assert names.index("onnxruntime-fp32") < names.index("tensorrt-fp32")  # TensorRT FP32 takes its gate
    cores = usable_cores()
    shares = core_shares(len(cores))
    assert sorted(c for share in shares for c in share) == cores and all(len(share) == 1 for share in shares)
    assert [len(share) for share in core_shares(1)] == [len(cores)]
    assert len(core_shares(len(cores) + 1)) == len(cores) + 1  # more workers than cores: they share


def _share_in_a_worker(cores: list[int]) -> dict:
    from mait_deploy.device.bundle import load_bundle
    from mait_deploy.host.jobs.share import keep_to

    keep_to(len(cores), cores)
    import torch  # imported after: it reads OMP_NUM_THREADS

    with load_bundle(OLD_ORT_BUNDLE) as runner:  # a runner whose options name no thread count
        return {"affinity": sorted(os.sched_getaffinity(0)), "torch": torch.get_num_threads(),
                "runner": runner.options.threads}


def test_a_worker_keeps_its_runtimes_to_its_share():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mait_deploy.device.runner import usable_cores

    cores = usable_cores()[:1]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seen = pool.submit(_share_in_a_worker, cores).result(timeout=120)
    assert seen == {"affinity": cores, "torch": 1, "runner": 1}


UNGUARDED_SCRIPT = """
import pickle, sys
from mait_deploy.host.jobs.executors import LocalProcesses
from mait_deploy.host.jobs.job import BuildJob
from mait_deploy.host.compile.spec import CompileOptions

inputs = pickle.load(open(sys.argv[1], "rb"))
jobs = [BuildJob(f"onnxruntime-fp32-{i}", "onnxruntime", "fp32", CompileOptions(precision="fp32", force=True))
        for i in range(2)]
outcomes = LocalProcesses(2).run(jobs, {"model": inputs}, done=lambda outcome: None)
print([outcome.status for outcome in outcomes])
"""


def test_a_script_without_a_main_guard_fails_its_jobs_instead_of_hanging(inputs, tmp_path):
    """Spawned workers re-run a script's top level; one that builds at the top level kills every worker as it
    starts. The run must end (each job failed with the reason), not wait forever on a worker that is gone."""
    import pickle
    import subprocess
    import sys

    (tmp_path / "inputs.pickle").write_bytes(pickle.dumps(inputs))
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "inputs.pickle")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['failed', 'failed']"


def test_a_worker_that_dies_between_two_submits_does_not_end_the_run(monkeypatch):
    """A pool broken by a worker that died while another job finished refuses the next submit: the run goes on
    (the jobs of the dead worker tried again alone, the refused one on a new pool) instead of raising
    BrokenProcessPool to the caller (an equal-accuracy sweep lost 48 minutes of builds that way: one worker killed
    by the kernel's OOM killer, the next submit raised)."""
    import concurrent.futures
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from mait_deploy.host.jobs import executors
    from mait_deploy.host.jobs.job import BuildOutcome

    pools = []

    class Pool:  # stands in for ProcessPoolExecutor: the first pool breaks after its first job
        def __init__(self, *args, **kwargs):
            self.index, self.submitted, self._processes = len(pools), 0, {}
            pools.append(self)

        def submit(self, function, job):
            self.submitted += 1
            future = Future()
            if self.index == 0 and self.submitted == 2:  # its worker dies: the pool never finishes this one
                return future
            if self.index == 0 and self.submitted > 2:  # ... and refuses what comes after
                raise BrokenProcessPool("a child process terminated abruptly")
            future.set_result(BuildOutcome(job.name, "ok"))
            return future

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(executors, "job_memory_bytes", lambda inputs: 1)  # no inputs to read: nothing runs
    jobs = [BuildJob(f"job-{i}", "onnxruntime", "fp32", CompileOptions(precision="fp32")) for i in range(4)]
    finished = []
    outcomes = executors.LocalProcesses(2).run(jobs, {"model": None}, finished.append)
    assert sorted(o.name for o in finished) == [f"job-{i}" for i in range(4)]
    assert [o.status for o in outcomes] == ["ok"] * 4 and len(pools) > 1


GUARDED_BUILD = """
import pickle, sys
from mait_deploy.host.jobs.executors import LocalProcesses
from mait_deploy.host.jobs.job import BuildJob
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions

if __name__ == "__main__":
    inputs = pickle.load(open(sys.argv[1], "rb"))
    job = BuildJob("litert-int8", "litert", "int8", CompileOptions(precision="int8",
                   calibration=CalibrationOptions(count=64), force=True))
    LocalProcesses(1).run([job], {"model": inputs}, done=lambda outcome: None)
"""


def _spawned_children(parent: int) -> list[int]:
    """The multiprocessing workers whose parent is ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_worker_ends_and_removes_the_runs_folder_when_the_deploying_process_is_killed(inputs, tmp_path):
    """SIGKILL (or the OOM killer) runs no clean-up in the deploying process: its worker must not build on for
    nobody, holding gigabytes and a folder under the temp dir (two orphaned builders were found doing so)."""
    import pickle
    import subprocess
    import sys

    (tmp_path / "inputs.pickle").write_bytes(pickle.dumps(inputs))
    (tmp_path / "build.py").write_text(GUARDED_BUILD)
    temp = tmp_path / "tmp"
    temp.mkdir()
    parent = subprocess.Popen([sys.executable, str(tmp_path / "build.py"), str(tmp_path / "inputs.pickle")],
                              cwd=tmp_path, env={**os.environ, "TMPDIR": str(temp)})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline and parent.poll() is None:
            workers = _spawned_children(parent.pid)
            time.sleep(0.2)
        assert workers, "no worker started"
        assert list(temp.glob("mait-jobs-*")), "the run's folder"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
            time.sleep(0.2)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "the worker builds on after its parent"
        assert not list(temp.glob("mait-jobs-*"))
    finally:
        parent.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

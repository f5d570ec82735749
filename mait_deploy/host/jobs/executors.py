"""Where a deploy's build jobs run (jobs.py): this process (``--jobs 1``), local worker processes (``--jobs N``)
or a Ray cluster (``--cluster ADDRESS``, the ``cluster`` extra).

Each executor keeps at most as many jobs in flight as it has workers and hands a job the gates measured so far,
so a job that builds bytes another already gated takes that gate. A job whose worker dies fails its own row with
the reason; the others finish. Ctrl-C cancels what is outstanding (workers end, their folders are removed); a
deploying process killed outright (SIGKILL, the OOM killer) takes its workers with it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

from mait_deploy._runtime_logs import QUIET_RUNTIMES_ENV, quiet_third_party
from mait_deploy.device.profiling.state import meminfo_kb
from mait_deploy.device.runner import usable_cores
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile import target as target_module
from mait_deploy.host.jobs.job import JOB_MEMORY_BYTES, BuildInputs, BuildJob, BuildOutcome, job_memory_bytes, run_job
from mait_deploy.host.jobs.ray_cluster import RayCluster
from mait_deploy.host.jobs.schedule import longest_first, remember_gates, with_known_gates
from mait_deploy.host.jobs.share import core_shares, keep_to

Done = Callable[[BuildOutcome], None]
Progress = Callable[[str], None]
Inputs = Mapping[str, BuildInputs]  # BuildJob.source -> what its job builds from


class Executor(Protocol):
    name: str
    workers: int

    def run(self, jobs: Sequence[BuildJob], inputs: Inputs, done: Done,
            progress: Progress | None = None) -> list[BuildOutcome]:
        """Every job's outcome, in the order of ``jobs`` (each built from ``inputs[job.source]``); ``done`` is called
        as each finishes (``progress``: the steps inside a job, where the job runs in this process)."""


def available_memory() -> int | None:
    """The memory this machine can give new processes (MemAvailable), None where the system does not say."""
    available_kb = meminfo_kb().get("MemAvailable")
    return None if available_kb is None else available_kb * 1024


def default_jobs() -> int:
    """Worker processes for this machine: one per core, as many default-model builds as fit in the memory that is
    free (a larger model's jobs declare more, and the workers take no more of them at once than fit: LocalProcesses)."""
    cores = len(usable_cores())
    free = available_memory()
    return max(1, cores if free is None else min(cores, free // JOB_MEMORY_BYTES))


def admissible(queue: Sequence[BuildJob], flying: Sequence[BuildJob], declared: Mapping[str, int],
               limit: int | None) -> BuildJob | None:
    """The first job of ``queue`` whose declared memory fits beside the jobs ``flying`` within ``limit``; a job
    runs alone whatever it declares (None: wait for one in flight to finish)."""
    if not flying or limit is None:
        return queue[0] if queue else None
    held = sum(declared.get(job.name, 0) for job in flying)
    return next((job for job in queue if held + declared.get(job.name, 0) <= limit), None)


class Memory(NamedTuple):
    """A run's memory: what each job declares (by name) and what this machine can give (None: unknown)."""

    declared: Mapping[str, int]
    limit: int | None


class InProcess:
    """``--jobs 1``: one job after the other in this process."""

    name, workers = "this process", 1

    def run(self, jobs: Sequence[BuildJob], inputs: Inputs, done: Done,
            progress: Progress | None = None) -> list[BuildOutcome]:

        outcomes = []
        for job in jobs:
            # In this process: a job reads and adds to target._GATES itself.
            outcome = run_job(with_known_gates(job, target_module._GATES), inputs[job.source], "host",
                              progress=progress)
            done(outcome)
            outcomes.append(outcome)
        return outcomes


_WORKER_INPUTS: Inputs | None = None
_WORKER_TEMP: str | None = None


def _start_worker(inputs_file: str, temp_root: str, shares: Any, parent: int) -> None:
    """A worker process keeps the run's inputs (read once, from ``inputs_file``), takes a share of the cores
    (``shares``: a queue of core lists, one per worker), is as quiet as the deploying process (its environment is
    inherited) and ignores the terminal's Ctrl-C: the parent ends it, or its death does (``parent``: its id)."""
    import queue
    import signal

    global _WORKER_INPUTS, _WORKER_TEMP
    _end_with_parent(parent, temp_root)  # the parent's id from the parent: it may die before this line runs
    with open(inputs_file, "rb") as handle:
        _WORKER_INPUTS, _WORKER_TEMP = pickle.load(handle), temp_root
    try:
        cores = shares.get(timeout=5)
        keep_to(len(cores), cores)
    except queue.Empty:  # more workers than shares (a pool never starts more): the runtimes' own defaults
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get(QUIET_RUNTIMES_ENV) == "1":
        quiet_third_party()


def _end_with_parent(parent: int, temp_root: str) -> None:
    """A worker whose deploying process is gone (SIGKILL, the OOM killer, a script's SIGTERM: nothing ran its
    clean-up) removes the run's folder and exits instead of building for nobody. It polls its parent's id, which
    changes when the parent dies (the orphan is re-parented); a pool that ends normally ends its workers first."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        shutil.rmtree(temp_root, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, name="mait-deploy-parent-watch", daemon=True).start()


def _worker_job(job: BuildJob) -> BuildOutcome:
    assert _WORKER_INPUTS is not None
    return run_job(job, _WORKER_INPUTS[job.source], "local worker process", _WORKER_TEMP)


class LocalProcesses:
    """``--jobs N``: N worker processes on this machine (spawned: no state forked from the deploying process)."""

    name = "local worker processes"

    def __repr__(self) -> str:
        return f"{self.workers} {self.name}"

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise UnsupportedOption(f"--jobs must be at least 1, got {workers}")
        self.workers = workers

    def run(self, jobs: Sequence[BuildJob], inputs: Inputs, done: Done,
            progress: Progress | None = None) -> list[BuildOutcome]:
        outcomes: dict[str, BuildOutcome] = {}
        pending = longest_first(jobs)
        gates: dict[str, Any] = {}
        # What each job declares it holds (job_memory_bytes) against what this machine can give: two 224-px
        # builds that would not fit side by side run one after the other, the others beside them.
        memory = Memory({job.name: job_memory_bytes(inputs[job.source]) for job in jobs}, available_memory())
        while pending:
            crashed = self._run_pool(pending, inputs, done, outcomes, gates, memory)
            # A dead worker breaks the whole pool: the jobs it had in flight are tried again one at a time, so only
            # the job that kills its worker fails (with the reason) and the others finish.
            pending = [job for job in pending if job.name not in outcomes]
            for job in crashed:
                if job.name in outcomes:
                    continue
                alone = self._run_pool([job], inputs, done, outcomes, gates, memory)
                if alone:
                    outcome = BuildOutcome(job.name, "failed", "its worker process died (killed by a signal, or "
                                                               "out of memory); the other builds went on")
                    outcomes[job.name] = outcome
                    done(outcome)
            pending = [job for job in pending if job.name not in outcomes]
        return [outcomes[job.name] for job in jobs]

    def _run_pool(self, jobs: Sequence[BuildJob], inputs: Inputs, done: Done,
                  outcomes: dict[str, BuildOutcome], gates: dict[str, Any], memory: Memory) -> list[BuildJob]:
        """Run ``jobs`` on a fresh pool; the jobs in flight when a worker died (empty when none did)."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        queue = list(jobs)
        # The workers' folders live under one of ours, removed when the pool ends however it ends (a worker
        # terminated after Ctrl-C cannot clean up after itself).
        temp_root = tempfile.mkdtemp(prefix="mait-jobs-")
        context = multiprocessing.get_context("spawn")
        workers = min(self.workers, len(jobs))
        # The inputs reach the workers through a file in that folder, not in their start-up message: a worker that
        # dies while starting (a script without `if __name__ == "__main__":` re-runs itself in it) would leave this
        # process blocked writing megabytes that nobody reads; with a small message the pool reports it broken.
        inputs_file = os.path.join(temp_root, "inputs.pickle")
        try:
            with open(inputs_file, "wb") as handle:
                pickle.dump(dict(inputs), handle, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # a full disk, Ctrl-C: nothing is left behind
            shutil.rmtree(temp_root, ignore_errors=True)
            raise
        shares = context.Queue()
        for cores in core_shares(workers):
            shares.put(cores)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                   initargs=(inputs_file, temp_root, shares, os.getpid()))
        flying: dict[Any, BuildJob] = {}
        ended = False
        try:
            while queue or flying:
                while len(flying) < self.workers:
                    job = admissible(queue, list(flying.values()), memory.declared, memory.limit)
                    if job is None:
                        break
                    try:
                        future = pool.submit(_worker_job, with_known_gates(job, gates))
                    except BrokenProcessPool:  # a worker died since the last wait: this job never started
                        return list(flying.values())
                    flying[future] = job
                    queue.remove(job)
                finished, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = flying.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        return [job, *flying.values()]
                    remember_gates(outcome, gates)
                    outcomes[job.name] = outcome
                    done(outcome)
            ended = True
            return []
        finally:
            if ended:
                pool.shutdown(wait=True)
            else:  # Ctrl-C, a dead worker or an error here: nothing outstanding may run on
                _stop(pool)
            shutil.rmtree(temp_root, ignore_errors=True)
            shares.cancel_join_thread()  # shares no worker took (a pool starts workers as jobs need them)
            shares.close()


def _stop(pool: Any) -> None:
    """End a pool now: outstanding jobs cancelled, its processes terminated (after Ctrl-C they would run on)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def check_executor_options(jobs: int | None, cluster: str | None) -> None:
    """``--jobs`` and ``--cluster`` as deploy and compare take them."""
    if jobs is not None and (isinstance(jobs, bool) or jobs < 1):
        raise UnsupportedOption(f"--jobs must be at least 1, got {jobs}")
    if jobs is not None and cluster:
        raise UnsupportedOption("--jobs and --cluster cannot be combined: the cluster decides how many builds run")


def executor_for(jobs: int | None, cluster: str | None, count: int | None = None) -> Executor:
    """The executor ``--jobs``/``--cluster`` ask for (jobs None: the machine's default) for ``count`` jobs: a
    single job runs in this process (a worker would only add its start-up)."""
    if cluster:
        return RayCluster(cluster)
    check_executor_options(jobs, cluster)
    workers = default_jobs() if jobs is None else jobs
    workers = min(workers, count) if count is not None else workers
    return InProcess() if workers <= 1 else LocalProcesses(workers)

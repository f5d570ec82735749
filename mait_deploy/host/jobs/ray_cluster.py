"""``--cluster ADDRESS``: a deploy's build jobs as Ray tasks (the ``cluster`` extra).

The run's inputs are put in Ray's object store once (each node fetches them once); each job is a task that
declares one CPU and the memory a build holds (job.job_memory_bytes), so Ray puts no more builds on a node than
fit; nothing is retried behind the user's back (a lost node fails its rows, with the reason). A worker's folder is
its own (no shared filesystem): the bundle comes back as a packed archive and its sha256. Ctrl-C cancels the
outstanding tasks (each task's folder is removed as it stops) and disconnects.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from mait_deploy._deps import require
from mait_deploy._runtime_logs import QUIET_ENVIRONMENT, quiet_third_party
from mait_deploy.errors import MaitDeployError
from mait_deploy.host.jobs.job import BuildInputs, BuildJob, BuildOutcome, job_memory_bytes, run_job
from mait_deploy.host.jobs.schedule import longest_first, remember_gates, with_known_gates
from mait_deploy.host.jobs.share import keep_to

CANCEL_WAIT_S = 60.0  # how long Ctrl-C waits for the cancelled builds to stop


def _ray_job(job: BuildJob, inputs: BuildInputs) -> BuildOutcome:
    import os

    import ray

    os.environ.update(QUIET_ENVIRONMENT)
    quiet_third_party()
    # The CPUs the task was given (one): Ray sets OMP_NUM_THREADS to it; the runners take as many.
    assigned: dict[str, float] = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
    keep_to(max(1, int(assigned.get("CPU", 1))))
    return run_job(job, inputs, "ray worker")


class RayCluster:
    """Build jobs on the Ray cluster at ``address`` ("auto": the one running on this machine)."""

    name = "the Ray cluster"

    def __init__(self, address: str) -> None:
        self.address = address
        self.workers = 0  # the cluster's CPUs, read when connected

    def run(self, jobs: Sequence[BuildJob], inputs: Mapping[str, BuildInputs], done: Any,
            progress: Any = None) -> list[BuildOutcome]:

        ray = require("ray", "cluster")
        try:
            ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False,
                     configure_logging=True)
        except Exception as err:  # ConnectionError, ValueError, RuntimeError: Ray's own words, one line
            raise MaitDeployError(f"cannot reach the Ray cluster at {self.address}: "
                                  f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") \
                from None
        try:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
            task = ray.remote(num_cpus=1, max_retries=0)(_ray_job)
            # Each job declares its memory (job_memory_bytes) so Ray puts no more builds on a node than fit; one
            # larger than every node is asked for the largest node's, or it would wait for a node forever.
            largest = max((n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
            shared = {name: ray.put(value) for name, value in inputs.items()}
            outcomes: dict[str, BuildOutcome] = {}
            gates: dict[str, Any] = {}
            queue = longest_first(jobs)
            flying: dict[Any, BuildJob] = {}  # Ray's ObjectRef -> its job
            try:
                while queue or flying:
                    while queue and len(flying) < self.workers:
                        job = queue.pop(0)
                        memory = job_memory_bytes(inputs[job.source])
                        options = task.options(memory=min(memory, largest) if largest else memory)
                        flying[options.remote(with_known_gates(job, gates), shared[job.source])] = job
                    ready, _ = ray.wait(list(flying), num_returns=1)
                    for ref in ready:
                        job = flying.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except ray.exceptions.RayError as err:
                            outcome = BuildOutcome(job.name, "failed", _lost(err))
                        remember_gates(outcome, gates)
                        outcomes[job.name] = outcome
                        done(outcome)
            except BaseException:
                # A KeyboardInterrupt in each task: its folder is removed as it stops. Waited for (a bounded
                # while): a driver that disconnects first has Ray kill its tasks before they clean up.
                for ref in flying:
                    ray.cancel(ref, recursive=True)
                ray.wait(list(flying), num_returns=len(flying), timeout=CANCEL_WAIT_S)
                raise
            return [outcomes[job.name] for job in jobs]
        finally:
            ray.shutdown()


def _lost(err: BaseException) -> str:
    """Why a task gave no outcome, in one line (a node or worker that died, or a task Ray could not run)."""
    kind = type(err).__name__
    text = " ".join(str(err).split())[:300]
    if "NodeDied" in kind or "node" in text.lower() and "died" in text.lower():
        return f"the Ray node running this build was lost ({kind}); the other builds went on"
    if "WorkerCrashed" in kind or "ActorDied" in kind:
        return f"the Ray worker running this build died ({kind}); the other builds went on"
    return f"Ray could not run this build: {kind}: {text}"

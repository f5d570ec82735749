"""A build worker's share of the machine: its own cores and as many threads as it has cores.

Two builds side by side whose runtimes each start a thread per core run several times slower than one after the
other (LiteRT's INT8 calibration in torch: 13 s alone, 90 s beside ExecuTorch's lowering on 2 cores), so a
worker keeps every runtime to its share: the cores it may run on (the OS enforces them; OpenVINO and OpenMP size
their pools from them), the OpenMP/BLAS variables torch reads when it starts, and the runners' thread count.
"""

from __future__ import annotations

import os
import sys

from mait_deploy.device.runner import set_thread_budget, usable_cores

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def core_shares(workers: int) -> list[list[int]]:
    """``workers`` disjoint sets of this process's cores, as even as they go (more workers than cores: one core
    each, shared round-robin)."""
    cores = usable_cores()
    if workers >= len(cores):
        return [[cores[i % len(cores)]] for i in range(workers)]
    return [cores[i::workers] for i in range(workers)]


def keep_to(threads: int, cores: list[int] | None = None) -> None:
    """Keep this process's runtimes to ``threads`` threads (on ``cores``, where given). Called before a build
    imports torch or a runtime; a torch already imported is told directly."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    set_thread_budget(threads)

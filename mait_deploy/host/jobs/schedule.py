"""What every executor does the same way: the order jobs start in and the gates they hand on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from mait_deploy.host import catalog
from mait_deploy.host.compile import target as target_module
from mait_deploy.host.jobs.job import BuildJob, BuildOutcome


def longest_first(jobs: Sequence[BuildJob]) -> list[BuildJob]:
    """The order workers take ``jobs`` in: the longest builds first (by their targets' typical build seconds), so
    that the slowest (ExecuTorch INT8's lowering, over a minute) does not start last while the others wait; equal
    ones keep their order (TensorRT FP32 after ONNX Runtime FP32, whose gate it takes)."""

    def seconds(job: BuildJob) -> float:
        return catalog.target(job.target).capabilities.typical_build_seconds.get(job.precision, 3.0)

    return sorted(jobs, key=seconds, reverse=True)


def with_known_gates(job: BuildJob, gates: dict[str, Any]) -> BuildJob:
    """``job`` carrying the gates measured so far (a job that builds bytes another already gated takes that gate)."""
    return replace(job, known_gates=dict(gates))


def remember_gates(outcome: BuildOutcome, gates: dict[str, Any]) -> None:
    """Keep the gates a finished job measured: for the jobs still to start, and in this process's memo."""
    for key, value in outcome.new_gates.items():
        gates.setdefault(key, value)
        target_module._remember_gate(key, *value)

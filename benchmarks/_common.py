"""Helpers shared by the benchmark scripts: machine facts, side-by-side timing, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy.device.profiling.side_by_side import side_by_side as _side_by_side
from mait_deploy.device.profiling.stats import latency_stats

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    from mait_deploy.device.profiling.isa import cpu_isa

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "avx512_vnni": "avx512_vnni" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx": "amx_tile" in flags, "isa": cpu_isa(), "load_avg": os.getloadavg()}


def side_by_side(runs: dict[str, Callable[[], Any]], iterations: int, warmup: int = 3, batch: int = 1,
                 min_seconds: float = 0.0, block: int = 8) -> dict[str, dict[str, Any]]:
    """Time several callables side by side with the library's block method (mait_deploy.device.profiling.
    side_by_side: blocks of consecutive calls, first call of each block dropped, order reversed every round).

    Returns per-name latency statistics (ms) of the kept calls (about ``iterations`` each), plus
    ``ratio_vs_first``: median/min/max of the per-round speed ratios against the first callable.
    """
    rounds = max(2, -(-iterations // (block - 1)))
    result = _side_by_side(runs, rounds=rounds, block=block, warmup=warmup, min_seconds=min_seconds)
    stats = {}
    for name, values in result.timings_ms.items():
        entry = latency_stats(np.asarray(values) * 1e6, batch=batch).to_dict()
        entry["ratio_vs_first"] = result.ratio[name]
        entry["rounds"] = result.rounds
        stats[name] = entry
    return stats


def benchmark_parser(doc: str | None, iterations: int | None = None,
                     threads: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark script shares: ``--models`` (demo, xxs24), and where the script has them
    ``--iterations`` (with its own default) and ``--threads`` (2, this machine's cores)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,xxs24")
    if iterations is not None:
        parser.add_argument("--iterations", type=int, default=iterations)
    if threads:
        parser.add_argument("--threads", type=int, default=2)
    return parser


def benchmark_models(keys: str):
    """Yield (name, model, with_accuracy) for comma-separated keys: ``demo`` is the shipped checkpoint (None: the
    pipeline loads it; accuracy measured), ``xxs24`` is mait_xxs24_224 with seeded random weights (speed only)."""
    for key in keys.split(","):
        if key == "demo":
            yield "mait_demo_28.fmnist", None, True
        elif key == "xxs24":
            import torch

            from mait_deploy.host.model.mait import create_model

            torch.manual_seed(0)
            yield "mait_xxs24_224", create_model("mait_xxs24_224").eval(), False
        else:
            raise SystemExit(f"unknown model key {key!r}; use demo and/or xxs24")


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2, default=_default) + "\n")
    return path


def _default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")

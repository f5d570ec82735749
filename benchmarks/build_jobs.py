"""The main job (`mait-deploy deploy -o OUT`, every row) with its builds one after the other (`--jobs 1`), in
worker processes (`--jobs 2`, the default here) and, with ``--cluster``, on a Ray cluster started on this machine:
the wall time of each, alternating, fresh output each time, and whether every run gave the same rows, gates,
golden outputs and artifacts (the recommendation is the race's, which timing noise may move within a tie).

    python -m benchmarks.build_jobs --rounds 2 [--cluster] [--compare]

``--compare`` also times `mait-deploy compare` of three models (the shipped checkpoint, a random-weight variant,
an ONNX baseline) on three targets the same ways. Writes results/build_jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result

CLI = [sys.executable, "-m", "mait_deploy.cli"]


# What a build measures rather than decides: how long its gate took, the memory OpenVINO's compiled model held
# (runtime info's static_cache_mb moves by a few hundred KB from run to run, host builds too) and the threads the
# gate's runtime used (a build worker takes its share of the cores).
MEASURED = {"seconds", "static_cache_mb", "threads", "inference_num_threads"}


def _decided(value: object) -> object:
    if isinstance(value, dict):
        return {k: _decided(v) for k, v in value.items() if k not in MEASURED}
    return value


def _bundle_facts(out: Path) -> dict[str, object]:
    facts = {}
    for manifest in sorted((out / "bundles").glob("*/manifest.json")):
        data = json.loads(manifest.read_text())
        facts[manifest.parent.name] = _decided({"artifact": data["artifact"]["sha256"], "golden": data["golden"],
                                                "gate": data.get("accuracy") or {}})
    return facts


def _differences(facts: dict[str, dict]) -> list[str]:
    """bundle: field, wherever a way's bundle differs from the first way's."""
    ways = list(facts.values())
    return sorted({f"{name}: {field}" for other in ways[1:] for name, fact in ways[0].items()
                   for field in fact if other.get(name, {}).get(field) != fact[field]})


def _run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return round(time.perf_counter() - started, 1)


def _ray_head(root: Path, env: dict[str, str]) -> str:
    port = 6391
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--object-store-memory=500000000", "--disable-usage-stats", f"--temp-dir={root / 'ray'}"],
                   env=env, check=True, capture_output=True)
    return f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cluster", action="store_true", help="also through a Ray cluster started here")
    parser.add_argument("--compare", action="store_true", help="also compare 3 models x 3 targets")
    parser.add_argument("--no-deploy", action="store_true", help="only the comparison (with --compare)")
    parser.add_argument("--out", default="build_jobs", help="results/OUT.json")
    args = parser.parse_args()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    root = Path(tempfile.mkdtemp(prefix="mbj-", dir="/tmp"))
    ways = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"]}
    try:
        if args.cluster:
            ways["ray (2 CPUs, one node)"] = ["--cluster", _ray_head(root, env)]
        commands = {} if args.no_deploy else {"deploy": lambda out: [*CLI, "deploy", "-o", str(out), "--force"]}
        if args.compare:
            variant = root / "variant.onnx"
            subprocess.run([*CLI, "export", "mait_demo_28.fmnist", "-o", str(variant)], env=env, check=True,
                           capture_output=True)
            commands["compare"] = lambda out: [*CLI, "compare", "mait_demo_28.fmnist", "mait_xt_patch16_224",
                                               "--baselines", str(variant), "--targets",
                                               "onnxruntime,openvino,litert", "--precisions", "fp32", "--batch", "1",
                                               "-o", str(out), "--force"]
        results = {}
        for job, command in commands.items():
            seconds: dict[str, list[float]] = {way: [] for way in ways}
            facts = {}
            for round_index in range(args.rounds):
                order = list(ways) if round_index % 2 == 0 else list(reversed(ways))
                for way in order:
                    out = root / f"{job}-{way.split()[0]}-{way.split()[1]}-{round_index}"
                    seconds[way].append(_run(command(out) + ways[way], env))
                    if job == "deploy":
                        facts.setdefault(way, _bundle_facts(out))
                    shutil.rmtree(out, ignore_errors=True)
                    print(f"{job} {way} round {round_index}: {seconds[way][-1]} s", flush=True)
            differences = _differences(facts) if facts else None
            results[job] = {"seconds": seconds, "median_s": {w: statistics.median(v) for w, v in seconds.items()},
                            "same_bundles": None if differences is None else not differences,
                            "differences": differences}
        path = write_result(args.out, {"rounds": args.rounds, "results": results})
        print(json.dumps(results, indent=2))
        print(f"wrote {path}")
    finally:
        if args.cluster:
            subprocess.run([shutil.which("ray") or "ray", "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

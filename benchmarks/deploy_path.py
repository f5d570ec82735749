"""What the main job's path costs in bookkeeping: how often each bundle's files are hashed and which of
mait-deploy's modules a deploy enters. Runs `deploy` in this process with ``_io.sha256_file`` counted.

    python -m benchmarks.deploy_path --targets onnxruntime,openvino --precisions fp32,int8 --eval-count 1000

Run it from a checkout of any commit (it imports the ``mait_deploy`` beside it) to compare before and after:
results/deploy_path_<label>.json.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's mait_deploy, not an installed one

import mait_deploy._io as _io  # noqa: E402  (patched before any other module takes sha256_file by name)
from benchmarks._common import write_result

HASHED: collections.Counter[str] = collections.Counter()
_real = _io.sha256_file


def _counted(path, *args, **kwargs):
    HASHED[str(Path(path).resolve())] += 1
    return _real(path, *args, **kwargs)


_io.sha256_file = _counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="onnxruntime,openvino")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--eval-count", type=int, default=1000)
    parser.add_argument("--label", default="now")
    args = parser.parse_args()
    from mait_deploy.host.deploy.pipeline import DeployOptions, deploy

    options = DeployOptions(targets=tuple(args.targets.split(",")), precisions=tuple(args.precisions.split(",")),
                            eval_count=args.eval_count, profile_iterations=20)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        report = deploy(None, out, options)
        seconds = time.perf_counter() - started
        bundles = Path(out).resolve() / "bundles"
        per_bundle: dict[str, dict[str, int]] = {}
        for path, count in HASHED.items():
            if path.startswith(str(bundles)):
                name, file = Path(path).relative_to(bundles).parts[0], Path(path).name
                per_bundle.setdefault(name, {})[file] = count
    modules = sorted(m for m in sys.modules if m.startswith("mait_deploy"))
    result = {
        "label": args.label, "seconds": round(seconds, 1),
        "rows": [{"target": r.target, "precision": r.precision, "status": r.status} for r in report.rows],
        "hashes_per_bundle_file": per_bundle,
        "max_hashes_of_one_file": max((c for files in per_bundle.values() for c in files.values()), default=0),
        "modules_entered": len(modules), "modules": modules,
    }
    write_result(f"deploy_path_{args.label}", result)
    print(f"{args.label}: {len(modules)} mait_deploy modules; hashes of each bundle file: "
          f"{ {name: files for name, files in per_bundle.items()} }; {seconds:.0f} s")


if __name__ == "__main__":
    main()

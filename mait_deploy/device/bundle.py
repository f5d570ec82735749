"""Open a bundle on the device: check the manifest and every file's sha256, then hand back a runner.

Imports numpy and the chosen runtime only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mait_deploy._io import sha256_file
from mait_deploy.backends import runner_class
from mait_deploy.device.manifest import Manifest, read_manifest
from mait_deploy.device.runner import Runner, RunnerOptions
from mait_deploy.errors import BundleError, ValidationError


def check_files(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest names exists and has its recorded sha256 (a tampered or truncated file is refused)."""
    entries = [manifest.artifact, *manifest.files]
    golden = manifest.golden
    for entry_path, digest in [(e.path, e.sha256) for e in entries] + [(golden["file"], golden["sha256"])]:
        path = folder / entry_path
        if not path.is_file():
            raise BundleError(f"{folder}: {entry_path} is missing")
        if path.is_symlink():
            raise BundleError(f"{folder}: {entry_path} is a symbolic link; bundles hold plain files")
        actual = sha256_file(path)
        if actual != digest:
            raise BundleError(f"{folder}: {entry_path} does not match its sha256 in the manifest "
                              f"(modified or truncated): expected {digest[:12]}..., got {actual[:12]}...")


def load_bundle(path: str | Path, options: RunnerOptions | None = None, check_hashes: bool = True) -> Runner:
    """Open a bundle and return its runner (a context manager; the backend loads on first use or ``with``)."""
    folder = Path(path)
    manifest = read_manifest(folder)
    if check_hashes:
        check_files(folder, manifest)
    cls = runner_class(manifest.runtime["name"])
    merged = options or RunnerOptions()
    defaults = dict(manifest.runtime.get("options", {}))
    merged.extra = {**defaults, **merged.extra}
    return cls(folder, manifest, merged)


def load_golden(folder: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    with np.load(folder / manifest.golden["file"], allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@dataclass
class VerifyReport:
    bundle: str
    target: str
    precision: str
    count: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: dict[str, float]
    passed: bool
    runtime: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_bundle(path: str | Path, options: RunnerOptions | None = None) -> VerifyReport:
    """Run the golden images through the full device path (preprocess + runtime) and compare with the outputs
    recorded when the bundle was built. Raises ValidationError with the numbers on a mismatch."""
    folder = Path(path)
    runner = load_bundle(folder, options)
    golden = load_golden(folder, runner.manifest)
    with runner:
        prediction = runner.predict(golden["images"])
        info = runner.runtime_info()
    expected = golden["logits"]
    diff = float(np.abs(prediction.logits - expected).max())
    agreement = float((prediction.indices == expected.argmax(-1)).mean())
    tolerance = runner.manifest.golden["tolerance"]
    report = VerifyReport(
        bundle=str(folder), target=runner.manifest.target, precision=runner.manifest.precision,
        count=len(expected), max_abs_diff=diff, top1_agreement=agreement, tolerance=tolerance,
        passed=diff <= tolerance["max_abs_diff"] and agreement >= tolerance["min_top1_agreement"], runtime=info,
    )
    if not report.passed:
        raise ValidationError(f"{folder}: golden outputs do not match on this device: max |diff| {diff:.3g} "
                              f"(limit {tolerance['max_abs_diff']:g}), top-1 agreement {agreement * 100:.1f}% "
                              f"(limit {tolerance['min_top1_agreement'] * 100:.0f}%)")
    return report

"""Open a bundle on the device: check the manifest and every file's sha256, then hand back a runner.

Imports numpy and the chosen runtime only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mait_deploy.device.golden import GoldenSet
from mait_deploy.device.logits import compare_logits
from mait_deploy.device.manifest import Manifest, check_files, read_manifest
from mait_deploy.device.profiling.isa import cpu_isa
from mait_deploy.device.runner import Runner, RunnerOptions, runner_class
from mait_deploy.device.signing import SIGNATURE_FILE, trusted_key, verify_signature
from mait_deploy.errors import ValidationError
from mait_deploy.precision import INT8


def load_bundle(path: str | Path, options: RunnerOptions | None = None, check_hashes: bool = True) -> Runner:
    """Open a bundle and return its runner (a context manager; the backend loads on first use or ``with``).
    With a trusted key (``options.trusted_key``, else $MAIT_TRUSTED_KEY) the bundle must carry a valid signature
    by it, checked before its manifest is read; its files are then always hashed."""
    folder = Path(path)
    key = trusted_key(options.trusted_key if options else None)
    if key is not None:
        verify_signature(folder, key)
    manifest = read_manifest(folder)
    if check_hashes or key is not None:
        check_files(folder, manifest)
    cls = runner_class(manifest.runtime.name)
    merged = options or RunnerOptions()
    defaults = dict(manifest.runtime.options)
    merged.extra = {**defaults, **merged.extra}
    return cls(folder, manifest, merged)


def load_golden(folder: Path, manifest: Manifest) -> GoldenSet:
    return GoldenSet.read(Path(folder) / manifest.golden.file, manifest.golden.kind, manifest.golden.arrays)


def bundle_info(path: str | Path) -> dict[str, Any]:
    """What a bundle is, from its manifest (read and validated, files not hashed): target, precision, runtime, the
    model it holds, its accuracy gate, its files and where it was built. Numpy only: ``info`` on a board."""

    folder = Path(path)
    manifest = read_manifest(folder)
    model = manifest.model
    gate = manifest.accuracy
    details: dict[str, Any] = {
        "bundle": str(folder), "target": manifest.target, "precision": manifest.precision,
        "runtime": {"name": manifest.runtime.name, **manifest.runtime.options},
        "variant": model.get("name"), "input": [spec.shape for spec in manifest.inputs],
        "labels": list(model.get("labels") or []), "batch": manifest.batch, "created": manifest.created,
        "files": {entry.path: entry.bytes for entry in [manifest.artifact, *manifest.files]},
        "signed": (folder / SIGNATURE_FILE).is_file(),
        "built_on": manifest.build.get("host_isa", {}).get("model"), "tool_versions": manifest.tool_versions,
    }
    if gate is not None:
        details["accuracy_gate"] = {"top1": gate.top1, "drop_points": gate.drop_points, "images": gate.count,
                                    "data": gate.data, "max_drop": gate.max_drop, "passed": gate.passed}
    return details


def isa_difference(manifest: Manifest, device_isa: dict[str, Any]) -> str | None:
    """A note when an INT8 bundle runs on a CPU of another int8 class than its accuracy gate ran on (u8s8 kernels
    saturate on x86 without VNNI, Arm dot products do not...): the gate's numbers may not hold here."""
    gate_isa = manifest.accuracy.host_isa if manifest.accuracy else {}
    gated, here = gate_isa.get("int8_class"), device_isa.get("int8_class")
    if manifest.precision != INT8 or not gated or not here or gated == here:
        return None
    return (f"this INT8 bundle was gated on {gated} ({gate_isa.get('model', '?')}) and runs here on {here}: its "
            f"accuracy here may differ from the gate's; measure it with `mait-deploy evaluate` on this device")


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
    golden_kind: str = "images"  # raw images through preprocessing, or preprocessed inputs
    device_isa: dict[str, Any] = field(default_factory=dict)  # this device's CPU, beside the build host's in
    # the manifest (build.host_isa): int8 results can differ between ISA classes
    isa_note: str | None = None  # set when this device's int8 class differs from the one the gate ran on
    golden_recorded_on: dict[str, Any] | None = None  # the CPU and runtime the golden outputs came from
    tolerance_basis: str | None = None  # what the tolerance allows for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def calibration(self) -> str:
        """Where the golden outputs and their tolerance come from, against this device."""
        here = f"this device: {self.device_isa.get('int8_class', '?')} ({self.device_isa.get('model', '?')})"
        recorded = self.golden_recorded_on
        if not recorded:
            return f"golden outputs recorded on the build host (not described in this older bundle); {here}"
        runtime = recorded.get("runtime") or {}
        described = " ".join(str(part) for part in (runtime.get("runtime"), runtime.get("version")) if part)
        return (f"golden outputs recorded on {recorded.get('int8_class', '?')} ({recorded.get('cpu', '?')}) with "
                f"{described or '?'}; {here}")


def verify_bundle(path: str | Path, options: RunnerOptions | None = None) -> VerifyReport:
    """Run the golden images through the full device path (preprocess + runtime) and compare with the outputs
    recorded when the bundle was built. Raises ValidationError with the numbers on a mismatch."""
    with load_bundle(path, options) as runner:
        return verify_runner(runner)


def verify_runner(runner: Runner) -> VerifyReport:
    """verify_bundle on a bundle already opened (and hash-checked) by ``load_bundle``: the runner stays open, so
    deploy verifies, profiles and races one bundle with one load and one hash check."""
    folder = runner.bundle_dir
    golden = load_golden(folder, runner.manifest)
    logits = golden.outputs(runner.activate())
    info = runner.runtime_info()
    tolerance = runner.manifest.golden.tolerance
    comparison = compare_logits(logits, golden.logits)
    report = VerifyReport(
        bundle=str(folder), target=runner.manifest.target, precision=runner.manifest.precision,
        count=comparison.count, max_abs_diff=comparison.max_abs_diff, top1_agreement=comparison.top1_agreement,
        tolerance=tolerance.to_dict(), passed=comparison.within(tolerance), runtime=info, golden_kind=golden.kind,
        device_isa=cpu_isa(), golden_recorded_on=runner.manifest.golden.recorded_on,
        tolerance_basis=runner.manifest.golden.tolerance_basis,
    )
    report.isa_note = isa_difference(runner.manifest, report.device_isa)
    if not report.passed:
        raise ValidationError(f"{folder}: golden outputs do not match on this device: "
                              f"{comparison.describe(tolerance)}; {report.calibration()}")
    return report

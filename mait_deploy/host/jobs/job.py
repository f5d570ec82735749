"""A deploy's builds as independent jobs: one target x precision each (compile, calibrate, gate, golden), run in
this process, in local worker processes or on a Ray cluster (executors.py).

A job's inputs and its result travel as bytes and arrays, never as paths: the verified FP32 ONNX and the
PyTorch module it came from, the calibration and evaluation images and the FP32 reference logits (``BuildInputs``,
sent once per worker), and back the bundle as the project's packed archive with its sha256, checked and unpacked
on arrival (``land``). Nothing assumes a shared filesystem.

A build chooses kernels by the CPU it runs on (ONNX Runtime's INT8 format, OpenVINO's BF16): a worker whose CPU is
not of the host's kind (int8 class and BF16) refuses the job rather than build a bundle for itself, unless the job
names the device's class (``-O device_isa``).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy.device.archive import pack_bundle, unpack_bundle
from mait_deploy.device.data.sources import Dataset
from mait_deploy.device.load_probe import built_here
from mait_deploy.device.logits import GateResult
from mait_deploy.device.manifest import Manifest, read_manifest
from mait_deploy.device.profiling.measure import peak_rss_mb
from mait_deploy.errors import BundleError, MaitDeployError
from mait_deploy.host import catalog
from mait_deploy.host.compile import target as target_module
from mait_deploy.host.compile.activations import ACTIVATION_BUDGET_BYTES, INFERENCE_SHARE, calibration_batch, gate_batch
from mait_deploy.host.compile.gate import AccuracyGateFailed
from mait_deploy.host.compile.source import ModelSource

# The base of every job's declared memory (job_memory_bytes); the rest grows with the model and the images it holds.
# The default model's builds peak at 0.50-0.72 GB each, LiteRT's INT8 the largest (benchmarks/build_memory.py,
# results/build_memory.json): the base leaves a converter's version-to-version growth room.
JOB_MEMORY_BYTES = 2 << 30


@dataclass(frozen=True)
class BuildInputs:
    """What every job of one run builds from."""

    onnx: bytes
    export_report: dict[str, Any]
    config: Any  # the model's MaiTConfig (a baseline's: its input, output and preprocessing only)
    external: str | None  # a baseline that is not a MaiT (ModelSource.external)
    # The PyTorch module (torch.save of the whole module: a variant, a checkpoint's model), for the targets that
    # convert from PyTorch; None for a model that has only its ONNX. Made by this host's process for its own workers.
    torch_model: bytes | None
    calibration: Dataset | None
    evaluation: Dataset | None
    reference_logits: np.ndarray | None  # the FP32 ONNX's logits on the evaluation inputs
    host_isa: dict[str, Any]  # the CPU kind the builds target (the host's)
    activation_bytes: int = 0  # every intermediate tensor of one image's forward pass (compile/activations.py)


@dataclass(frozen=True)
class BuildJob:
    name: str  # "<target>-<precision>": the bundle's folder name
    target: str
    precision: str
    options: Any  # CompileOptions
    source: str = "model"  # which of the run's inputs it builds from (compare builds several models)
    # Gates already measured in this run (target._GATES): a job that builds the same bytes for the same gate
    # runtime takes the gate instead of scoring it again.
    known_gates: dict[str, tuple[GateResult, str]] = field(default_factory=dict)


@dataclass
class BuildOutcome:
    name: str
    status: str  # ok | failed_gate | failed
    reason: str = ""
    archive: bytes | None = None  # the bundle, packed (device/archive.py)
    archive_sha256: str | None = None
    gate: GateResult | None = None  # a failed gate's figures (an ok bundle's are in its manifest)
    new_gates: dict[str, tuple[GateResult, str]] = field(default_factory=dict)
    seconds: float = 0.0
    worker: dict[str, Any] = field(default_factory=dict)  # host name, process, peak RSS


def build_inputs(source: Any, calibration: Dataset | None, evaluation: Dataset | None) -> BuildInputs:
    """The inputs of jobs building from ``source`` (a ModelSource) as bytes and arrays, with the FP32 reference
    logits on the evaluation images and this host's CPU kind."""
    from mait_deploy.device.profiling.isa import cpu_isa

    torch_model = None
    if source.torch_model is not None:
        import torch

        buffer = io.BytesIO()
        torch.save(source.torch_model, buffer)
        torch_model = buffer.getvalue()
    return BuildInputs(onnx=source.onnx_path.read_bytes(), export_report=source.export_report, config=source.config,
                       external=source.external, torch_model=torch_model, calibration=calibration,
                       evaluation=evaluation,
                       reference_logits=None if evaluation is None else source.reference_logits(evaluation.inputs),
                       host_isa=cpu_isa(), activation_bytes=source.activation_bytes)


def job_memory_bytes(inputs: BuildInputs) -> int:
    """The memory a build job declares (a Ray task's ``memory``; what local workers admit jobs by): the default
    model's measured peak, the bytes the job holds several copies of (its ONNX as read, simplified and converted;
    the PyTorch module and its export; the images and their batches) and its activations, which the calibration
    and gate batches keep within the budget (compile/activations.py)."""
    images = sum(d.inputs.nbytes for d in (inputs.calibration, inputs.evaluation) if d is not None)
    held = 4 * len(inputs.onnx) + 3 * len(inputs.torch_model or b"") + 3 * images
    per_image = inputs.activation_bytes
    activations = max(calibration_batch(per_image) * per_image, gate_batch(per_image) * per_image // INFERENCE_SHARE)
    return JOB_MEMORY_BYTES + held + min(activations, 2 * ACTIVATION_BUDGET_BYTES)


def same_cpu_kind(host_isa: dict[str, Any], here: dict[str, Any]) -> str | None:
    """Why a build here would not target the host's CPU kind (None: it would)."""
    for key in ("machine", "int8_class", "bf16"):
        if host_isa.get(key) != here.get(key):
            return (f"this worker's CPU ({here.get('machine')}, int8 class {here.get('int8_class')}, bf16 "
                    f"{here.get('bf16')}) is not the host's ({host_isa.get('machine')}, "
                    f"{host_isa.get('int8_class')}, bf16 {host_isa.get('bf16')}): its bundle would be built for "
                    "this worker; run the builds on workers of the host's kind or name the device with -O device_isa")
    return None


def run_job(job: BuildJob, inputs: BuildInputs, worker_kind: str, temp_root: str | None = None,
            progress: Callable[[str], None] | None = None) -> BuildOutcome:
    """Build one bundle from bytes, in a folder of its own (under ``temp_root``) that is removed after (the worker
    side)."""
    from mait_deploy.device.profiling.isa import cpu_isa

    started = time.perf_counter()
    outcome = BuildOutcome(job.name, "failed", worker={"host": platform.node(), "pid": os.getpid(),
                                                       "kind": worker_kind})
    mismatch = None if job.options.target_options.get("device_isa") else same_cpu_kind(inputs.host_isa, cpu_isa())
    if mismatch:
        outcome.reason = mismatch
        return outcome
    for key, value in job.known_gates.items():
        target_module._GATES.setdefault(key, value)
    folder = Path(tempfile.mkdtemp(prefix="mait-job-", dir=temp_root))
    try:
        source = _source(inputs, folder)
        target_module.BUILT_BY = worker_kind
        bundle = folder / job.name
        catalog.target(job.target).compile(source, job.options, bundle, inputs.calibration, inputs.evaluation,
                                           progress)
        archive = pack_bundle(bundle, folder / f"{job.name}.tar.gz")
        outcome.archive = archive.read_bytes()
        outcome.archive_sha256 = hashlib.sha256(outcome.archive).hexdigest()
        outcome.status = "ok"
    except AccuracyGateFailed as err:
        outcome.status, outcome.reason, outcome.gate = "failed_gate", str(err), err.result
    except MaitDeployError as err:
        outcome.reason = str(err)
    except Exception as err:  # a converter crash fails its row, not the run
        outcome.reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        target_module.BUILT_BY = "host"
    outcome.new_gates = {k: v for k, v in target_module._GATES.items() if k not in job.known_gates}
    outcome.seconds = round(time.perf_counter() - started, 2)
    outcome.worker["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return outcome


def _source(inputs: BuildInputs, folder: Path) -> Any:
    """The ModelSource a host build uses, rebuilt from bytes: the ONNX, the PyTorch module where there is one
    and the host's reference logits (so the worker's gate compares against the very same numbers)."""

    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(inputs.onnx)
    model = None
    if inputs.torch_model is not None:
        import torch

        # Pickled by this run's own host process (build_inputs), never read from a file or a user.
        model = torch.load(io.BytesIO(inputs.torch_model), weights_only=False)
    source = ModelSource(onnx_path=onnx_path, config=inputs.config, torch_model=model,
                         export_report=inputs.export_report, external=inputs.external)
    if inputs.evaluation is not None and inputs.reference_logits is not None:
        source.remember_reference_logits(inputs.evaluation.inputs, inputs.reference_logits)
    if inputs.activation_bytes:  # measured by the host once (a cached property): not again in every job
        source.__dict__["activation_bytes"] = inputs.activation_bytes
    return source


def land(outcome: BuildOutcome, bundle: Path) -> Manifest:
    """Check a finished job's archive against its sha256 and unpack it to ``bundle`` (replacing what a previous
    run of this tool left there); a corrupt one is a BundleError and leaves nothing. Returns the bundle's
    manifest."""

    data = outcome.archive or b""
    if hashlib.sha256(data).hexdigest() != outcome.archive_sha256:
        raise BundleError(f"the bundle of {outcome.name} arrived damaged (sha256 mismatch)")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mait-land-") as temp:
        archive = Path(temp) / f"{outcome.name}.tar.gz"
        archive.write_bytes(data)
        unpack_bundle(archive, bundle, force=True)
    manifest = read_manifest(bundle)
    # A job of this run built its program (the archive's hash checked above): trusted as a build in this process.
    built_here(manifest.artifact.sha256)
    return manifest

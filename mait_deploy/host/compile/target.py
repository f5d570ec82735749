"""The host side of a backend: the ``Target`` interface and the compile template (backends register in
``mait_deploy.backends``).

``Target.compile`` (the template, as in Olive's passes) checks options, stages the bundle in a temporary folder
beside the output, calls the plug-in's ``_build``, runs the accuracy gate and the golden outputs through the
gate runtime's runner, writes the manifest and renames the folder into place. A plug-in implements ``_build``
(and may declare ``declared_options`` and override ``_check_options``, ``gate_options``, ``host_can_run`` and
``_quantization_detail``); it never touches bundle bookkeeping.
"""

from __future__ import annotations

import abc
import dataclasses
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from mait_deploy import backends
from mait_deploy._io import atomic_dir, check_output, content_key, jsonable, sha256_file
from mait_deploy.backends import Backend
from mait_deploy.device.archive import bundle_ownership
from mait_deploy.device.data.builtin import load_sample
from mait_deploy.device.data.sources import Dataset
from mait_deploy.device.golden import (
    GOLDEN_FILE,
    GOLDEN_TOLERANCE,
    TOLERANCE_BASIS,
    GoldenSet,
    choose_golden,
)
from mait_deploy.device.logits import GateResult
from mait_deploy.device.manifest import GoldenEntry, Manifest, RuntimeSpec
from mait_deploy.device.preprocess import preprocess_uint8_batch
from mait_deploy.device.profiling.isa import cpu_isa
from mait_deploy.device.runner import Runner, RunnerOptions, runner_class
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.activations import gate_batch
from mait_deploy.host.compile.gate import AccuracyGateFailed, accuracy_gate
from mait_deploy.host.compile.sensitivity import fallback_sizes, layer_sensitivity
from mait_deploy.host.compile.source import ModelSource
from mait_deploy.host.compile.spec import (
    BuiltArtifact,
    CompileOptions,
    CompileResult,
    TargetCapabilities,
)
from mait_deploy.host.export.onnx import tool_versions
from mait_deploy.options import Option, validate
from mait_deploy.precision import INT8

# Gates scored in this process: an artifact whose bytes another bundle had, scored by the same runner, options,
# images and reference, gets its numbers (deploy's TensorRT FP32/FP16 rows gate ONNX Runtime FP32's very ONNX).
_GATES: dict[str, tuple[GateResult, str]] = {}
BUILT_BY = "host"  # what runs the build, for the manifest: "host", or a worker of host/jobs
_MAX_GATES = 64
NO_TORCH_MODEL = "give the checkpoint, not an ONNX file"  # why an ONNX source cannot build such a target


def _gate_key(manifest: Manifest, runner: Runner, source: ModelSource, evaluation: Dataset, max_drop: float,
              sample: int | None = None) -> str:
    parts = {"artifact": manifest.artifact.sha256, "runner": type(runner).__qualname__, "settings": runner.settings,
             "threads": runner.options.threads, "source": source.onnx_sha256, "images": evaluation.content_sha256(),
             "max_drop": max_drop, "sample": sample}
    return content_key(parts)


def _remember_gate(key: str, gate: GateResult, what: str) -> None:
    if len(_GATES) >= _MAX_GATES:
        _GATES.pop(next(iter(_GATES)))
    _GATES[key] = (gate, what)


class Target(abc.ABC):
    capabilities: TargetCapabilities
    # The ``-O KEY=VALUE`` options this target takes: checked before any work, read with ``setting``, listed by targets.
    declared_options: tuple[Option, ...] = ()

    # -- hooks for plug-ins -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def _build(self, source: ModelSource, options: CompileOptions, staging: Path, calibration: Dataset | None,
               progress: Callable[[str], None]) -> BuiltArtifact:
        """Write the artifact (and side files) into ``staging``."""

    def _check_options(self, options: CompileOptions) -> None:
        """Target-specific option checks (raise UnsupportedOption)."""

    def sensitivity_preset(self, options: CompileOptions) -> Any:
        """The Q/DQ options (qdq.QdqOptions) whose per-layer sensitivity ranks this target's layers for the INT8
        fallback; None when the target cannot keep layers in float."""
        return None

    def gate_options(self, manifest: Manifest) -> dict[str, Any]:
        """Options for the gate's runner (the backend's ``gate_runtime``) beyond the bundle's own defaults."""
        return {}

    def summary_lines(self, manifest: Manifest) -> list[tuple[str, str]]:
        """(field, value) lines about what this backend built, for `compile`'s summary table."""
        quantization = manifest.build.get("quantization")
        if not quantization:
            return []
        detail = quantization["method"]
        if "calibration_images" in quantization:
            detail += f" on {quantization['calibration_images']} images"
        extra = self._quantization_detail(manifest.build)
        return [("quantization", detail + (f"; {extra}" if extra else ""))]

    def _quantization_detail(self, build: dict[str, Any]) -> str:
        """What a backend adds to the quantization line (which ops are INT8, what stays float)."""
        return ""

    @property
    def name(self) -> str:
        """The backend's registered name (written once, in the registry)."""
        return backends.name_of(type(self))

    @property
    def backend(self) -> Backend:
        return backends.get(self.name)

    def host_can_run(self) -> tuple[bool, str]:
        """Whether this machine can run the artifact (for profiling); TensorRT says no without a GPU."""
        return True, ""

    def hardware_lacks(self, options: CompileOptions) -> str | None:
        """Why this machine cannot build and gate ``options.precision`` for this target (None: it can): BF16
        needs a CPU that computes in bfloat16, which the gate and the golden outputs run on."""
        return None

    def timing_environment(self, device_isa: str | None) -> dict[str, str] | None:
        """Environment variables under which this runtime, on this machine, dispatches the kernels a CPU of int8
        class ``device_isa`` gets (for `--precision auto` timing for another device): {} for this machine's own
        class (or no device named), None when this runtime cannot be made to (its dispatch has no cap)."""
        return {} if device_isa in (None, cpu_isa()["int8_class"]) else None

    # -- template -----------------------------------------------------------------------------------------
    def cannot_build_here(self, options: CompileOptions, no_torch_model: str | None = None) -> str | None:
        """Why this machine cannot build ``options.precision`` for this target (None: it can): the one rule
        compile, deploy's matrix and compare share. ``no_torch_model``: why the model has no PyTorch module (an
        ONNX file), for the targets that convert from PyTorch."""
        caps = self.capabilities
        if options.precision not in caps.precisions:
            return (f"target {self.name} does not support precision {options.precision}; "
                    f"use {', '.join(caps.precisions)}")
        if caps.needs_torch_model and no_torch_model:
            return f"target {self.name} converts from PyTorch: {no_torch_model}"
        return self.hardware_lacks(options)

    def check_options(self, options: CompileOptions, no_torch_model: str | None = None) -> None:
        caps = self.capabilities
        why = self.cannot_build_here(options, no_torch_model)
        if why:
            raise UnsupportedOption(why)
        if options.float_layers and not caps.layer_fallback:
            raise UnsupportedOption(f"target {self.name} cannot keep layers in float (--float-layers)")
        self.option_values(options)  # names, types, choices, bounds, precisions: declared_options
        self._check_options(options)

    def option_values(self, options: CompileOptions) -> dict[str, Any]:
        """Every declared ``-O`` option's value for this compile: the given one, checked, else its default."""
        return validate(self.declared_options, options.target_options, f"target {self.name}", options.precision)

    def setting(self, options: CompileOptions, name: str) -> Any:
        """One ``-O`` option's value (or its declared default)."""
        return self.option_values(options)[name]

    def needs_calibration(self, options: CompileOptions) -> bool:
        return options.precision == INT8

    def compile(self, source: ModelSource, options: CompileOptions, out_dir: str | Path,
                calibration: Dataset | None = None, evaluation: Dataset | None = None,
                progress: Callable[[str], None] | None = None) -> CompileResult:
        """Build a verified bundle at ``out_dir``; nothing is left there when any step fails."""
        step = progress or (lambda message: None)
        self.check_options(options, None if source.torch_model is not None else NO_TORCH_MODEL)
        if self.needs_calibration(options) and calibration is None:
            raise UnsupportedOption(f"{options.precision} for {self.name} needs calibration data (--calib)")
        out_dir = Path(out_dir)
        check_output(out_dir, options.force, kind="dir", ours=bundle_ownership, what="bundle")
        seconds: dict[str, float] = {}
        with atomic_dir(out_dir, replace=options.force) as staging:
            built, gate, golden = self._build_and_gate(source, options, staging, calibration, evaluation, step,
                                                       seconds)
            if gate is not None and not gate.passed:
                preset = self.sensitivity_preset(options) if options.precision == INT8 and \
                    options.layer_fallback and not options.float_layers else None
                if preset is None:
                    raise AccuracyGateFailed(gate)
                options, built, gate, golden = self._layer_fallback(source, options, staging, calibration,
                                                                    evaluation, step, seconds, preset, gate)
            manifest = self._manifest(staging, source, options, built, golden=golden, accuracy=gate)
            manifest.write(staging)
        return CompileResult(bundle=str(out_dir), target=self.name, precision=options.precision,
                             manifest=manifest, gate=gate, seconds=seconds)

    def _build_and_gate(self, source: ModelSource, options: CompileOptions, staging: Path,
                        calibration: Dataset | None, evaluation: Dataset | None, step: Callable[[str], None],
                        seconds: dict[str, float]) -> tuple[BuiltArtifact, GateResult | None, GoldenEntry | None]:
        """Build into ``staging`` and score it; the golden set is recorded only when the gate passed."""
        started = time.perf_counter()
        step(f"{self.name} {options.precision}: building")
        built = self._build(source, options, staging, calibration, step)
        seconds["build"] = round(seconds.get("build", 0.0) + time.perf_counter() - started, 3)
        manifest = self._manifest(staging, source, options, built, golden=None, accuracy=None)
        gate: GateResult | None = None
        golden = None
        with self._gate_runner(staging, manifest) as runner:
            if evaluation is not None:
                key = _gate_key(manifest, runner, source, evaluation, options.max_accuracy_drop,
                                options.gate_sample)
                if key in _GATES:  # the same bytes scored by the same runner on the same images: the same gate
                    gate, first = _GATES[key]
                    gate = dataclasses.replace(gate)
                    step(f"{self.name} {options.precision}: the accuracy gate of {first} (same artifact bytes, "
                         f"runtime, options and images)")
                    built.report["gate_reused"] = {"from": first, "why": "same artifact bytes, gate runtime, "
                                                                         "runtime options and images"}
                else:
                    sampled = options.gate_sample is not None and options.gate_sample < len(evaluation)
                    step(f"{self.name} {options.precision}: accuracy gate on "
                         + (f"a fixed sample of {options.gate_sample} of {len(evaluation)} images" if sampled
                            else f"all {len(evaluation)} images"))
                    started = time.perf_counter()
                    gate = accuracy_gate(runner.run, source.reference_logits(evaluation.inputs), evaluation,
                                         options.max_accuracy_drop, batch=gate_batch(source.activation_bytes),
                                         raise_on_failure=False,
                                         measured_with=runner.runtime_info(), sample=options.gate_sample,
                                         announce=lambda text: step(f"{self.name} {options.precision}: {text}"))
                    seconds["gate"] = round(seconds.get("gate", 0.0) + time.perf_counter() - started, 3)
                    _remember_gate(key, gate, f"{self.name} {options.precision}")
            if gate is None or gate.passed:
                golden = self._golden(staging, source, runner, evaluation, options.precision)
        return built, gate, golden

    def _layer_fallback(self, source: ModelSource, options: CompileOptions, staging: Path,
                        calibration: Dataset, evaluation: Dataset, step: Callable[[str], None],
                        seconds: dict[str, float], preset: Any, first_gate: GateResult) -> tuple[Any, ...]:
        """Keep the 1, 2, 4, ... most INT8-sensitive layers in float until the gate passes (sensitivity.py)."""
        import shutil

        step(f"{self.name} int8: gate failed ({first_gate.summary()}); ranking layers by INT8 sensitivity")
        started = time.perf_counter()
        ranking = layer_sensitivity(source.onnx_path, calibration.inputs, preset,
                                    progress=lambda done, total: step(f"sensitivity: layer {done}/{total}"))
        seconds["sensitivity"] = round(time.perf_counter() - started, 3)
        attempts = []
        for count in fallback_sizes(len(ranking)):
            kept = tuple(item.layer for item in ranking[:count])
            for entry in staging.iterdir():  # the previous attempt's files
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            attempt = dataclasses.replace(options, float_layers=kept)
            step(f"{self.name} int8: rebuilding with {count} layer(s) in float")
            built, gate, golden = self._build_and_gate(source, attempt, staging, calibration, evaluation, step,
                                                       seconds)
            attempts.append({"float_layers": count, "drop_points": gate.drop_points, "passed": gate.passed})
            if gate.passed:
                built.report["layer_fallback"] = {
                    "why": f"the full INT8 model failed the gate: {first_gate.summary()}",
                    "kept_float": list(kept), "attempts": attempts, "first_gate": first_gate.to_dict(),
                    "sensitivity": [item.to_dict() for item in ranking],
                    "measured_with": "ONNX Runtime, only the named layer in INT8 with this target's Q/DQ preset",
                }
                return attempt, built, gate, golden
        raise AccuracyGateFailed(gate)

    def _gate_runner(self, staging: Path, manifest: Manifest) -> Runner:
        """The device runner by default; a backend without its runtime here names another (``gate_runtime``)."""
        gate_runtime = self.backend.gates_with
        defaults = dict(manifest.runtime.options) if gate_runtime == self.name else {}
        options = RunnerOptions(extra={**defaults, **self.gate_options(manifest)})
        return runner_class(gate_runtime)(staging, manifest, options)

    def _manifest(self, staging: Path, source: ModelSource, options: CompileOptions, built: BuiltArtifact,
                  golden: GoldenEntry | None, accuracy: GateResult | None) -> Manifest:

        hashed = built.hashed  # the artifact and side files, hashed once when the build was staged
        manifest = Manifest.create(
            staging, model=source.config.to_dict(), target=self.name, precision=options.precision,
            artifact=hashed[0] if hashed else built.artifact,
            side_files=hashed[1] if hashed else built.side_files, inputs=built.inputs, outputs=built.outputs,
            batch=built.batch,
            runtime=RuntimeSpec(name=self.name, extra=self.backend.device.extra, options=built.runtime_options),
            # While staging (gate not run yet) the golden entry is a placeholder; the final manifest replaces it.
            golden=golden or GoldenEntry(GOLDEN_FILE, "", 0, GOLDEN_TOLERANCE[options.precision]),
            accuracy=accuracy, source=source.describe(), tool_versions={**tool_versions(), **built.tool_versions},
            build={**built.report, "options": jsonable(asdict(options)), "host_isa": cpu_isa(),
                   "built_on": {"host": platform.node(), "by": BUILT_BY},  # host/jobs: maybe a worker
                   **({"alternative_files": built.alternative_files} if built.alternative_files else {})},
        )
        built.hashed = (manifest.artifact, manifest.files)
        return manifest

    def _golden(self, staging: Path, source: ModelSource, runner: Runner, evaluation: Dataset | None,
                precision: str) -> GoldenEntry:
        """Record a few confidently classified images and this artifact's outputs for them (run through the
        same preprocessing + runner a device uses), for ``mait-deploy verify`` on the device."""

        if evaluation is not None:
            raw, inputs = evaluation.raw, evaluation.inputs
        else:
            sample = load_sample("test")
            raw = sample.images[:256]
            inputs = preprocess_uint8_batch(raw, source.config.preprocess)
        reference = source.reference_logits(inputs)
        index = choose_golden(reference)
        golden = GoldenSet.record(runner, raw, inputs, index, reference[index])
        path, arrays = golden.write(staging)
        isa = cpu_isa()
        recorded_on = {"cpu": isa["model"], "int8_class": isa["int8_class"], "runtime": runner.runtime_info()}
        return GoldenEntry(file=path.name, sha256=sha256_file(path), count=len(index),
                           tolerance=GOLDEN_TOLERANCE[precision], kind=golden.kind, recorded_on=recorded_on,
                           tolerance_basis=TOLERANCE_BASIS[precision], arrays=arrays)

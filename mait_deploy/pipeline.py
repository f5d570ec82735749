"""deploy(): checkpoint -> export -> compile (each target x precision) -> accuracy gate -> verify -> profile, one report.

Every row ends as ok, failed the accuracy gate (with the numbers), failed (with the reason) or skipped (with the
reason): one failure never stops the run. Finished, verified stages are reused when their inputs (hashed) are
unchanged; ``force`` redoes everything.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from ._deps import is_available
from ._io import sha256_file, write_json
from .errors import MaitDeployError, UnsupportedOption, ValidationError

ALL_TARGETS = ("onnxruntime", "openvino", "litert", "tensorrt")
ALL_PRECISIONS = ("fp32", "fp16", "int8")
# What a target needs on the host to compile (and, except TensorRT, to run here).
TARGET_MODULES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino", "nncf"),
                  "litert": ("litert_torch", "ai_edge_litert"), "tensorrt": ("onnxruntime",)}
REPORT_SCHEMA_VERSION = 1
STATUSES = ("ok", "failed_gate", "failed", "skipped")


@dataclass(frozen=True)
class DeployOptions:
    targets: tuple[str, ...] | None = None  # None: every target whose extras are installed
    precisions: tuple[str, ...] = ALL_PRECISIONS
    calibration: str = "fashion-mnist"
    calibration_count: int = 256
    evaluation: str | None = "fashion-mnist"  # None skips the accuracy gate
    eval_count: int | None = None
    max_accuracy_drop: float = 1.0
    profile_batches: tuple[int, ...] = (1, 32)
    profile_iterations: int = 50
    force: bool = False

    def __post_init__(self) -> None:
        if self.targets is not None:
            unknown = [t for t in self.targets if t not in ALL_TARGETS]
            if unknown:
                raise UnsupportedOption(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(ALL_TARGETS)}")
            if not self.targets:
                raise UnsupportedOption("no targets given")
        unknown = [p for p in self.precisions if p not in ALL_PRECISIONS]
        if unknown or not self.precisions:
            raise UnsupportedOption(f"unknown precision(s) {', '.join(unknown) or '(none)'}; use "
                                    f"{', '.join(ALL_PRECISIONS)}")
        if self.max_accuracy_drop < 0:
            raise UnsupportedOption("--max-accuracy-drop must be >= 0")
        if self.profile_iterations < 1 or any(b < 1 for b in self.profile_batches):
            raise UnsupportedOption("profile iterations and batches must be positive")


@dataclass
class Row:
    target: str
    precision: str
    status: str
    reason: str = ""
    bundle: str | None = None
    reused: bool = False
    top1: float | None = None
    reference_top1: float | None = None
    drop_points: float | None = None
    size_bytes: int | None = None
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # "batch_1": {"p50_ms", "p99_ms", "throughput"}
    peak_rss_mb: float | None = None
    verify: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class DeployReport:
    schema_version: int
    created: str
    checkpoint: dict[str, Any]
    options: dict[str, Any]
    export: dict[str, Any]
    rows: list[Row]
    recommended: dict[str, Any] | None
    machine: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_targets() -> dict[str, str]:
    """target -> '' when usable here, else the reason (the missing module and its extra)."""
    from .exporters.base import get_target

    result = {}
    for name in ALL_TARGETS:
        missing = [m for m in TARGET_MODULES[name] if not is_available(m)]
        extra = get_target(name).capabilities.compile_extra
        result[name] = f"{', '.join(missing)} not installed (pip install 'mait-deploy[{extra}]')" if missing else ""
    return result


def _stage_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _checkpoint_identity(checkpoint: Any) -> tuple[Path, dict[str, Any]]:
    from .model.checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from .model.zoo import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS_FILE if path.is_dir() else path
    config = folder / CONFIG_FILE
    return path, {"path": str(path), "weights_sha256": sha256_file(weights),
                  "config_sha256": sha256_file(config) if config.is_file() else None}


def _summarise_profile(report: Any) -> tuple[dict[str, dict[str, float]], float | None]:
    latency = {}
    for result in report.results:
        if result.model:
            latency[f"batch_{result.batch}"] = {"p50_ms": result.model["percentiles_ms"]["p50"],
                                                "p99_ms": result.model["percentiles_ms"]["p99"],
                                                "throughput": result.model["throughput"]}
    return latency, report.memory.get("peak_rss_mb")


def pareto_front(rows: Sequence[Row], batch_key: str = "batch_1") -> list[int]:
    """Indices of ok rows not dominated in (higher top-1, lower p50 latency)."""
    points = [(i, r.top1, r.latency[batch_key]["p50_ms"]) for i, r in enumerate(rows)
              if r.status == "ok" and r.top1 is not None and batch_key in r.latency]
    front = []
    for i, acc, lat in points:
        dominated = any((a >= acc and l <= lat) and (a > acc or l < lat) for _, a, l in points)
        if not dominated:
            front.append(i)
    return front


def recommend(rows: Sequence[Row]) -> dict[str, Any] | None:
    """The fastest bundle at batch 1 among those that passed the gate and ran on this machine."""
    candidates = [r for r in rows if r.status == "ok" and "batch_1" in r.latency]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: r.latency["batch_1"]["p50_ms"])
    fp32 = next((r for r in candidates if r.target == best.target and r.precision == "fp32"), None)
    reason = (f"lowest p50 latency at batch 1 on this machine ({best.latency['batch_1']['p50_ms']:.2f} ms) among "
              f"{len(candidates)} bundles that passed the accuracy gate")
    if best.drop_points is not None:
        reason += f"; top-1 drop {best.drop_points:+.2f} points vs FP32"
    if fp32 is not None and fp32 is not best:
        reason += f"; {fp32.latency['batch_1']['p50_ms'] / best.latency['batch_1']['p50_ms']:.2f}x faster than " \
                  f"{best.target} fp32"
    return {"target": best.target, "precision": best.precision, "bundle": best.bundle, "reason": reason}


def deploy(checkpoint: Any, out_dir: str | os.PathLike[str], options: DeployOptions | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> DeployReport:
    """Run the whole pipeline into ``out_dir`` and write report.json, report.md and report.png there."""
    from .bundle.load import check_files, verify_bundle
    from .bundle.manifest import read_manifest
    from .compiler import load_calibration, load_evaluation
    from .exporters.base import CalibrationOptions, CompileOptions, get_target
    from .exporters.onnx import ExportOptions, export_onnx, tool_versions
    from .exporters.source import ModelSource
    from .model.checkpoint import load_checkpoint
    from .profiling.device import cpu_state
    from .profiling.measure import ProfileOptions, profile

    options = options or DeployOptions()
    started_run = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "state.json"
    state = {} if options.force or not state_path.is_file() else json.loads(state_path.read_text())
    availability = available_targets()
    targets = options.targets or tuple(t for t in ALL_TARGETS if not availability[t])
    plan = [(t, p) for t in targets for p in options.precisions]
    total = len(plan) + 1
    step = progress or (lambda message, done, total: None)

    # 1. export once (reused when the checkpoint and export options are unchanged)
    step("export", 0, total)
    checkpoint_path, identity = _checkpoint_identity(checkpoint)
    model = load_checkpoint(checkpoint_path)
    onnx_path = out_dir / "model.onnx"
    export_key = _stage_key(stage="export", checkpoint=identity, version=__version__, tools=tool_versions())
    export_report_path = onnx_path.with_name(onnx_path.name + ".json")
    reused_export = (state.get("export") == export_key and onnx_path.is_file() and export_report_path.is_file()
                     and state.get("export_sha256") == sha256_file(onnx_path))
    if reused_export:
        export_report = json.loads(export_report_path.read_text())
    else:
        export_report = export_onnx(model, onnx_path, ExportOptions(force=True)).to_dict()
        state.update(export=export_key, export_sha256=sha256_file(onnx_path))
        write_json(state_path, state)
    source = ModelSource(onnx_path=onnx_path, config=model.config, torch_model=model, export_report=export_report)

    # 2. data once
    compile_defaults = CompileOptions(calibration=CalibrationOptions(count=options.calibration_count))
    calibration = None
    if any(p == "int8" for _, p in plan):
        calibration = load_calibration(source, options.calibration, compile_defaults)
    evaluation = load_evaluation(source, options.evaluation, options.eval_count) if options.evaluation else None
    if calibration is not None and evaluation is not None:
        from .calibration.data import check_disjoint

        check_disjoint(calibration, evaluation)

    rows: list[Row] = []
    for index, (target_name, precision) in enumerate(plan, start=1):
        step(f"{target_name} {precision}", index, total)
        started = time.perf_counter()
        row = Row(target=target_name, precision=precision, status="skipped")
        rows.append(row)
        if availability.get(target_name):
            row.reason = availability[target_name]
            continue
        target = get_target(target_name)
        if precision not in target.capabilities.precisions:
            row.reason = f"{target_name} has no {precision}"
            continue
        bundle = out_dir / "bundles" / f"{target_name}-{precision}"
        key = _stage_key(stage="bundle", checkpoint=identity, target=target_name, precision=precision,
                         calibration=[options.calibration, options.calibration_count],
                         evaluation=[options.evaluation, options.eval_count], max_drop=options.max_accuracy_drop,
                         export=export_key)
        try:
            reusable = False
            if state.get("bundles", {}).get(bundle.name) == key and bundle.is_dir():
                try:
                    check_files(bundle, read_manifest(bundle))
                    reusable = True
                except MaitDeployError:
                    reusable = False
            if reusable:
                manifest = read_manifest(bundle).to_dict()
                row.reused = True
            else:
                compile_options = CompileOptions(precision=precision, max_accuracy_drop=options.max_accuracy_drop,
                                                 calibration=compile_defaults.calibration, force=True)
                result = target.compile(source, compile_options, bundle, calibration, evaluation)
                manifest = result.manifest
                state.setdefault("bundles", {})[bundle.name] = key
                write_json(state_path, state)
            row.bundle = str(bundle)
            row.size_bytes = manifest["artifact"]["bytes"] + sum(f["bytes"] for f in manifest["files"])
            gate = manifest.get("accuracy")
            if gate:
                row.top1, row.reference_top1, row.drop_points = gate["top1"], gate["reference_top1"], gate["drop_points"]
            runnable, why = target.host_can_run()
            if not runnable:
                row.status, row.reason = "skipped", f"bundle built; {why}"
                continue
            row.verify = verify_bundle(bundle).to_dict()
            # A fixed-batch bundle (LiteRT) is profiled at its own batch size only.
            batches = options.profile_batches if manifest["batch"] == "dynamic" else (int(manifest["batch"]),)
            report = profile(bundle, ProfileOptions(batches=batches, warmup=5,
                                                    iterations=options.profile_iterations, end_to_end=False))
            if report.error:
                raise MaitDeployError(f"profiling failed: {report.error}")
            row.latency, row.peak_rss_mb = _summarise_profile(report)
            row.status = "ok"
        except ValidationError as err:
            row.status = "failed_gate" if "accuracy gate" in str(err) else "failed"
            row.reason = str(err)
        except MaitDeployError as err:
            row.status, row.reason = "failed", str(err)
        except Exception as err:  # a converter crash must not stop the other rows
            row.status, row.reason = "failed", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        finally:
            row.seconds = round(time.perf_counter() - started, 1)
    step("report", total, total)
    report = DeployReport(
        schema_version=REPORT_SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        checkpoint=identity, options=_jsonable(asdict(options)),
        export={"path": str(onnx_path), "reused": reused_export, "parity": export_report.get("parity"),
                "bias_initializers": export_report.get("graph", {}).get("bias_initializers")},
        rows=rows, recommended=recommend(rows), machine={"cpu": cpu_state()},
        seconds=round(time.perf_counter() - started_run, 1),
    )
    write_deploy_report(report, out_dir)
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def markdown_table(report: DeployReport) -> str:
    batches = sorted({k for row in report.rows for k in row.latency}, key=lambda k: int(k.split("_")[1]))
    head = ["target", "precision", "status", "top-1", "drop (pts)"]
    for key in batches:
        b = key.split("_")[1]
        head += [f"p50 b{b} (ms)", f"p99 b{b} (ms)", f"img/s b{b}"]
    head += ["size (MB)", "process peak RSS (MB)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = [row.target, row.precision, row.status + (" (reused)" if row.reused else ""),
                 "-" if row.top1 is None else f"{row.top1 * 100:.2f}%",
                 "-" if row.drop_points is None else f"{row.drop_points:+.2f}"]
        for key in batches:
            lat = row.latency.get(key)
            cells += ["-", "-", "-"] if lat is None else [f"{lat['p50_ms']:.2f}", f"{lat['p99_ms']:.2f}",
                                                          f"{lat['throughput']:.0f}"]
        cells += ["-" if row.size_bytes is None else f"{row.size_bytes / 1e6:.2f}",
                  "-" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}",
                  row.reason.replace("|", "/")[:160]]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if report.recommended:
        text += (f"\nRecommended for this machine: **{report.recommended['target']} "
                 f"{report.recommended['precision']}** ({report.recommended['bundle']}): "
                 f"{report.recommended['reason']}.\n")
    return text


def plot_deploy(report: DeployReport, path: Path) -> bool:
    """Accuracy vs latency (batch 1), marker area = size, Pareto front marked. False when nothing to plot."""
    rows = [r for r in report.rows if r.status == "ok" and r.top1 is not None and "batch_1" in r.latency]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import atomic_path

    front = set(pareto_front(report.rows))
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"onnxruntime": "#4c72b0", "openvino": "#dd8452", "litert": "#55a868", "tensorrt": "#c44e52"}
    for index, row in enumerate(report.rows):
        if row not in rows:
            continue
        x, y = row.latency["batch_1"]["p50_ms"], row.top1 * 100
        ax.scatter(x, y, s=max(30, row.size_bytes / 2e4), color=colors.get(row.target, "grey"), alpha=0.7,
                   edgecolors="k" if index in front else "none", linewidths=2 if index in front else 0)
        ax.annotate(f"{row.target} {row.precision}", (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    front_points = sorted((report.rows[i].latency["batch_1"]["p50_ms"], report.rows[i].top1 * 100) for i in front)
    if len(front_points) > 1:
        ax.plot(*zip(*front_points), "k--", linewidth=1, label="Pareto front")
        ax.legend()
    ax.set(xlabel="p50 latency at batch 1 (ms, this machine)", ylabel="top-1 (%)",
           title="accuracy vs latency (marker area = bundle size; black edge = Pareto front)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
    return True


def write_deploy_report(report: DeployReport, out_dir: Path) -> None:
    write_json(out_dir / "report.json", report.to_dict())
    from ._io import atomic_path

    with atomic_path(out_dir / "report.md", suffix=".md") as temp:
        temp.write_text(markdown_table(report), encoding="utf-8")
    plot_deploy(report, out_dir / "report.png")

"""Shared fixtures. Tests that need torch import it through ``pytest.importorskip`` in their own module."""

from __future__ import annotations

import fcntl
import functools
import os
import pickle
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.shipped import SHIPPED_CALIBRATION, SHIPPED_EVAL_COUNT

# A test's own `import openvino` (importorskip) would load OpenVINO's telemetry, which forks a sender process
# (the "os.fork() ... JAX is multithreaded" warnings); the product imports it through import_openvino, which turns
# it off the same way (tests/backends/test_openvino_target.py checks that on its own).
sys.modules.setdefault("openvino_telemetry", None)


@pytest.fixture
def tiny_config():
    from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig

    return MaiTConfig(name="tiny", img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=32, depth=2,
                      num_heads=4, init_values=0.5, mask=MaskConfig(window=3),
                      preprocess=PreprocessConfig(input_size=16, channels=1, mean=(0.5,), std=(0.25,)))


@dataclass(frozen=True)
class ShippedBundle:
    folder: Path
    result: Any  # the CompileResult: its gate and manifest


class ShippedBundles(dict):
    """(target, precision) -> the shipped checkpoint's bundle (ShippedBundle), built on first use and shared by
    every test of the session: tests only read them (a test that changes one copies it first).

    The workers of one run (pytest-xdist) share them; with ``MAIT_TEST_SHIPPED_BUNDLES`` set to a folder (.ci/run
    sets one for its whole run), so do separate pytest processes: the default suite builds them once and the slow
    suite's workers read the same ones. Each is built under a file lock and kept with its CompileResult."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    @functools.cached_property
    def source(self) -> Any:
        """The shipped checkpoint's verified FP32 export as a ModelSource, the one every shipped bundle is compiled
        from (as ``deploy`` compiles one export for every row): exported once under a file lock by the first
        process that needs it and read by the others, each of which loads the checkpoint for its torch model."""
        pytest.importorskip("torch")
        from mait_deploy.host.compile.source import source_from_checkpoint, source_from_export
        from mait_deploy.host.model.checkpoint import load_checkpoint
        from mait_deploy.host.model.zoo import resolve_checkpoint

        folder = self.root / ".source"
        saved = folder / "export-report.pickle"
        with open(self.root / ".source.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if saved.is_file():
                return source_from_export(load_checkpoint(resolve_checkpoint(None)), folder / "model.onnx",
                                          pickle.loads(saved.read_bytes()))
            folder.mkdir(exist_ok=True)
            source = source_from_checkpoint(None, folder)
            partial = saved.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(source.export_report))
            partial.replace(saved)
            return source

    def __missing__(self, key: tuple[str, str]) -> ShippedBundle:
        target, precision = key
        pytest.importorskip("torch")
        from mait_deploy import backends

        missing = backends.availability().get(target)
        if missing:
            pytest.skip(f"{target}: {missing}")
        name = f"{target}-{precision}"  # a bundle's folder name is its name on a board: one each
        folder = self.root / name
        with open(self.root / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same bundle finishes first
            self[key] = ShippedBundle(folder, self._built(target, precision, folder))
        return self[key]

    def _built(self, target: str, precision: str, folder: Path) -> Any:
        from mait_deploy.host.compile.api import compile_model
        from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions

        saved = self.root / f".{folder.name}.result.pickle"
        if saved.is_file() and folder.is_dir():
            return pickle.loads(saved.read_bytes())
        options = CompileOptions(precision=precision, calibration=CalibrationOptions(count=SHIPPED_CALIBRATION))
        result = compile_model(self.source, target, options, folder, eval_count=SHIPPED_EVAL_COUNT)
        partial = saved.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(result))
        partial.replace(saved)
        return result

    def of(self, target: str, precisions: tuple[str, ...]) -> tuple[dict[str, Path], dict[str, Any]]:
        """``target``'s bundles: precision -> folder and precision -> CompileResult."""
        built = {precision: self[target, precision] for precision in precisions}
        return ({precision: b.folder for precision, b in built.items()},
                {precision: b.result for precision, b in built.items()})


@pytest.fixture(scope="session")
def shipped_bundles(tmp_path_factory) -> ShippedBundles:
    shared = os.environ.get("MAIT_TEST_SHIPPED_BUNDLES")
    if shared:
        folder = Path(shared)
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        # The run's workers (pytest-xdist) share one folder: the base temp of each is a child of the run's.
        folder = tmp_path_factory.getbasetemp().parent / "shipped-bundles"
    else:
        folder = tmp_path_factory.mktemp("shipped-bundles")
    folder.mkdir(parents=True, exist_ok=True)
    return ShippedBundles(folder)


def pytest_collection_modifyitems(config, items) -> None:
    """The tests on the emulated arm64 boards (the ``fleet`` fixture) first: one file, one worker, the slow suite's
    longest chain (~20 minutes on 2 cores), so the other workers run the rest beside it instead of after it
    (pytest-xdist hands out files in collection order). The order is the same in every worker, as xdist needs."""
    items.sort(key=lambda item: "fleet" not in getattr(item, "fixturenames", ()))


def pytest_configure(config) -> None:
    """Each xdist worker keeps torch's OpenMP (and BLAS) pool to its share of the cores, as the product's build
    workers do (host/jobs/share.py): two workers whose torch each starts a thread per core run its parallel regions
    slower than one after the other (an OpenMP region waits for its descheduled thread; a small model's training
    here: 41 s with two threads per worker, 22 s with one). Set before any test imports torch; a variable the user
    set is kept. Unlike share.keep_to, no runner thread budget: the runtimes' own pools (ONNX Runtime, OpenVINO,
    LiteRT) keep their defaults, which tests check."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        from mait_deploy.device.runner import usable_cores
        from mait_deploy.host.jobs.share import THREAD_VARIABLES

        threads = str(max(1, len(usable_cores()) // workers))
        for variable in THREAD_VARIABLES:
            os.environ.setdefault(variable, threads)


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject.toml): one worker per core up to 4 and 3 GiB of free memory each (a worker holds torch,
    ONNX Runtime, OpenVINO and a model or two); past 4, the shipped bundles' builds and the native builds they wait
    for gain nothing."""
    from mait_deploy.device.runner import usable_cores
    from mait_deploy.host.jobs.executors import available_memory

    cores = min(len(usable_cores()), 4)
    free = available_memory()
    return max(1, cores if free is None else min(cores, free // (3 * 2**30)))


@pytest.fixture(scope="session")
def shipped_source(shipped_bundles) -> Any:
    """The shipped checkpoint's verified FP32 export (a ModelSource) for a test that compiles it itself and is not
    about the export: the same one the shipped bundles come from; tests only read it."""
    return shipped_bundles.source


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory, shipped_source) -> Path:
    """The shipped checkpoint's export as a file in a folder of the requesting module's own (a module's tests may
    check what is written beside it): the data and path cases fail on their own input, not after an export each."""
    path = tmp_path_factory.mktemp("shipped-onnx") / "model.onnx"
    shutil.copyfile(shipped_source.onnx_path, path)
    return path


@pytest.fixture(scope="session")
def ort_fp32_bundle(shipped_bundles) -> Path:
    """The shipped checkpoint as an ONNX Runtime FP32 bundle; tests only read it."""
    return shipped_bundles["onnxruntime", "fp32"].folder


@pytest.fixture(scope="session")
def executorch_bundles(shipped_bundles) -> dict[str, Path]:
    """precision -> the shipped checkpoint as an ExecuTorch bundle, for the slow tests that run them (natively, on
    the boards); tests only read them."""
    pytest.importorskip("executorch.runtime")
    return {precision: shipped_bundles["executorch", precision].folder for precision in ("fp32", "int8")}


@pytest.fixture(autouse=True)
def _fresh_gate_memo():
    """Each test scores its own gates: the compile template remembers gates by artifact bytes within a process
    (host/compile/target.py), and a test may change a runner under the same bytes."""
    import sys

    module = sys.modules.get("mait_deploy.host.compile.target")
    if module is not None:
        module._GATES.clear()
    yield

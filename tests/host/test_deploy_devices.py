"""The per-board recommendation of `deploy --inventory` (from fleet rows; the boards themselves: test_remote_board)."""

from __future__ import annotations

from mait_deploy.device.profiling.stats import Latency
from mait_deploy.host.deploy.devices import recommend_for_device
from mait_deploy.results import BoardFacts, BundleRun, GateFigures, RunnerKind, Status


def row(target, precision, p50, top1=None, status="ok", gate_drop=None, runner=RunnerKind.PYTHON, reason=""):
    return BundleRun(target=target, precision=precision, status=Status(status), reason=reason, where="pi",
                     runner=runner, bundle=f"{target}-{precision}", gate=GateFigures(drop_points=gate_drop),
                     latency={"batch_1": Latency(batch=1, p50_ms=p50, p99_ms=p50 * 2, throughput=1000 / p50)},
                     board=BoardFacts(top1=top1))


def test_fastest_within_the_drop_of_the_best_fp32_on_the_board():
    rows = [row("litert", "fp32", 10.0, 0.910), row("litert", "int8", 4.0, 0.890),
            row("onnxruntime", "fp32", 8.0, 0.911), row("onnxruntime", "int8", 5.0, 0.905)]
    choice = recommend_for_device(rows, max_drop=1.0)
    assert choice.bundle == "onnxruntime-int8"
    assert "litert int8" in choice.not_recommended  # 2.1 points below the best FP32 on this board
    assert "1.60x onnxruntime fp32" in choice.reason and "on-board top-1 90.50%" in choice.reason
    assert choice.runner_up == "onnxruntime fp32"


def test_reduced_precision_slower_than_its_fp32_on_the_board_is_never_chosen():
    rows = [row("openvino", "fp32", 3.0, 0.91), row("openvino", "int8", 3.5, 0.91)]
    choice = recommend_for_device(rows, max_drop=1.0)
    assert choice.bundle == "openvino-fp32"
    assert "not shown faster than openvino fp32" in choice.not_recommended["openvino int8"]


def test_gate_drop_decides_without_on_board_images_and_failures_are_ignored():
    rows = [row("litert", "fp32", 10.0, gate_drop=0.0), row("litert", "int8", 4.0, gate_drop=1.5),
            row("onnxruntime", "int8", 1.0, status="failed")]
    choice = recommend_for_device(rows, max_drop=1.0)
    assert choice.bundle == "litert-fp32"
    assert recommend_for_device([row("litert", "fp32", 1.0, status="failed")], 1.0) is None


def native(target, precision, p50, status="ok", reason=""):
    return row(target, precision, p50, status=status, runner=RunnerKind.NATIVE, reason=reason)


def test_for_native_the_board_picks_among_linkable_bundles_by_the_native_runners_figures():
    """deploy -i --for native: a bundle no C++ app can link is ruled out however fast; the others are ranked by
    their native rows (here the reverse of their Python rows), and a native row that failed rules its bundle out."""
    rows = [row("tensorrt", "fp16", 1.0, 0.91), row("litert", "fp32", 6.0, 0.91), row("litert", "int8", 3.0, 0.91),
            row("onnxruntime", "fp32", 5.0, 0.91), row("onnxruntime", "int8", 2.0, 0.91),
            native("litert", "fp32", 5.0), native("litert", "int8", 2.5),
            native("onnxruntime", "fp32", 4.0), native("onnxruntime", "int8", 3.0, status="failed", reason="boom")]
    linkable = {"litert-fp32", "litert-int8", "onnxruntime-fp32", "onnxruntime-int8"}
    python_choice = recommend_for_device(rows, max_drop=1.0)
    assert python_choice.bundle == "tensorrt-fp16"  # native rows are not candidates of their own
    choice = recommend_for_device(rows, max_drop=1.0, native_only=True, linkable=linkable)
    assert choice.bundle == "litert-int8", choice
    assert "native runner's p50" in choice.reason and "2.00x litert fp32" in choice.reason
    assert "cannot link" in choice.not_recommended["tensorrt fp16"]
    assert "did not run it on this board (boom)" in choice.not_recommended["onnxruntime int8"]
    assert choice.figures_ms["litert int8"] == 2.5

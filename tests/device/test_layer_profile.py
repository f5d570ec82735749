"""`profile --layers`: the runtime's per-operation times mapped to the model's parts and op kinds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.device.profiling.layers import LayerTime, assign_parts, op_kind, summarise


def _config(depth=2, backbone="deit"):
    return MaiTConfig(name="t", img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=32, depth=depth,
                      num_heads=4, backbone=backbone, mask=MaskConfig(window=3, masked_blocks=(0,)),
                      preprocess=PreprocessConfig(input_size=16, channels=1, mean=(0.5,), std=(0.25,)))


def _layers(norms: int) -> list[LayerTime]:
    layers = [LayerTime("conv", "Conv", 1.0)]
    for index in range(norms):
        layers += [LayerTime(f"ln{index}", "LayerNormalization", 0.1, is_norm=True),
                   LayerTime(f"mm{index}", "MatMul", 0.5, precision="int8" if index % 2 else "float"),
                   LayerTime(f"sm{index}", "Softmax", 0.2)]
    return layers


def test_parts_follow_the_blocks_when_the_norms_match_the_config():
    config = _config(depth=2)
    profile = summarise("b", "rt", 1, 10, _layers(5), config)
    assert profile.mapping == "blocks"
    assert [part.part for part in profile.parts] == [
        "patch embed", "block 0 attention (masked)", "block 0 mlp", "block 1 attention", "block 1 mlp", "head"]
    assert sum(part.ms for part in profile.parts) == pytest.approx(profile.total_ms)
    # 1.0 (conv) + 5 x (0.1 norm + 0.5 matmul + 0.2 softmax); the odd matmuls ran in int8.
    assert profile.total_ms == pytest.approx(5.0)
    assert profile.by_precision == {"float": pytest.approx(4.0), "int8": pytest.approx(1.0)}
    assert profile.by_kind["matmul/conv"] == pytest.approx(3.5)


def test_parts_are_numbered_segments_when_the_norms_do_not_match():
    layers = _layers(4)
    assert assign_parts(layers, _config(depth=2)) == "segments"
    assert {layer.part for layer in layers} == {"patch embed", "segment 0", "segment 1", "segment 2", "segment 3"}


@pytest.mark.parametrize("op, kind", [("FullyConnectedQuantizedLegacy", "matmul/conv"), ("QGemm", "matmul/conv"),
                                      ("MVN", "norm"), ("Erf", "gelu"), ("DequantizeLinear", "quantize/dequantize"),
                                      ("Transpose", "data movement"), ("Subgraph", "elementwise"),
                                      ("Softmax", "softmax"), ("TopK", "other")])
def test_op_kinds(op, kind):
    assert op_kind(op) == kind


def test_an_onnxruntime_bundle_profiles_per_block_with_json_and_plot(ort_fp32_bundle, tmp_path):
    from mait_deploy.device.bundle import load_bundle
    from mait_deploy.device.profiling.layers import plot_layers, profile_layers

    with load_bundle(ort_fp32_bundle) as runner:
        profile = profile_layers(runner, batch=2, iterations=3, warmup=1)
        depth = runner.manifest.model["depth"]
    assert profile.mapping == "blocks" and len(profile.parts) == 2 * depth + 2
    assert profile.parts[0].part == "patch embed" and profile.parts[-1].part == "head"
    assert set(profile.by_precision) == {"float"} and profile.total_ms > 0 and profile.call_ms > 0
    assert any(part.masked for part in profile.parts)
    plot_layers([profile], tmp_path / "layers.png")
    assert (tmp_path / "layers.png").stat().st_size > 1000

    done = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "profile", str(ort_fp32_bundle), "--layers",
                           "--iterations", "2", "--warmup", "1", "--json", str(tmp_path / "l.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "l.json").read_text())
    assert data["schema"] == "mait-deploy.layer-profile" and data["profiles"][0]["mapping"] == "blocks"
    done = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "profile", str(ort_fp32_bundle), "--layers",
                           "--duration", "1"], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        "error: --layers takes --batch, --iterations, --warmup, --threads, --json and --plot; not --duration"]


def test_runtimes_without_a_profiler_say_where_one_is():
    from mait_deploy.device.runner import Runner, runner_class

    tensorrt = runner_class("tensorrt")
    assert "trtexec" in tensorrt.layer_profiler_missing
    assert tensorrt.layer_times is Runner.layer_times  # the refusal, with that text

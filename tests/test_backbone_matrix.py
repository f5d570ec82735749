"""Every backbone x mask mode on every target: a small model trained here for real (a few seconds on Fashion-MNIST),
exported with one constant per masking pattern, compiled FP32 and INT8, gated and verified.

Slow: 4 models x 4 targets x 2 precisions. The default suite covers the shipped deit/multiplicative model on every
target (the per-target tests) and the first release's cait/additive model (test_export_onnx, test_pipeline).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from mait_deploy import backends  # noqa: E402
from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig  # noqa: E402
from mait_deploy.device.bundle import verify_bundle  # noqa: E402
from mait_deploy.device.data.fashion_mnist import load_split  # noqa: E402
from mait_deploy.errors import DataError  # noqa: E402
from mait_deploy.host.compile.api import compile_model  # noqa: E402
from mait_deploy.host.compile.target import CalibrationOptions, CompileOptions  # noqa: E402
from mait_deploy.host.model.mait import FASHION_MNIST_LABELS, FASHION_MNIST_MEAN, FASHION_MNIST_STD, MaiT  # noqa: E402

# Two patterns each (all heads in block 0, one head in block 1 and 2), a rectangular window for two of them.
COMBOS = {
    "deit-multiplicative": dict(backbone="deit", init_values=None, mask=MaskConfig(mode="multiplicative",
                                                                                  schedule=[[0, 1, 2, 3], [0], [0]])),
    "deit-additive": dict(backbone="deit", init_values=None, mask=MaskConfig(mode="additive", window=(3, 5),
                                                                            schedule=[[0, 1, 2, 3], [0], [0]])),
    "cait-multiplicative": dict(backbone="cait", init_values=0.1, depth_token_only=1,
                                mask=MaskConfig(mode="multiplicative", window=(5, 3),
                                                schedule=[[0, 1, 2, 3], [0], [0]])),
    "cait-additive": dict(backbone="cait", init_values=0.1, depth_token_only=1,
                          mask=MaskConfig(mode="additive", schedule=[[0, 1, 2, 3], [0], [0]])),
}


def _train_small(config: MaiTConfig, seconds_budget_images: int = 12000) -> MaiT:
    try:
        images, labels = load_split("train")
    except DataError as err:
        pytest.skip(f"needs the Fashion-MNIST training split: {err}")
    torch.manual_seed(0)
    model = MaiT(config)
    x = (torch.from_numpy(images[:seconds_budget_images].astype(np.float32) / 255.0)[:, None]
         - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    y = torch.from_numpy(labels[:seconds_budget_images])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    for epoch in range(2):
        order = torch.randperm(len(x))
        for start in range(0, len(x) - 127, 128):
            index = order[start:start + 128]
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module", params=list(COMBOS))
def trained(request):
    config = MaiTConfig(name=f"small_{request.param}", img_size=28, patch_size=4, in_chans=1, num_classes=10,
                        embed_dim=32, depth=3, num_heads=4, mlp_ratio=2.0, labels=FASHION_MNIST_LABELS,
                        preprocess=PreprocessConfig(input_size=28, channels=1, mean=(FASHION_MNIST_MEAN,),
                                                    std=(FASHION_MNIST_STD,)),
                        **COMBOS[request.param])
    return request.param, _train_small(config)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "litert", "tensorrt"])
def test_every_target_compiles_gates_and_verifies(trained, target, tmp_path):
    combo, model = trained
    missing = backends.availability().get(target)
    if missing:
        pytest.skip(f"{target} cannot build here: {missing}")
    for precision in ("fp32", "int8"):
        options = CompileOptions(precision=precision, max_accuracy_drop=0.02,
                                 calibration=CalibrationOptions(count=128))
        result = compile_model(model, target, options, tmp_path / precision, eval_count=500)
        accuracy = result.manifest["accuracy"]
        assert accuracy["reference_top1"] > 0.5, f"{combo}: the small model did not train (chance: 0.1)"
        assert accuracy["passed"], f"{combo} {target} {precision}: {accuracy}"
        build = result.manifest["build"]
        graph = build.get("graph") or build.get("ir") or build  # ONNX / OpenVINO IR / LiteRT flatbuffer
        # One constant per pattern, each feeding its blocks (the builds also check the values).
        assert sorted(c["consumers"] for c in graph["mask_constants"]) == [1, 2], combo
        if target != "tensorrt":  # a TensorRT engine is built and verified on the device
            assert verify_bundle(tmp_path / precision).passed

"""import-timm on hostile or careless weights: odd key types, empty tensors, tensors of the wrong rank or width,
integer weights, thousands of tensors. Each is one line and a non-zero exit, with nothing printed before it
(torch's warnings included) and nothing written."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from tests.helpers import assert_clean_failure


def _deit_like(width=16):
    return {"patch_embed.proj.weight": torch.zeros(width, 3, 4, 4), "pos_embed": torch.zeros(1, 17, width),
            "cls_token": torch.zeros(1, 1, width), "head.weight": torch.zeros(10, width),
            "blocks.0.attn.qkv.weight": torch.zeros(3 * width, width), "blocks.0.mlp.fc1.weight": torch.zeros(32, width)}


def _with(**changes):
    state = _deit_like()
    for key, value in changes.items():
        state[key.replace("__", ".")] = value
    return state


CASES = {
    "integer keys": ({0: torch.zeros(3), 1: torch.zeros(3)}, "keys are parameter names; found int"),
    "an empty key": ({"": torch.zeros(3)}, "keys are parameter names"),
    "a zero-width tensor": (_with(blocks__0__mlp__fc1__weight=torch.zeros(0, 16)), "has an empty dimension"),
    "a patch embedding of rank 3": (_with(patch_embed__proj__weight=torch.zeros(16, 3, 4)),
                                    "patch_embed.proj.weight has shape [16, 3, 4]; timm's DeiT/ViT has 4"),
    "a pos_embed of another width": (_with(pos_embed=torch.zeros(1, 17, 8)), "pos_embed is 8 wide"),
    "a qkv of the wrong height": (_with(blocks__0__attn__qkv__weight=torch.zeros(20, 16)), "q, k and v of width 16"),
    "integer weights": (_with(head__weight=torch.zeros(10, 16, dtype=torch.int64)), "weights are floating point"),
    "thirty thousand tensors": ({f"t{i}": torch.zeros(1) for i in range(30_000)}, "holds 30000 tensors"),
    "not a state dict": ([torch.zeros(3)], "does not hold a state dict of tensors"),
    "pickle protocol 4": (_deit_like(), "a pickle protocol torch's safe loader cannot read"),  # torch warns first
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_weights_are_one_line(case, tmp_path):
    state, message = CASES[case]
    weights = tmp_path / "weights.pth"
    torch.save(state, weights, pickle_protocol=4 if case == "pickle protocol 4" else 2)
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "import-timm", str(weights), "-o",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert_clean_failure(result, message, tmp_path)
    noise = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("error:", "["))]
    assert noise == [], noise  # no warning before the error line
    assert not (tmp_path / "out").exists()

"""deploy on the user's own labelled images (RGB, another resolution, class sub-folders): every row green, and
every bundle verifies and predicts through the CLI."""

import json

import pytest

pytest.importorskip("torch")

from mait_deploy import backends
from tests.helpers import cli, user_folder


@pytest.mark.slow
def test_deploy_on_a_users_image_folder_is_green_end_to_end(tmp_path):
    data = user_folder(tmp_path / "mine", per_class=20)  # 200 RGB 40x40 images
    out = tmp_path / "out"
    # Every target but ExecuTorch, whose two rows would add ~2 of CI's 90 minutes for the preprocessing every row
    # shares (its bundles are taken end to end in tests/backends, tests/native and on the arm64 boards).
    targets = ",".join(name for name in backends.names() if name != "executorch")
    result = cli("deploy", "-o", out, "--targets", targets, "--precisions", "fp32,int8", "--eval", data,
                 "--profile-batches", "1", "--iterations", "5", "--json", timeout=1800)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert rows and all(row["status"] in ("ok", "skipped") for row in rows), [(r["target"], r["status"],
                                                                                 r["reason"]) for r in rows]
    assert all(row["bundle"] for row in rows if row["reason"] == "" or row["status"] == "ok")
    image = next((data / "3").iterdir())
    for row in rows:
        if row["status"] != "ok":
            continue  # TensorRT: bundle built, engine left to the device (no GPU here)
        assert row["gate"]["top1"] is not None and row["verify"]["passed"] and row["verify"]["golden_kind"] == "inputs"
        assert cli("verify", row["bundle"]).returncode == 0
        predicted = cli("predict", row["bundle"], image, "--json")
        assert predicted.returncode == 0, predicted.stderr
        assert json.loads(predicted.stdout)["predictions"][0]["label"]

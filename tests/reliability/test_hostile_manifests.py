"""Hostile and careless manifests: a small manifest.json (at most 64 KB) never crashes a reader, never takes more
than 512 MB or 10 s, and is refused in one line that names the field and its bound (assets/manifest.schema.json
and the cross-field rules in Manifest._check)."""

import json
import shutil
import subprocess
import sys
import time

import pytest
from PIL import Image

from tests.helpers import assert_clean_failure
from tests.shipped import golden_arrays

pytest.importorskip("onnxruntime")

MAX_BYTES = 64 * 1024
MAX_RSS_MB = 512
MAX_SECONDS = 10.0


def _set(data, dotted, value):
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


# name -> (changes as dotted path -> value, what the one error line must say)
CASES = {
    "a billion classes": ({"model.num_classes": 10**9, "outputs.0.shape.1": 10**9},
                          "model.num_classes: 1000000000 is greater than the maximum of 100000"),
    "a megapixel-wide input": ({"model.img_size": 10**6, "model.preprocess.input_size": 10**6},
                               "greater than the maximum of 2048"),
    "labels that disagree with the class count": ({"model.labels": ["a", "b"]}, "2 labels given for 10 classes"),
    "labels that are not text": ({"model.labels": list(range(10))}, "is not of type 'string'"),
    "a label of 10,000 characters": ({"model.labels.0": "x" * 10_000}, "model.labels.0: "),
    "an output width other than the class count": ({"outputs.0.shape.1": 7}, "outputs[0] has 7 classes"),
    "an input shape other than the model's": ({"inputs.0.shape.2": 32}, "does not match the model's input"),
    "four input channels": ({"model.in_chans": 4}, "model.in_chans: 4 is not one of [1, 3]"),
    "a billion golden images": ({"golden.count": 10**9}, "golden.count: 1000000000 is greater than the maximum"),
    "a NaN tolerance": ({"golden.tolerance.max_abs_diff": float("nan")},
                        "golden.tolerance.max_abs_diff: nan is not a finite number"),
    "a negative tolerance": ({"golden.tolerance.max_abs_diff": -1}, "less than the minimum of 0"),
    "an agreement above 1": ({"golden.tolerance.min_top1_agreement": 2}, "greater than the maximum of 1"),
    "a golden kind that does not exist": ({"golden.kind": "weights"}, "golden.kind: 'weights' is not one of"),
    "a golden entry of the wrong type": ({"golden.count": "eight"}, "golden.count: 'eight' is not of type"),
    "a precision that does not exist": ({"precision": "int4"}, "precision: 'int4' is not one of"),
    "a batch of a billion": ({"batch": 10**9}, "batch: 1000000000 is greater than the maximum of 65536"),
    "a hash that is not one": ({"artifact.sha256": "xyz"}, "artifact.sha256: 'xyz' does not match"),
    "a file list of a hundred": ({"files": [{"path": f"f{i}", "sha256": "0" * 64, "bytes": 1} for i in range(100)]},
                                 "files: "),
    "an absolute artifact path": ({"artifact.path": "/etc/passwd"}, "escapes the bundle folder"),
    "a thousand runtime options": ({"runtime.options": {f"k{i}": i for i in range(1000)}},
                                   "runtime.options: "),
    "a gate top-1 of 500%": ({"accuracy.top1": 5.0}, "accuracy.top1: 5.0 is greater than the maximum of 1"),
    "an unknown field deep in the golden entry": ({"golden.extra": 1}, "golden: Additional properties"),
    "a created stamp of 10 KB": ({"created": "x" * 10_000}, "created: "),
    "a mean of the wrong length": ({"model.preprocess.mean": [0.1, 0.2, 0.3, 0.4]}, "model.preprocess.mean: "),
}


def _hostile(source, folder, changes):
    shutil.copytree(source, folder)
    data = json.loads((folder / "manifest.json").read_text())
    for dotted, value in changes.items():
        _set(data, dotted, value)
    text = json.dumps(data)
    assert len(text) <= MAX_BYTES, "the cases are small manifests"
    (folder / "manifest.json").write_text(text)
    return folder


def measured_cli(*args):
    """Run the CLI in a child of a small Python that reports the child's peak RSS and the wall time."""
    probe = ("import resource, subprocess, sys, time; started = time.perf_counter(); "
             "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr); "
             "print(f'@@ {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} "
             "{time.perf_counter() - started:.2f}', file=sys.stderr); sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "mait_deploy.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.splitlines()
    rss_mb, seconds = map(float, lines[-1].split()[1:])
    done.stderr = "\n".join(lines[:-1])
    return done, rss_mb, seconds


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_manifest_is_one_line_within_bounds(case, ort_fp32_bundle, tmp_path):
    changes, message = CASES[case]
    bundle = _hostile(ort_fp32_bundle, tmp_path / "bundle", changes)
    result, rss_mb, seconds = measured_cli("verify", bundle)
    assert_clean_failure(result, message, tmp_path)
    assert rss_mb <= MAX_RSS_MB and seconds <= MAX_SECONDS, (rss_mb, seconds)


@pytest.mark.parametrize("command", ["verify", "predict", "evaluate", "profile", "pack"])
def test_every_reader_refuses_it_before_using_a_value(command, ort_fp32_bundle, tmp_path):
    from PIL import Image

    bundle = _hostile(ort_fp32_bundle, tmp_path / "bundle", CASES["a billion classes"][0])
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    extra = {"predict": [image], "evaluate": ["--count", "10"], "pack": ["-o", tmp_path / "b.tar.gz"]}
    result, rss_mb, seconds = measured_cli(command, bundle, *extra.get(command, []))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    # profile reports each bundle's failure in its table and sums up on stderr
    assert "model.num_classes: 1000000000 is greater than the maximum of 100000" in result.stdout + result.stderr
    assert rss_mb <= MAX_RSS_MB and seconds <= MAX_SECONDS, (rss_mb, seconds)
    assert not (tmp_path / "b.tar.gz").exists()


def test_an_artifact_whose_output_width_disagrees_is_one_error(ort_fp32_bundle, tmp_path):
    # A manifest consistent in itself (5 classes everywhere) over an artifact that gives 10: caught at the first
    # run, never an IndexError in the label lookup.
    # (predict reads no golden set, whose layout would now disagree with the file's size.)
    images = 8 * 28 * 28
    changes = {"model.num_classes": 5, "outputs.0.shape.1": 5, "model.labels": list("abcde"),
               "golden.arrays.1.shape.1": 5, "golden.arrays.2.shape.1": 5, "golden.arrays.2.offset": images + 8 * 5 * 4}
    bundle = _hostile(ort_fp32_bundle, tmp_path / "bundle", changes)
    image = tmp_path / "image.png"
    Image.fromarray(golden_arrays(ort_fp32_bundle)["images"][0]).save(image)
    result, _, _ = measured_cli("predict", bundle, image)
    assert_clean_failure(result, "the artifact gives outputs of shape [1, 10]; its manifest promises [N, 5]",
                         tmp_path)


def test_timing_is_not_the_bound_on_a_valid_bundle(ort_fp32_bundle):
    started = time.perf_counter()
    result, rss_mb, seconds = measured_cli("verify", ort_fp32_bundle)
    assert result.returncode == 0, result.stderr
    assert rss_mb <= MAX_RSS_MB, rss_mb  # the bound holds with room for a real run
    assert time.perf_counter() - started < 60

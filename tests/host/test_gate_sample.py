"""The sampled accuracy gate: a fixed sample decides only where the drop's 99% interval lies on one side of the
limit; otherwise the rest is scored (never an image twice) and the full set decides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mait_deploy.device.data.sources import Dataset
from mait_deploy.host.compile.gate import accuracy_gate, drop_interval

N, CLASSES = 10_000, 10


def _case(error_rate: float, seed: int = 1):
    """A reference that is right on 91% of the images, and a predictor that is wrong on ``error_rate`` more."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, N)
    inputs = np.arange(N, dtype=np.float32).reshape(N, 1, 1, 1)
    right = rng.random(N) < 0.91
    reference = rng.standard_normal((N, CLASSES)).astype(np.float32)
    reference[np.arange(N), np.where(right, labels, (labels + 1) % CLASSES)] += 10
    broken = right & (rng.random(N) < error_rate)
    predicted = reference.copy()
    predicted[broken] = np.roll(predicted[broken], 1, axis=1)
    calls = []

    def predict(batch):
        rows = batch[:, 0, 0, 0].astype(int)
        calls.append(rows)
        return predicted[rows]

    return Dataset(inputs, labels, "synthetic"), reference, predict, calls


def test_a_clear_pass_and_a_clear_failure_are_decided_on_the_sample():
    data, reference, predict, calls = _case(error_rate=0.001)
    gate = accuracy_gate(predict, reference, data, max_drop=1.0, sample=2000, raise_on_failure=False)
    assert gate.passed and gate.count == 2000 and gate.sampled_from == N
    low, high = gate.drop_interval
    assert low <= gate.drop_points <= high < 1.0
    assert sum(len(c) for c in calls) == 2000
    assert "a fixed sample of 10000" in gate.summary()
    # What a manifest stores: plain JSON (numpy scalars here once failed every row of the main job).
    assert json.loads(json.dumps(gate.to_dict()))["drop_interval"] == [low, high]
    assert type(gate.passed) is bool

    data, reference, predict, calls = _case(error_rate=0.05)  # a ~4.5-point drop
    gate = accuracy_gate(predict, reference, data, max_drop=1.0, sample=2000, raise_on_failure=False)
    assert not gate.passed and gate.sampled_from == N and gate.drop_interval[0] > 1.0
    assert sum(len(c) for c in calls) == 2000


def test_a_drop_near_the_limit_scores_the_rest_and_the_full_set_decides():
    data, reference, predict, calls = _case(error_rate=0.011)  # a drop of about one point: the sample cannot tell
    said = []
    sampled = accuracy_gate(predict, reference, data, max_drop=1.0, sample=2000, raise_on_failure=False,
                            announce=said.append)
    assert len(said) == 1 and said[0].endswith("scoring the other 8000 images"), said
    seen = np.concatenate(calls)
    assert sampled.sampled_from is None and sampled.drop_interval is None and sampled.count == N
    assert len(seen) == N and len(np.unique(seen)) == N  # every image once, none twice
    full = accuracy_gate(predict, reference, data, max_drop=1.0, raise_on_failure=False)
    assert (sampled.top1, sampled.drop_points, sampled.passed) == (full.top1, full.drop_points, full.passed)
    # deploy's row says which images its top-1 and drop are on, and why all of them.
    from mait_deploy.results import BundleRun, GateFigures, Status

    row = BundleRun(target="t", precision="int8", status=Status.OK, gate=GateFigures.of(sampled, tried_sample=2000))
    assert row.gate.measured_on() == f"{N} (all)" and "a 2000-image sample could not decide the gate" in row.notes()


def test_the_interval_narrows_with_the_sample_and_vanishes_at_the_population():
    rng = np.random.default_rng(0)
    reference = rng.random(N) < 0.9
    candidate = reference & (rng.random(N) < 0.99)
    small = drop_interval(reference[:500], candidate[:500], N)
    large = drop_interval(reference[:5000], candidate[:5000], N)
    whole = drop_interval(reference, candidate, N)
    assert small[1] - small[0] > large[1] - large[0] > whole[1] - whole[0] == pytest.approx(0.0)
    # No disagreement in the sample is not certainty about the rest: the interval keeps the rule-of-three width.
    same = np.ones(2000, dtype=bool)
    low, high = drop_interval(same, same, N)
    assert low < 0 < high and high == pytest.approx(-np.log(0.01) / 2000 * np.sqrt(8000 / 9999) * 100, abs=1e-3)


def test_a_sample_below_100_images_is_an_error():
    from mait_deploy.errors import UnsupportedOption
    from mait_deploy.host.compile.spec import CompileOptions
    from mait_deploy.host.deploy.pipeline import DeployOptions

    with pytest.raises(UnsupportedOption, match="--gate-sample must be at least 100"):
        CompileOptions(gate_sample=10)
    with pytest.raises(UnsupportedOption, match="--gate-sample must be at least 100"):
        DeployOptions(gate_sample=50)

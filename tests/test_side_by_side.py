"""The side-by-side timing method: blocks, reversed order, first call dropped, per-round ratios."""

import time

import pytest

from mait_deploy.device.profiling.side_by_side import side_by_side


def _sleeper(seconds):
    return lambda: time.sleep(seconds)


def test_ratio_of_a_twice_as_slow_call_is_one_half():
    result = side_by_side({"fast": _sleeper(0.002), "slow": _sleeper(0.004)}, rounds=4, block=4, warmup=1)
    assert result.baseline == "fast" and result.rounds == 4 and result.samples == {"fast": 12, "slow": 12}
    assert result.speedup("fast") == 1.0
    assert 0.35 < result.speedup("slow") < 0.65
    assert result.ratio["slow"]["min"] <= result.speedup("slow") <= result.ratio["slow"]["max"]


def test_first_call_of_each_block_is_dropped_and_order_alternates():
    calls = []

    def make(name):
        def run():
            # The first call after switching candidates is slow, as a runtime waking its threads is.
            time.sleep(0.02 if not calls or calls[-1] != name else 0.001)
            calls.append(name)
        return run

    result = side_by_side({"a": make("a"), "b": make("b")}, rounds=2, block=3, warmup=0)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3  # round 2 reversed: b then a
    assert result.median_ms["a"] < 10 and result.median_ms["b"] < 10  # ms: the 20 ms first calls are not kept


def test_bad_arguments():
    with pytest.raises(ValueError):
        side_by_side({"a": _sleeper(0)}, baseline="b")
    with pytest.raises(ValueError):
        side_by_side({"a": _sleeper(0)}, block=1)

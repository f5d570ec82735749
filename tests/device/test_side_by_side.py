"""The side-by-side timing method: blocks, reversed order, first call dropped, per-round ratios."""

import time

import numpy as np
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


def test_calls_within_settle_ms_of_a_block_start_are_not_kept():
    state = {"last": None, "since": 0.0}

    def make(name):
        def run():
            # A runtime that stays slow for 30 ms after another one ran (its threads and caches settling).
            now = time.perf_counter()
            if state["last"] != name:
                state["last"], state["since"] = name, now
            time.sleep(0.01 if now - state["since"] < 0.03 else 0.001)
        return run

    unsettled = side_by_side({"a": make("a"), "b": make("b")}, rounds=2, block=3, warmup=0)
    settled = side_by_side({"a": make("a"), "b": make("b")}, rounds=2, block=3, warmup=0, settle_ms=50)
    assert unsettled.median_ms["a"] > 5 and settled.median_ms["a"] < 5 and settled.median_ms["b"] < 5
    assert settled.samples == {"a": 4, "b": 4}  # block - 1 kept calls per round, whatever was dropped


def test_bad_arguments():
    with pytest.raises(ValueError):
        side_by_side({"a": _sleeper(0)}, baseline="b")
    with pytest.raises(ValueError):
        side_by_side({"a": _sleeper(0)}, block=1)


def test_recommendation_from_the_race_never_picks_a_precision_slower_than_its_fp32():
    from mait_deploy.device.profiling.side_by_side import SideBySide
    from mait_deploy.device.profiling.stats import Latency
    from mait_deploy.host.deploy.race import recommend_rows
    from mait_deploy.results import BundleRun, GateFigures, Status

    rows = [BundleRun(target=t, precision=p, status=Status.OK, bundle=f"{t}-{p}", gate=GateFigures(drop_points=0.1),
                      latency={"batch_1": Latency(1, 1.0, 1.0, 1.0)})
            for t, p in [("x", "fp32"), ("x", "int8"), ("y", "fp32"), ("y", "int8")]]
    # x int8 is the fastest bundle of all in absolute terms, but y's INT8 is not faster than y's FP32.
    rounds = [{"x fp32": 4.0, "x int8": 2.0, "y fp32": 3.0, "y int8": 3.3},
              {"x fp32": 4.4, "x int8": 2.1, "y fp32": 3.1, "y int8": 3.2}]
    timing = SideBySide(baseline="x fp32", rounds=2, block=8, ratio={}, round_medians_ms=rounds,
                        median_ms={k: sum(r[k] for r in rounds) / 2 for k in rounds[0]})
    best = recommend_rows(rows, timing)
    assert (best.target, best.precision) == ("x", "int8")
    assert "2.05x x fp32 (50% interval 2.00-2.10x; rounds 2.00-2.10x)" in best.reason
    assert "y int8" in best.not_recommended and "0.9" in best.not_recommended["y int8"]
    assert best.runner_up == "y fp32" and best.margin_over_next["median"] > 1.0
    assert set(best.figures_ms) == {"x fp32", "x int8", "y fp32", "y int8"}
    # With x gone, y int8 must not win although it is the only reduced precision left.
    best = recommend_rows(rows[2:], timing)
    assert (best.target, best.precision) == ("y", "fp32")


def _race(rounds):
    from mait_deploy.device.profiling.side_by_side import SideBySide

    names = list(rounds[0])
    return SideBySide(baseline=names[0], rounds=len(rounds), block=8, ratio={}, round_medians_ms=rounds,
                      median_ms={k: float(np.median([r[k] for r in rounds])) for k in names})


def test_a_race_that_cannot_separate_the_fastest_says_so_and_the_tie_break_picks_the_same_bundle():
    from mait_deploy.recommendation import Candidate, recommend

    rng = np.random.default_rng(1)
    # a and b are the same speed (noise only), c is clearly slower; b is the smaller bundle.
    rounds = [{"a fp32": 1.0 * n1, "b int8": 1.0 * n2, "c fp32": 1.6} for n1, n2 in rng.uniform(0.9, 1.1, (12, 2))]
    candidates = [Candidate("a fp32", "a", "fp32", size_bytes=5_000_000, drop_points=0.0),
                  Candidate("b int8", "b", "int8", size_bytes=1_500_000, drop_points=0.1),
                  Candidate("c fp32", "c", "fp32", size_bytes=5_000_000, drop_points=0.0)]
    picks = set()
    for seed in range(5):  # the same evidence in another order, or the candidates listed in another order
        order = np.random.default_rng(seed).permutation(12)
        choice = recommend(candidates[::1 if seed % 2 else -1], _race([rounds[i] for i in order]))
        picks.add(choice.name)
        assert choice.too_close_to_call == ["a fp32", "b int8"] or choice.too_close_to_call == ["b int8", "a fp32"]
        assert "too close to call" in choice.reason and "% interval" in choice.reason, choice.reason
    assert picks == {"b int8"}
    # A clear winner is not a tie: c is 1.6x slower in every round.
    clear = recommend(candidates[2:] + [Candidate("d fp32", "d", "fp32", size_bytes=9)],
                      _race([{"c fp32": 1.6, "d fp32": 1.0 + 0.01 * i} for i in range(12)]))
    assert clear.name == "d fp32" and not clear.too_close_to_call and clear.reason.startswith("fastest")


def test_a_reduced_precision_must_be_shown_faster_than_its_fp32():
    from mait_deploy.recommendation import Candidate, recommend

    # int8 is faster in 7 of 12 rounds (median ratio above 1) but its interval includes 1: FP32 is kept.
    rounds = [{"t fp32": 1.0, "t int8": 1.0 + d} for d in (-.05, -.04, -.03, -.02, -.01, -.005, -.002, .01, .02,
                                                         .03, .04, .05)]
    choice = recommend([Candidate("t fp32", "t", "fp32"), Candidate("t int8", "t", "int8")], _race(rounds))
    assert choice.name == "t fp32"
    assert choice.not_recommended["t int8"].startswith("not shown faster than t fp32")


def test_deploy_for_native_recommends_only_what_the_cpp_runner_runs():
    from mait_deploy.device.profiling.stats import Latency
    from mait_deploy.host.deploy.race import recommend_rows
    from mait_deploy.results import BundleRun, Status

    rows = [BundleRun(target=t, precision="fp32", status=Status.OK, bundle=t, cpp_app=native, size_bytes=5,
                      latency={"batch_1": Latency(1, 1.0, 1.0, 1.0)}) for t, native in (("fast", False), ("app", True))]
    timing = _race([{"fast fp32": 1.0, "app fp32": 2.0 + 0.01 * i} for i in range(12)])
    assert recommend_rows(rows, timing).name == "fast fp32"
    native = recommend_rows(rows, timing, native_only=True)
    assert native.name == "app fp32"
    assert native.not_recommended["fast fp32"] == "the C++ runner cannot run it (deploy --for native)"


def test_deploy_for_takes_python_or_native_only():
    from mait_deploy.errors import UnsupportedOption
    from mait_deploy.host.deploy.pipeline import DeployOptions

    with pytest.raises(UnsupportedOption, match="--for must be one of python, native"):
        DeployOptions(recommend_for="cpp")

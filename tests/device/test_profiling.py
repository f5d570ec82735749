from pathlib import Path

import numpy as np
import pytest

from mait_deploy.device.profiling import state as device
from mait_deploy.device.profiling.measure import ProfileOptions, parse_list
from mait_deploy.device.profiling.stats import drift_ratio, latency_stats
from mait_deploy.errors import UnsupportedOption

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "device"


def test_percentiles_and_throughput_on_synthetic_timings():
    samples_ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    stats = latency_stats(samples_ns, batch=4, percentiles=(50, 90, 99))
    assert stats.count == 100 and stats.min_ms == 1 and stats.max_ms == 100
    assert stats.p(50) == pytest.approx(50.5) and stats.p(90) == pytest.approx(90.1)
    assert stats.p(99) == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.throughput == pytest.approx(4 * 1000 / 50.5)


def test_drift_exposes_a_slowdown():
    steady = np.full(200, 5.0)
    assert drift_ratio(steady) == pytest.approx(1.0)
    throttled = np.concatenate([np.full(100, 5.0), np.full(100, 7.5)])
    assert drift_ratio(throttled) == pytest.approx(1.5)
    assert drift_ratio(np.ones(10)) is None


@pytest.mark.parametrize("kwargs,message", [
    ({"iterations": 0}, "iterations"),
    ({"batches": (0,)}, "batch"),
    ({"batches": (-2,)}, "batch"),
    ({"percentiles": (50, 101)}, "percentiles"),
    ({"mode": "fast"}, "mode"),
    ({"warmup": -1}, "warm-up"),
    ({"iterations": 10, "duration_s": 2.0}, "not both"),
    ({"iterations": None, "duration_s": -1.0}, "duration"),
])
def test_bad_profile_options(kwargs, message):
    with pytest.raises(UnsupportedOption, match=message):
        ProfileOptions(**kwargs)
    with pytest.raises(UnsupportedOption):
        parse_list("1,x", int, "batch")


def test_tegrastats_orin_nano():
    stats = device.parse_tegrastats((FIXTURES / "tegrastats_orin_nano.txt").read_text())
    assert stats["ram_used_mb"] == 775 and stats["ram_total_mb"] == 7620
    assert len(stats["cpu"]) == 6 and stats["cpu"][0] == {"online": True, "load_pct": 1, "freq_mhz": 729}
    assert stats["gpu_load_pct"] == 0
    assert stats["temperatures_c"]["tj"] == 49.156 and stats["temperatures_c"]["gpu"] == 48.562
    assert stats["power_rails"]["VDD_IN"] == {"now_mw": 4761, "avg_mw": 4778}
    assert set(stats["power_rails"]) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


def test_tegrastats_offline_cores_and_gpu_frequency():
    stats = device.parse_tegrastats((FIXTURES / "tegrastats_orin_agx_offline_cores.txt").read_text())
    assert [c["online"] for c in stats["cpu"]] == [True, True, False, False, True, True]
    assert stats["gpu_load_pct"] == 41 and stats["gpu_freq_mhz"] == 305 and stats["emc_load_pct"] == 3


def test_tegrastats_nano_old_rail_format():
    stats = device.parse_tegrastats((FIXTURES / "tegrastats_nano.txt").read_text())
    assert stats["gpu_freq_mhz"] == 921 and stats["temperatures_c"]["CPU"] == 35.0
    assert stats["power_rails"]["POM_5V_IN"] == {"now_mw": 2411, "avg_mw": 2411}


def test_nvpmodel_jetson_clocks_and_vcgencmd():
    assert device.parse_nvpmodel((FIXTURES / "nvpmodel_q.txt").read_text()) == {"mode": "MAXN", "id": 0}
    clocks = device.parse_jetson_clocks((FIXTURES / "jetson_clocks_show.txt").read_text())
    assert clocks["clocks_pinned"] is True and clocks["gpu_freq_mhz"] == pytest.approx(1300.5)
    assert device.parse_vcgencmd_temp((FIXTURES / "vcgencmd_measure_temp.txt").read_text()) == 48.3
    assert device.parse_vcgencmd_clock((FIXTURES / "vcgencmd_measure_clock_arm.txt").read_text()) == 1500345728
    throttled = device.parse_throttled((FIXTURES / "vcgencmd_get_throttled.txt").read_text())
    assert throttled["flags"] == ["under-voltage now", "throttled now", "under-voltage has occurred",
                                  "throttling has occurred"]


def test_missing_tools_are_not_available_never_a_crash(monkeypatch):
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    assert device.raspberry_pi_state() == device.NOT_AVAILABLE
    assert device.run_tool(["vcgencmd", "measure_temp"]) is None
    assert device.read_tegrastats_line() is None
    state = device.device_state()
    assert state["raspberry_pi"] == device.NOT_AVAILABLE and isinstance(state["cpu"], dict)
    assert device.thermal_zones(root="/nonexistent") == device.NOT_AVAILABLE
    assert device.cpu_state(root="/nonexistent")["model"] == device.NOT_AVAILABLE


def test_jetson_state_with_fixture_tools(monkeypatch):
    monkeypatch.setattr(device, "is_jetson", lambda root="/": True)
    outputs = {"nvpmodel": (FIXTURES / "nvpmodel_q.txt").read_text(),
               "jetson_clocks": (FIXTURES / "jetson_clocks_show.txt").read_text()}
    state = device.jetson_state(run=lambda cmd: outputs.get(cmd[0]),
                                tegrastats=lambda: (FIXTURES / "tegrastats_orin_nano.txt").read_text())
    assert state["power_mode"]["mode"] == "MAXN" and state["tegrastats"]["ram_used_mb"] == 775

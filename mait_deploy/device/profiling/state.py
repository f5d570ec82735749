"""Device state: CPU, frequencies and governors, thermal zones, load, memory; Jetson (nvpmodel, jetson_clocks,
tegrastats) and Raspberry Pi (vcgencmd). Every probe is optional: a missing file or tool gives "not available".

The parsers are pure functions over the tools' text output, tested on real sample outputs kept as fixtures.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from mait_deploy.device.profiling.isa import parse_cpuinfo

NOT_AVAILABLE = "not available"
Runner = Callable[[list[str]], str | None]


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def run_tool(command: list[str], timeout: float = 5.0) -> str | None:
    """A tool's stdout, or None when it is missing, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


# -- CPU, thermal, memory (Linux sysfs/procfs) ---------------------------------------------------------------

def cpu_state(root: str = "/") -> dict[str, object]:
    base = Path(root)

    model = parse_cpuinfo(_read(base / "proc/cpuinfo") or "")[0] or NOT_AVAILABLE
    governors, frequencies = set(), []
    for cpu in sorted((base / "sys/devices/system/cpu").glob("cpu[0-9]*")):
        governor = _read(cpu / "cpufreq/scaling_governor")
        if governor:
            governors.add(governor)
        freq = _read(cpu / "cpufreq/scaling_cur_freq")
        if freq and freq.isdigit():
            frequencies.append(int(freq) / 1000)
    return {"model": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "governors": sorted(governors) or NOT_AVAILABLE,
            "freq_mhz": {"min": min(frequencies), "max": max(frequencies),
                         "mean": round(sum(frequencies) / len(frequencies), 1)} if frequencies else NOT_AVAILABLE}


def thermal_zones(root: str = "/") -> list[dict[str, object]] | str:
    zones = []
    for zone in sorted(Path(root, "sys/class/thermal").glob("thermal_zone*")):
        temp = _read(zone / "temp")
        if temp and temp.lstrip("-").isdigit():
            zones.append({"zone": zone.name, "type": _read(zone / "type") or "?", "temp_c": int(temp) / 1000})
    return zones or NOT_AVAILABLE


def meminfo_kb(root: str = "/") -> dict[str, int]:
    """/proc/meminfo's figures in kB by name (empty where the system has none)."""
    meminfo = _read(Path(root, "proc/meminfo")) or ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+):\s+(\d+) kB", meminfo, re.MULTILINE)}


def memory_state(root: str = "/") -> dict[str, object] | str:
    values = meminfo_kb(root)
    if not values:
        return NOT_AVAILABLE
    return {"total_mb": round(values.get("MemTotal", 0) / 1024),
            "available_mb": round(values.get("MemAvailable", 0) / 1024)}


def load_average() -> list[float] | str:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return NOT_AVAILABLE


# -- Jetson -------------------------------------------------------------------------------------------------

_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"SWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"CPU \[([^\]]*)\]")
_GPU = re.compile(r"GR3D_FREQ (\d+)%(?:@\[?(\d+)\]?)?")
_EMC = re.compile(r"EMC_FREQ (\d+)%(?:@(\d+))?")
_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?[\d.]+)C\b")
_RAIL_MW = re.compile(r"\b((?:VDD|VIN|POM)_?[A-Z0-9_]*) (\d+)mW/(\d+)mW")
_RAIL_OLD = re.compile(r"\b(POM_[A-Z0-9_]+|VDD_[A-Z0-9_]+) (\d+)/(\d+)(?=\s|$)")


def parse_tegrastats(line: str) -> dict[str, object]:
    """One tegrastats line (Nano/TX2/Xavier/Orin formats) -> RAM (the GPU's shared memory), CPU, GPU, temperatures,
    power rails (now/average, mW)."""
    result: dict[str, object] = {}
    if m := _RAM.search(line):
        result["ram_used_mb"], result["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _SWAP.search(line):
        result["swap_used_mb"], result["swap_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _CPU.search(line):
        cores: list[dict[str, object]] = []
        for token in m.group(1).split(","):
            token = token.strip()
            if token == "off":
                cores.append({"online": False})
            elif core := re.match(r"(\d+)%@(\d+)", token):
                cores.append({"online": True, "load_pct": int(core.group(1)), "freq_mhz": int(core.group(2))})
        result["cpu"] = cores
    if m := _GPU.search(line):
        result["gpu_load_pct"] = int(m.group(1))
        if m.group(2):
            result["gpu_freq_mhz"] = int(m.group(2))
    if m := _EMC.search(line):
        result["emc_load_pct"] = int(m.group(1))
    temps = {name: float(value) for name, value in _TEMP.findall(line)}
    if temps:
        result["temperatures_c"] = temps
    rails = {name: {"now_mw": int(now), "avg_mw": int(avg)} for name, now, avg in _RAIL_MW.findall(line)}
    if not rails:
        rails = {name: {"now_mw": int(now), "avg_mw": int(avg)} for name, now, avg in _RAIL_OLD.findall(line)}
    if rails:
        result["power_rails"] = rails
    return result


def parse_nvpmodel(text: str) -> dict[str, object]:
    """``nvpmodel -q`` output: 'NV Power Mode: MAXN' followed by the mode id."""
    name = re.search(r"NV Power Mode:\s*(.+)", text)
    number = re.search(r"^\s*(\d+)\s*$", text, re.MULTILINE)
    return {"mode": name.group(1).strip() if name else NOT_AVAILABLE,
            "id": int(number.group(1)) if number else None}


def parse_jetson_clocks(text: str) -> dict[str, object]:
    """``jetson_clocks --show``: whether CPU/GPU clocks are pinned (MinFreq == MaxFreq == CurrentFreq)."""
    cpus = re.findall(r"cpu\d+: Online=\d+ Governor=\w+ MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", text)
    gpu = re.search(r"GPU MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", text)
    pinned = bool(cpus) and all(a == b == c for a, b, c in cpus) and (gpu is None or len(set(gpu.groups())) == 1)
    return {"clocks_pinned": pinned, "gpu_freq_mhz": int(gpu.group(3)) / 1e6 if gpu else NOT_AVAILABLE}


def read_tegrastats_line(timeout: float = 3.0) -> str | None:
    """Start tegrastats, read one line, stop it."""
    if shutil.which("tegrastats") is None:
        return None
    try:
        process = subprocess.Popen(["tegrastats", "--interval", "200"], stdout=subprocess.PIPE, text=True)
    except OSError:
        return None
    try:
        import select

        assert process.stdout is not None  # stdout=PIPE
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        return process.stdout.readline().strip() if ready else None
    finally:
        process.terminate()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()


def is_jetson(root: str = "/") -> bool:
    return Path(root, "etc/nv_tegra_release").exists() or shutil.which("tegrastats") is not None


def jetson_state(run: Runner = run_tool,
                 tegrastats: Callable[[], str | None] = read_tegrastats_line) -> dict[str, object] | str:
    if not is_jetson():
        return NOT_AVAILABLE
    nvpmodel = run(["nvpmodel", "-q"])
    clocks = run(["jetson_clocks", "--show"])
    line = tegrastats()
    return {"power_mode": parse_nvpmodel(nvpmodel) if nvpmodel else NOT_AVAILABLE,
            "jetson_clocks": parse_jetson_clocks(clocks) if clocks else NOT_AVAILABLE,
            "tegrastats": parse_tegrastats(line) if line else NOT_AVAILABLE}


# -- Raspberry Pi -------------------------------------------------------------------------------------------

THROTTLED_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage has occurred", 17: "ARM frequency capping has occurred", 18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def parse_vcgencmd_temp(text: str) -> float | None:
    match = re.search(r"temp=(-?[\d.]+)'C", text)
    return float(match.group(1)) if match else None


def parse_vcgencmd_clock(text: str) -> int | None:
    match = re.search(r"frequency\(\d+\)=(\d+)", text)
    return int(match.group(1)) if match else None


def parse_throttled(text: str) -> dict[str, object] | None:
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", text)
    if not match:
        return None
    value = int(match.group(1), 16)
    return {"raw": match.group(1), "flags": [name for bit, name in THROTTLED_BITS.items() if value >> bit & 1]}


def raspberry_pi_state(run: Runner = run_tool) -> dict[str, object] | str:
    if shutil.which("vcgencmd") is None:
        return NOT_AVAILABLE
    temp, arm, core, throttled = (run(["vcgencmd", *args]) for args in
                                  (["measure_temp"], ["measure_clock", "arm"], ["measure_clock", "core"],
                                   ["get_throttled"]))
    return {"temp_c": parse_vcgencmd_temp(temp or "") or NOT_AVAILABLE,
            "arm_hz": parse_vcgencmd_clock(arm or "") or NOT_AVAILABLE,
            "core_hz": parse_vcgencmd_clock(core or "") or NOT_AVAILABLE,
            "throttled": parse_throttled(throttled or "") or NOT_AVAILABLE}


def device_state() -> dict[str, object]:
    """Everything above, each part "not available" where it cannot be read."""
    from mait_deploy.device.profiling.isa import cpu_isa

    return {"cpu": cpu_state(), "isa": cpu_isa(), "thermal": thermal_zones(), "memory": memory_state(),
            "load_avg": load_average(), "jetson": jetson_state(), "raspberry_pi": raspberry_pi_state()}

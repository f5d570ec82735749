"""The README's install command: torch from PyTorch's CPU wheel index, checked against the public registries alone
(an isolated pip config: no local wheels, no constraints) where this machine can reach them."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def readme_install() -> list[str]:
    """The pip arguments of the README's first command (the quick start's first bash block)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)\n```", text, re.S).group(1)
    command = block.split("&&")[0]
    words = shlex.split(command)
    assert words[:2] == ["pip", "install"], command
    return words[2:]


def test_the_readme_installs_torch_from_the_cpu_wheel_index_at_the_pinned_version():
    args = readme_install()
    assert "torch==2.13.0" in args and args[args.index("--extra-index-url") + 1] == CPU_INDEX
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"torch==2.13.0"' in pyproject  # the export extra pins the same torch


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_the_readme_install_resolves_to_cpu_wheels_only_from_the_public_registries(tmp_path):
    for host in ("pypi.org", "download.pytorch.org"):
        if not _reachable(host):
            pytest.skip(f"{host} is not reachable from this machine: the resolution is checked where it is")
    args = [a if a != ".[all]" else f"{ROOT}[all]" for a in readme_install() if a != "-e"]
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
                           "--quiet", "--report", str(report), "--index-url", "https://pypi.org/simple", *args],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert chosen["torch"] == "2.13.0+cpu", chosen["torch"]
    cuda = sorted(name for name in chosen if name.startswith(("nvidia-", "cuda-", "triton")))
    assert not cuda, cuda

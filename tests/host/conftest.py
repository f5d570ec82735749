"""Helpers shared by the host tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def bundle_facts():
    """OUT -> each bundle's artifact hash, golden outputs and gate figures (what a build decides, not its
    timings, nor how many threads computed them, a build worker taking its share of the cores, nor the memory
    OpenVINO's cache held, which moves from run to run) and what built it (``build.built_on.by``)."""

    def without_threads(runtime: dict) -> dict:
        return {k: v for k, v in runtime.items() if k not in ("threads", "inference_num_threads", "static_cache_mb")}

    def facts(out) -> dict[str, dict]:
        found = {}
        for manifest in sorted((out / "bundles").glob("*/manifest.json")):
            data = json.loads(manifest.read_text())
            golden, gate = data["golden"], data["accuracy"]
            golden = {**golden, "recorded_on": {**golden["recorded_on"],
                                                "runtime": without_threads(golden["recorded_on"]["runtime"])}}
            gate = {k: without_threads(v) if k == "runtime" else v for k, v in gate.items() if k != "seconds"}
            found[manifest.parent.name] = {"artifact": data["artifact"]["sha256"], "golden": golden, "gate": gate,
                                           "by": data["build"]["built_on"]["by"]}
        return found

    return facts

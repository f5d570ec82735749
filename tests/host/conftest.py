"""Helpers shared by the host tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def bundle_facts():
    """OUT -> each bundle's artifact hash, golden outputs and gate figures (what a build decides, not its
    timings) and what built it (``build.built_on.by``)."""

    def facts(out) -> dict[str, dict]:
        found = {}
        for manifest in sorted((out / "bundles").glob("*/manifest.json")):
            data = json.loads(manifest.read_text())
            found[manifest.parent.name] = {"artifact": data["artifact"]["sha256"], "golden": data["golden"],
                                           "gate": {k: v for k, v in data["accuracy"].items() if k != "seconds"},
                                           "by": data["build"]["built_on"]["by"]}
        return found

    return facts

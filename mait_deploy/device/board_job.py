"""One bundle's work on a board in one process: verify, evaluate on labelled data, profile.

``mait-deploy remote profile`` runs ``python -m mait_deploy.device.board_job JOB_JSON`` on the board: the runtime is
imported once instead of three times (under emulation, or OpenVINO on a small board, an import costs seconds to a
minute). Prints one JSON object; each step's failure is recorded in it, and later steps still run where they can.
Device side: numpy and the bundle's runtime only.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mait_deploy.device.accuracy import AccuracyResult, evaluate_bundle
from mait_deploy.device.bundle import VerifyReport, verify_bundle
from mait_deploy.device.profiling.measure import ProfileOptions, profile_many
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.errors import MaitDeployError
from mait_deploy.typed_json import encode


@dataclass
class BoardJobResult:
    """What one board job prints (one JSON object), read back by the host with typed_json.decode."""

    errors: dict[str, str] = field(default_factory=dict)  # step -> why it failed; later steps still ran
    seconds: dict[str, float] = field(default_factory=dict)  # step -> how long it took
    verify: VerifyReport | None = None
    accuracy: AccuracyResult | None = None  # on the evaluation images the host pushed


def run_job(bundle: str, eval_data: str | None = None, profile: dict[str, Any] | None = None,
            profile_json: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """A BoardJobResult as JSON values; the profile itself goes to ``profile_json`` (a ProfileReport file)."""
    from mait_deploy.device.profiling.report import save_reports

    result = BoardJobResult()

    def step(name: str, action: Any) -> Any:
        started = time.perf_counter()
        try:
            return action()
        except MaitDeployError as err:
            result.errors[name] = str(err)
        finally:
            result.seconds[name] = round(time.perf_counter() - started, 2)
        return None

    result.verify = step("verify", lambda: verify_bundle(bundle, RunnerOptions(threads=threads)))
    if eval_data is not None:
        result.accuracy = step("evaluate", lambda: evaluate_bundle(bundle, eval_data, threads=threads))
    if profile is not None:
        def measure() -> Any:
            options = ProfileOptions(**{**profile, "batches": tuple(profile.get("batches", (1,))),
                                        "threads": threads})
            return profile_many([bundle], options)

        reports = step("profile", measure)
        if reports:
            if profile_json:
                save_reports(reports, profile_json)
            if reports[0].error:
                result.errors["profile"] = reports[0].error
    return dict(encode(result))


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(run_job(**job)))  # step failures are in "errors"; the host decides what they mean

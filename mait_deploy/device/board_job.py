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
from typing import Any

from mait_deploy.errors import MaitDeployError


def run_job(bundle: str, eval_data: str | None = None, profile: dict[str, Any] | None = None,
            profile_json: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """{"verify": ..., "accuracy": ..., "profile": ..., "errors": {step: message}, "seconds": {step: s}}."""
    from mait_deploy.device.bundle import verify_bundle
    from mait_deploy.device.evaluate import evaluate_bundle
    from mait_deploy.device.profiling.measure import ProfileOptions, profile_many
    from mait_deploy.device.profiling.report import save_reports
    from mait_deploy.device.runner import RunnerOptions

    result: dict[str, Any] = {"errors": {}, "seconds": {}}

    def step(name: str, action: Any) -> Any:
        started = time.perf_counter()
        try:
            return action()
        except MaitDeployError as err:
            result["errors"][name] = str(err)
        finally:
            result["seconds"][name] = round(time.perf_counter() - started, 2)
        return None

    report = step("verify", lambda: verify_bundle(bundle, RunnerOptions(threads=threads)))
    result["verify"] = report.to_dict() if report else None
    if eval_data is not None:
        accuracy = step("evaluate", lambda: evaluate_bundle(bundle, eval_data, threads=threads))
        result["accuracy"] = accuracy.to_dict() if accuracy else None
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
                result["errors"]["profile"] = reports[0].error
    return result


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(run_job(**job)))  # step failures are in "errors"; the host decides what they mean

"""The child process of ``load_probe``: loads one bundle's runner in-process and exits 0, or prints the error line
and exits 1 (a runtime that aborts on a corrupt program kills only this process)."""

from __future__ import annotations

import sys

from mait_deploy.device.bundle import load_bundle
from mait_deploy.errors import MaitDeployError


def main(bundle: str) -> int:
    try:
        load_bundle(bundle, check_hashes=False).activate().close()
    except MaitDeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""matplotlib set-up for every plot mait-deploy writes: headless (Agg), PNG written atomically."""

from __future__ import annotations

import os
from typing import Any

from mait_deploy._io import atomic_path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str | os.PathLike[str], dpi: int = 110) -> None:
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, dpi=dpi, format="png")
    pyplot().close(figure)

"""Where the files shipped inside the package live (the demo checkpoint, the Fashion-MNIST sample)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"

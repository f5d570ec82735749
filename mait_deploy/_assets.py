"""Where the files shipped inside the package live (the demo checkpoint, the Fashion-MNIST sample)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# Every registered variant's counted parameters and FLOPs (host/model/stats.write_variant_table), so that
# `mait-deploy models` answers without importing torch.
VARIANT_TABLE = ASSETS / "variant_stats.json"

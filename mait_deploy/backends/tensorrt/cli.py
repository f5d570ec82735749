"""TensorRT's own command: build (or reuse) the engine on the NVIDIA device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mait_deploy.backends.tensorrt.runner import build_engine_for_bundle


def register(app: Any) -> None:
    from mait_deploy.cli.app import console, handle_errors, print_json, status_spinner

    @app.command(name="build-engine")
    @handle_errors
    def build_engine(
        bundle: Path = typer.Argument(..., help="A tensorrt bundle, on the NVIDIA device."),
        force: bool = typer.Option(False, "--force", help="Rebuild even when a valid cached engine exists."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Build (or reuse) the TensorRT engine of a bundle on this device; cached beside the bundle."""

        with status_spinner() as status:
            status.update("building the TensorRT engine")
            result = build_engine_for_bundle(bundle, force=force)
        if as_json:
            print_json(result)
        else:
            console.print(f"{'built' if result['built'] else 'reused'} {result['engine']} for {result['gpu']} "
                          f"(sm {result['compute_capability']}, TensorRT {result['tensorrt']}) in "
                          f"{result['seconds']} s", highlight=False)

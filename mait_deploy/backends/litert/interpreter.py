"""Which LiteRT interpreter this device has (the runner and the per-operator profile both load it)."""

from __future__ import annotations

from typing import Any

from mait_deploy.errors import MissingDependency


def interpreter_module() -> tuple[Any, str]:
    """(module with Interpreter, its package name): ai-edge-litert, else tflite-runtime."""
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError as first:
        try:
            from tflite_runtime import interpreter  # type: ignore[import-not-found]

            return interpreter, "tflite-runtime"
        except ImportError as err:
            detail = "tflite-runtime also failed to import"
            if "numpy" in str(err).lower() or "_ARRAY_API" in str(err):
                detail += " (tflite-runtime needs numpy < 2)"
            raise MissingDependency("ai_edge_litert", extra="litert", detail=detail) from first

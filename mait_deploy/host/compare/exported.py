"""A torch.export program (a baseline timm's Python saved) as a module the PyTorch-converting targets take."""

from __future__ import annotations

import io
from typing import Any

import torch


class ExportedModule(torch.nn.Module):
    """The loaded program as a module: its graph is already in eval form, and the module torch.export gives refuses
    ``.eval()``/``.train()``, which converters call. It pickles as the program's own bytes (torch.export.save), so
    it travels to build workers like any other model (host/jobs/job.py)."""

    def __init__(self, program_bytes: bytes) -> None:
        super().__init__()
        self.program_bytes = program_bytes
        self.program = torch.export.load(io.BytesIO(program_bytes)).module()

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = mode
        return self

    def forward(self, x: Any) -> Any:
        return self.program(x)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return ExportedModule, (self.program_bytes,)

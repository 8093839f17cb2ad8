"""The one place the compute device is chosen."""
from __future__ import annotations

import torch

from ..errors import UserError


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (CUDA when available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"'{name}' is not a device name (try cpu, cuda, cuda:0 or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was asked for but this machine has no usable CUDA GPU")
    return dev

"""Building blocks that work on vectors (dims=0), sequences (dims=1), images (dims=2) and clips (dims=3)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..utils import file_sha256


def conv(dims: int, cin: int, cout: int, k: int = 3, stride=1, bias: bool = False) -> nn.Module:
    """A 'same'-padded convolution of the given dimensionality (a Linear layer for vectors)."""
    if dims == 0:
        return nn.Linear(cin, cout, bias=bias)
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    pad = tuple(kk // 2 for kk in k) if isinstance(k, tuple) else k // 2
    return cls(cin, cout, k, stride=stride, padding=pad, bias=bias)


def norm(dims: int, c: int) -> nn.Module:
    return {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](c)


class ResBlock(nn.Module):
    """Basic residual block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); for vectors, Linear layers."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int = 1):
        super().__init__()
        s = stride if dims > 0 else 1
        self.conv1 = conv(dims, cin, cout, 3, s)
        self.bn1 = norm(dims, cout)
        self.conv2 = conv(dims, cout, cout, 3, 1)
        self.bn2 = norm(dims, cout)
        self.act = nn.ReLU(inplace=True)
        self.short = None
        if s != 1 or cin != cout:
            self.short = nn.Sequential(conv(dims, cin, cout, 1, s), norm(dims, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + (x if self.short is None else self.short(x)))


class SqueezeExcite(nn.Module):
    """Channel attention: x * sigmoid(W2 relu(W1 mean_spatial(x))) (Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.flatten(2).mean(-1) if x.dim() > 2 else x
        gate = self.fc(squeezed)
        return x * gate.view(*gate.shape, *([1] * (x.dim() - 2)))


def halvings(size: int, target: int, most: int) -> int:
    """How many stride-2 steps bring ``size`` down to about ``target`` (0..most)."""
    if size <= target:
        return 0
    return max(0, min(most, int(math.floor(math.log2(size / target)))))


def halve(size: int, n: int) -> int:
    """Output size after n 'same'-padded stride-2 steps: ceil applied n times."""
    for _ in range(n):
        size = (size + 1) // 2
    return size


def read_state_dict(path: str, sha256: str, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a local state dict file (``model.weights``), its SHA-256 checked first when given."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"model.weights names no file: {path} (a local {what} state dict; nothing is downloaded)")
    if sha256:
        try:
            got = file_sha256(p)
        except OSError as e:
            raise UserError(f"model.weights {path} cannot be read ({e.strerror or e})") from e
        want = sha256.strip().lower()
        if got != want:
            raise UserError(f"model.weights {path} has SHA-256 {got}, not {want} as model.weights_sha256 says")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file or non-tensor payload
        raise UserError(f"model.weights {path} is not a readable torch state dict ({type(e).__name__})") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"model.weights {path} does not hold a state dict (a mapping of names to tensors)")
    return sd

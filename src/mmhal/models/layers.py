"""Building blocks that work on vectors (dims=0), sequences (dims=1), images (dims=2) and clips (dims=3)."""
from __future__ import annotations

import math

import torch
from torch import nn


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

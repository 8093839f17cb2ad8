"""Stems: one per modality, each with its own parameters, chosen by the input kind of the modality.

Every stem maps (B, *sample_shape) to (B, C, *spatial) with ``C = 2 * width`` and a spatial shape it
can state before it sees data (``out_spatial``), so teacher and student agree on the trunk grid.
Down-sampling adapts to the input size: 112x112 faces get ResNet-18's three halvings (to 14x14),
28x28 images one, 3x3 patches none; sequences are brought to about 32 steps.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..registry import Registry
from .layers import ResBlock, conv, halve, halvings, norm

#: input kind -> stem class
STEMS: Registry[Callable[..., nn.Module]] = Registry("stem")


@STEMS.register("vector")
class VectorStem(nn.Module):
    """(B, D) -> (B, 2w): Linear-BN-ReLU, then a residual block (two more layers); with ``plain``, the first
    layer alone (the stem of a network whose every modality is a vector, ``MultimodalNet``)."""

    def __init__(self, shape: tuple[int, ...], width: int, blocks: int = 1, plain: bool = False):
        super().__init__()
        c = 2 * width
        self.net = nn.Sequential(
            nn.Linear(shape[0], c), nn.BatchNorm1d(c), nn.ReLU(inplace=True), *([] if plain else [ResBlock(0, c, c)])
        )

    @staticmethod
    def out_spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
        return ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@STEMS.register("sequence")
class SequenceStem(nn.Module):
    """(B, C, L) -> (B, 2w, ~32): two conv(k5)-BN-ReLU layers (C -> w -> 2w), each followed by a
    max-pool while the sequence is longer than about 32 steps; ``blocks - 1`` residual blocks at 2w.

    A plain convolution-pooling stem: on HAPT it gave a better teacher (93.7 % vs 89.9 % test
    accuracy, one seed) than a strided residual stem of the same width, at the same cost.
    """

    TARGET = 32

    def __init__(self, shape: tuple[int, ...], width: int, blocks: int = 1):
        super().__init__()
        n = halvings(shape[1], self.TARGET, 3)
        layers: list[nn.Module] = [conv(1, shape[0], width, 5), norm(1, width), nn.ReLU(inplace=True)]
        if n >= 1:
            layers.append(nn.MaxPool1d(2, ceil_mode=True))
        layers += [conv(1, width, 2 * width, 5), norm(1, 2 * width), nn.ReLU(inplace=True)]
        layers += [nn.MaxPool1d(2, ceil_mode=True) for _ in range(max(0, n - 1))]
        layers += [ResBlock(1, 2 * width, 2 * width) for _ in range(blocks - 1)]
        self.net = nn.Sequential(*layers)

    @classmethod
    def out_spatial(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (halve(shape[1], halvings(shape[1], cls.TARGET, 3)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _image_plan(h: int, w: int) -> tuple[int, int, int, int]:
    """(halvings, conv1 stride, max-pool on?, layer2 stride) for a ResNet-18 conv1..layer2 stem."""
    n = halvings(min(h, w), 14, 3)
    conv1_stride = 2 if n >= 2 else 1
    pool = 1 if n >= 3 else 0
    layer2_stride = 2 if n >= 1 else 1
    return n, conv1_stride, pool, layer2_stride


@STEMS.register("image")
class ImageStem(nn.Module):
    """(B, C, H, W) -> (B, 2w, ~14, ~14): ResNet-18 conv1, max-pool, layer1, layer2 with size-adapted strides."""

    def __init__(self, shape: tuple[int, ...], width: int, blocks: int = 2):
        super().__init__()
        n, s_conv, pool, s_l2 = _image_plan(shape[1], shape[2])
        k = 7 if n >= 2 else 3
        layers: list[nn.Module] = [conv(2, shape[0], width, k, s_conv), norm(2, width), nn.ReLU(inplace=True)]
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        layers += [ResBlock(2, width, width) for _ in range(blocks)]
        layers.append(ResBlock(2, width, 2 * width, s_l2))
        layers += [ResBlock(2, 2 * width, 2 * width) for _ in range(blocks - 1)]
        self.net = nn.Sequential(*layers)

    @staticmethod
    def out_spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
        n = _image_plan(shape[1], shape[2])[0]
        return (halve(shape[1], n), halve(shape[2], n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@STEMS.register("clip")
class ClipStem(nn.Module):
    """(B, C, T, H, W) -> (B, 2w, ~14, ~14): 3D convolutions, then time is averaged away (as the reference)."""

    def __init__(self, shape: tuple[int, ...], width: int, blocks: int = 1):
        super().__init__()
        n, s_conv, pool, s_l2 = _image_plan(shape[2], shape[3])
        layers: list[nn.Module] = [
            conv(3, shape[0], width, (3, 7, 7) if n >= 2 else 3, (1, s_conv, s_conv)),
            norm(3, width), nn.ReLU(inplace=True),
        ]
        if pool:
            layers.append(nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        layers += [ResBlock(3, width, width) for _ in range(blocks)]
        layers.append(ResBlock(3, width, 2 * width, (1, s_l2, s_l2)))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def out_spatial(shape: tuple[int, ...]) -> tuple[int, ...]:
        n = _image_plan(shape[2], shape[3])[0]
        return (halve(shape[2], n), halve(shape[3], n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=2)

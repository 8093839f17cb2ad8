"""Region pyramid: adaptive average pooling of a feature map into regions at several grid sizes.

For a 2D map and levels (4, 2, 1): 16 + 4 + 1 = 21 regions; for a 1D map: 4 + 2 + 1 = 7; a vector
feature is a single region.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def num_regions(spatial_dims: int, levels: Sequence[int]) -> int:
    """R = sum over levels of level ** spatial_dims (1 for vectors)."""
    if spatial_dims == 0:
        return 1
    return int(sum(lv**spatial_dims for lv in levels))


def region_pool(fmap: torch.Tensor, levels: Sequence[int], from_finest: bool = False, stat: str = "mean") -> torch.Tensor:
    """(B, C, *spatial) -> (B, R, C): the mean feature of every region of every pyramid level, each level pooled
    from the map, or with ``from_finest`` from the finest level's pooled map (the authors' code pools 2x2 and 1x1
    from the 4x4 map; the two differ where the map's grid is not a multiple of the finest level, e.g. 7x7).
    ``stat="meanmax"``: (B, R, 2C), each region's mean and then its maximum (the pooling of a network whose
    ``model.pool`` is meanmax, so that its head reads a region as it reads the whole map)."""
    dims = fmap.dim() - 2
    if dims == 0:
        return fmap.unsqueeze(1) if stat == "mean" else torch.cat([fmap, fmap], dim=1).unsqueeze(1)
    pools = [{1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[dims]]
    if stat == "meanmax":
        pools.append({1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[dims])
    elif stat != "mean":
        raise ValueError(f"unknown region statistic '{stat}'")
    out = []
    for pool in pools:
        source = pool(fmap, max(levels)) if from_finest else fmap
        out.append(torch.cat([pool(source, lv).flatten(2) for lv in levels], dim=2))  # (B, C, R)
    return torch.cat(out, dim=1).transpose(1, 2)


def square_remap(fmap: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The authors' face re-map of a feature map before the pyramid: A = F^2 / (||F^2||_2 over the grid + eps), per
    sample and channel."""
    sq = fmap.float() ** 2
    norm = sq.flatten(2).norm(dim=2).view(*sq.shape[:2], *([1] * (sq.dim() - 2)))
    return (sq / (norm + eps)).to(fmap.dtype)

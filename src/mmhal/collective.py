"""Collective operations across the processes of a ``torchrun`` job, usable from every layer.

Without an initialised process group (a plain ``mmhal run``) every function here is the identity: one
process is a world of size 1. The two differentiable operations carry gradients back to the rank that
owns each row, summed over the ranks that used it:

* ``all_reduce_sum(x)``: y = sum_r x_r on every rank; dL/dx_r = sum_r' dL_r'/dy.
* ``all_gather_rows(x)`` (x with grad): y = cat_r x_r (rank order) on every rank; dL/dx_r is the slice of
  rank r's rows in sum_r' dL_r'/dy.

Summing over ranks is what makes DDP's gradient averaging come out right: DDP applies
(1/W) sum_r grad(L_r), so a loss that every rank computes over the whole gathered batch (DAD with
``distill.dad_global``) or normalises with global statistics (``GlobalBatchNorm``) must send each
rank's share of every rank's gradient back to the rows' owner.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the job (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        w, r = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(w)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = (r * x.shape[0], (r + 1) * x.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        lo, hi = ctx.rows
        return g[lo:hi]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """sum over ranks of ``x`` (same shape on every rank), with gradient."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank's ``x`` (the same number on every rank) concatenated in rank order;
    differentiable (module docstring) when ``x`` requires grad."""
    return _GatherRows.apply(x) if world_size() > 1 else x


def all_gather_shards(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank's ``x`` concatenated in rank order, where ranks may hold different numbers
    of rows (evaluation shards); no gradient. Sizes are gathered first, shards padded to the largest for
    the collective and the padding cut off again, so every row appears exactly once."""
    w = world_size()
    if w == 1:
        return x
    x = x.detach().contiguous()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(w)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a (detached) tensor."""
    w = world_size()
    if w == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / w


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable value, tensors included) on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()

"""Data-parallel training across processes started by ``torchrun`` (one node or several).

    torchrun --nproc-per-node=4 -m mmhal run ...                                   # one node, 4 processes
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d \\
             --rdzv-endpoint=HOST:29500 --rdzv-id=JOB -m mmhal run ...             # on each of 2 nodes

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; ``session`` reads them and starts the
process group (NCCL for CUDA, Gloo for CPU). Without them, or with ``WORLD_SIZE=1``, nothing starts and
``mmhal run`` is the single-process program it always was. Semantics (docs/scaling.md):

* ``train.batch_size`` is the *global* batch: ``engine.loader.EpochBatches`` (``DistributedSampler``
  with ``set_epoch``) gives rank r every W-th sample of the epoch's seeded permutation, in batches of
  ``batch_size / W``, so the ranks' batches of a step together are the single-process batch.
* The trainable method module (student and extras) is wrapped in ``DistributedDataParallel``; the
  frozen teacher is not. BatchNorm layers of the method normalise with the statistics of the global
  batch: ``torch.nn.SyncBatchNorm`` on CUDA, ``GlobalBatchNorm`` (below) on the CPU, where
  SyncBatchNorm refuses to run.
* Evaluation: every rank predicts a disjoint contiguous shard; the logits are gathered with exact sizes.
* Rank 0 alone logs, shows progress and writes files; it is also the one that reads checkpoints and
  cached teachers, and broadcasts them, so all ranks always agree on what exists.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .. import collective
from ..errors import UserError
from .device import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CTX = DistContext()


def current() -> DistContext:
    """The job this process belongs to (a world of one outside ``session``)."""
    return _CTX


def env_context() -> DistContext:
    """Rank, world size and local rank from the ``torchrun`` environment (a world of one when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None
    return DistContext(rank, world, local)


def job_device(device_name: str, ctx: DistContext) -> torch.device:
    """The device of this process: ``resolve_device`` alone, or under DDP ``cuda:LOCAL_RANK`` when the
    configured device is CUDA (or auto with CUDA present), else the CPU."""
    dev = resolve_device(device_name)
    if not ctx.enabled:
        return dev
    if dev.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {ctx.local_rank} has no GPU (this node has {torch.cuda.device_count()}); "
                            "start no more processes per node than it has GPUs")
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


@contextlib.contextmanager
def session(device_name: str) -> Iterator[DistContext]:
    """Start the process group of a ``torchrun`` job for the block (nothing outside ``torchrun``)."""
    global _CTX
    ctx = env_context()
    if not ctx.enabled or dist.is_initialized():
        yield current()
        return
    dev = job_device(device_name, ctx)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    _CTX = ctx
    try:
        yield ctx
    finally:
        _CTX = DistContext()
        dist.destroy_process_group()


def check_batch_size(batch_size: int, world_size: int) -> None:
    """A UserError unless the global batch splits evenly over the ranks."""
    if world_size > 1 and batch_size % world_size:
        raise UserError(f"train.batch_size {batch_size} is the global batch and must be divisible by the "
                        f"{world_size} processes (use a multiple of {world_size})")


def eval_range(n: int, ctx: DistContext) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous evaluation shard of n samples (sizes differ by at most 1)."""
    return n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, over every rank (any backend).

    mean = sum_r sum(x_r) / N,  var = sum_r sum((x_r - mean)^2) / N  (N = all values per channel, all
    ranks), both summed with ``collective.all_reduce_sum`` so gradients reach every rank's inputs; the
    running variance gets the unbiased var * N / (N - 1), as ``nn.BatchNorm``. Two passes, as the
    single-process kernel, keep it within float rounding of BatchNorm on the whole batch. In eval mode (or
    in a world of one) it is plain BatchNorm. Same parameters and buffers as ``nn.BatchNorm*d``.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or collective.world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        factor = self.momentum if self.momentum is not None else 0.0
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = collective.all_reduce_sum(torch.tensor([float(x.numel() // x.shape[1])], device=x.device))
        mean = collective.all_reduce_sum(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = collective.all_reduce_sum((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                n = float(count)
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                self.running_var.mul_(1 - factor).add_(factor * var.detach() * n / max(n - 1, 1.0))
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def globalize_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace, in place, every BatchNorm below ``module`` by one over the global batch.

    CUDA: ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``. CPU: ``GlobalBatchNorm`` (SyncBatchNorm
    raises "expected input tensor to be on GPU" there). Parameters and buffers are the same objects, so
    an optimiser already built on them and every state dict stay valid.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, (GlobalBatchNorm, nn.SyncBatchNorm)):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats,
                                  device=device)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            globalize_batchnorm(child, device)
    return module


def wrap(method: nn.Module, device: torch.device) -> nn.Module:
    """The method module as the training step should call it: itself in a world of one, else inside
    ``DistributedDataParallel`` with global-batch BatchNorm. The teacher, held outside the method's
    parameters, is not wrapped (it is frozen, and DDP would only synchronise nothing)."""
    if current().world_size == 1:
        return method
    globalize_batchnorm(method, device)
    ids = [device.index] if device.type == "cuda" else None
    local = list(getattr(method, "ddp_local_buffers", ()))
    if local:  # a method's own per-sample memory: it keeps the ranks' copies equal itself (distill.base)
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(method, local)
    return nn.parallel.DistributedDataParallel(method, device_ids=ids)


def main_only(fn: Callable[[], T]) -> T:
    """``fn()`` run by rank 0 alone (reading files), its value or UserError handed to every rank.

    Rank 0 is the one source of what is on disk (cached teacher, checkpoints, finished jobs), so ranks
    never disagree on what exists, and the run folder need only be readable where rank 0 runs.
    """
    ctx = current()
    if not ctx.enabled:
        return fn()
    value, error = None, None
    if ctx.is_main:
        try:
            value = fn()
        except UserError as exc:
            error = str(exc)
    value, error = collective.broadcast_object((value, error))
    if error is not None:
        raise UserError(error)
    return value

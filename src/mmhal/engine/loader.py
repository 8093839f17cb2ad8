"""Training batches: which samples, in which order, on which rank, and how they reach the device.

**Order.** ``EpochBatches`` is a batch sampler built on ``torch.utils.data.DistributedSampler``
(``shuffle=True``, ``drop_last=True``) and ``BatchSampler``; ``set_epoch(e)`` makes epoch e's permutation
``randperm(n, generator seeded derive_seed(seed, "order", stream, e))`` (``mmhal.utils.derive_seed``), where
``stream`` names whose order it is (``teacher`` or ``student``). Every (seed, stream, epoch) thus has its own
independent order: seed s at epoch e + 1 does not replay seed s + 1 at epoch e (as ``seed + e`` would),
and the teacher's order is not student seed 0's. In a world of one it is that
permutation cut into batches of ``train.batch_size``. With W processes (``torchrun``) rank r takes every
W-th sample of the same permutation (``DistributedSampler``'s strided share), in batches of
``batch_size / W``; step s of the W ranks together then covers exactly the samples of the single-process
batch s (in another order within the batch, which no loss, BatchNorm or DAD structure depends on). At the
end of an epoch, ``n mod W`` samples are left out (``drop_last``), and a last global batch of one sample
is dropped (training-mode BatchNorm and DAD need two). The order depends on (seed, stream, epoch) alone, so a
resumed job continues it without any saved generator state.

**Delivery** (``train.loader``):

* ``memory`` (default): every split is held as tensors on the compute device and a batch is an index
  into them; no copies, no worker processes. Best whenever the data fit in the device's memory.
* ``workers``: the splits stay in host memory and a ``torch.utils.data.DataLoader`` with
  ``train.loader_workers`` worker processes gathers each batch (``persistent_workers``, so they start
  once per training), into pinned memory when the device is CUDA, then copies it to the device without
  blocking. For data larger than device memory. The batches are the same as ``memory``'s, so results
  are identical (``tests/test_loader.py``).
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from ..errors import UserError
from ..utils import derive_seed, require_open_files, usable_cpus

LOADERS = ("memory", "workers")


class EpochBatches(Sampler[list[int]]):
    """This rank's batches (lists of sample indices) of each epoch, as described in the module docstring."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, stream: str = "student"):
        assert batch_size % world_size == 0, "the global batch must split evenly over the ranks"  # checked at start-up
        if n < max(2, world_size):
            raise UserError(f"the train split has {n} sample(s); training needs at least {max(2, world_size)} "
                            f"(two for BatchNorm and DAD, and one per process)")
        self.world_size, self.seed, self.stream = world_size, int(seed), str(stream)
        self.sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=self.epoch_seed(0),
                                          drop_last=True)
        self.batches = BatchSampler(self.sampler, batch_size // world_size, drop_last=False)

    def epoch_seed(self, epoch: int) -> int:
        """The seed of epoch ``epoch``'s permutation (the same on every rank)."""
        return derive_seed(self.seed, "order", self.stream, epoch)

    def set_epoch(self, epoch: int) -> None:
        # DistributedSampler seeds its permutation with seed + epoch; keep its epoch at 0 and give it the
        # derived seed, so that epochs and seeds never share a permutation.
        self.sampler.seed = self.epoch_seed(epoch)
        self.sampler.set_epoch(0)

    def _drop_last(self, last_size: int, count: int) -> bool:
        return count > 1 and last_size * self.world_size < 2

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(self.batches)
        if batches and self._drop_last(len(batches[-1]), len(batches)):
            batches.pop()
        return iter(batches)

    def __len__(self) -> int:
        count, per = len(self.batches), self.sampler.num_samples
        last = per - (count - 1) * self.batches.batch_size if count else 0
        return count - int(bool(count) and self._drop_last(last, count))


class SplitDataset(Dataset):
    """A split held in host memory, as a map-style dataset whose ``__getitems__`` gathers a whole batch
    (one indexing operation per modality instead of one per sample)."""

    def __init__(self, split, modalities):
        self.split, self.modalities = split, list(modalities)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {m: self.split.inputs[m][idx] for m in self.modalities}, self.split.labels[idx], idx


def _float(t: torch.Tensor) -> torch.Tensor:
    """Images decoded from files travel as integers and become float32 on the device."""
    return t if t.is_floating_point() else t.float()


def _whole_batch(batch):
    """``collate_fn`` for ``SplitDataset``: its ``__getitems__`` already returns the collated batch."""
    return batch


class TrainBatches:
    """Iterates (inputs, target, indices) of one epoch, on the compute device; ``set_epoch`` first.

    A ``samples.SampleSplit`` (files, or augmentation) always goes through its DataLoader, whose batches
    carry the epoch so that each sample's augmentation is that of (seed, stream, epoch, index)."""

    def __init__(self, split, modalities, sampler: EpochBatches, loader: str = "memory", workers: int = 0):
        from .samples import SampleSplit, TaggedBatches, private_generator

        assert loader in LOADERS, loader
        self.split, self.modalities, self.sampler = split, list(modalities), sampler
        self.device = split.device
        self.loader: Optional[DataLoader] = None
        if isinstance(split, SampleSplit):
            self.sampler = TaggedBatches(sampler)
            self.loader = split.loader(self.sampler, modalities, seed=derive_seed(sampler.seed, "augment", sampler.stream),
                                       persistent=True)
        elif loader == "workers":
            workers = min(workers, usable_cpus())  # no more gathering processes than CPUs this process may use
            require_open_files(workers, f"{workers} DataLoader worker process(es) (train.loader_workers)")
            self.loader = DataLoader(
                SplitDataset(split, modalities), batch_sampler=sampler, num_workers=workers,
                collate_fn=_whole_batch, pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                generator=private_generator(derive_seed(sampler.seed, "loader", sampler.stream)),
            )

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        if self.loader is None:
            for indices in self.sampler:
                idx = torch.as_tensor(indices, dtype=torch.long, device=self.split.labels.device)
                inputs, target = self.split.batch(idx, self.modalities)
                yield inputs, target, idx.to(self.device)
            return
        from .samples import worker_batches

        dev = self.device
        for inputs, target, idx in worker_batches(self.loader):
            yield ({m: _float(t.to(dev, non_blocking=True)) for m, t in inputs.items()}, target.to(dev, non_blocking=True),
                   idx.to(dev, non_blocking=True))

    def close(self) -> None:
        """Stop the DataLoader's persistent worker processes (they would otherwise live until collected)."""
        self.loader = None  # the last reference: its iterator's finaliser stops the workers now

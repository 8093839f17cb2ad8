"""Splits assembled sample by sample: files decoded on demand, or in-memory arrays under random augmentation.

A :class:`SampleSplit` is the counterpart of ``loop.Split`` (tensors) for data that must not, or cannot, be
held as whole tensors: ``data.files.FileData`` (images on disk), and the train split of any dataset when
``data.augment`` is on (every epoch sees other crops). It holds the dataset object (paths and labels, no
pixels) and the dataset indices of its samples. Batches come from a ``torch.utils.data.DataLoader`` whose
worker processes (``train.loader_workers``; 0 = in the training process) decode and augment each sample
(``SampleDataset``) and stack a batch; the batch then moves to the compute device and becomes float32
there (images travel as uint8, a quarter of the bytes).

Training batches follow ``EpochBatches`` exactly as for tensors (same samples, same order); each sample's
augmentation is ``data.augment.augment_sample`` of (job seed and stream, epoch, dataset index), so every
method of a seed sees the same augmented batches and a resumed job the same ones it would have seen.
Evaluation (validation, test, the teacher's outputs, normalisation statistics) reads the samples in order,
without augmentation.

Action clips (``data.frames.ClipData``) follow the clip policy of the split's ``mode``: ``train`` a random,
augmented clip per (seed, stream, epoch, index) (the centre clip when the train split is read for
evaluation), ``val`` the centre clip, ``test`` every test view of a sample, ``views`` rows per sample in a
batch, which ``loop.predict`` averages.
"""
from __future__ import annotations

import weakref
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm.auto import tqdm

from ..data.augment import augment_sample
from ..errors import UserError
from ..utils import require_open_files, usable_cpus


class SampleDataset(Dataset):
    """Positions 0..len-1 of a split, read (and, with ``augment``, augmented) sample by sample.
    ``__getitems__`` takes a batch of ``(position, epoch)`` pairs (epoch -1: no augmentation) and returns
    the stacked batch ``({modality: tensor}, labels, positions)``."""

    def __init__(self, data, index: np.ndarray, modalities, augment=None, seed: int = 0, mode: str = "val"):
        self.data, self.index, self.modalities = data, np.asarray(index), list(modalities)
        self.augment, self.seed, self.mode = augment, int(seed), mode

    def __len__(self) -> int:
        return len(self.index)

    def sample(self, pos: int, epoch: int = -1) -> dict:
        i = int(self.index[pos])
        if getattr(self.data, "is_clips", False):  # action clips: the clip policy of the split (data.frames)
            mode = "val" if self.mode == "train" and epoch < 0 else self.mode
            return self.data.sample(i, self.modalities, mode, self.seed, max(int(epoch), 0))
        s = self.data.read(i, self.modalities)
        if self.augment is not None and epoch >= 0:
            s = augment_sample(s, self.augment, self.seed, epoch, i)
        return s

    def __getitem__(self, item):
        return self.__getitems__([item])

    def __getitems__(self, items: list):
        items = [(it, -1) if isinstance(it, (int, np.integer)) else it for it in items]
        samples = [self.sample(int(p), int(e)) for p, e in items]
        pos = torch.as_tensor([int(p) for p, _ in items], dtype=torch.long)
        # default_collate stacks into shared memory inside a worker process, so the batch is not copied once
        # more when it is sent to the training process
        inputs = {m: default_collate([s[m] for s in samples]) for m in self.modalities}
        labels = torch.from_numpy(self.data.labels[self.index[pos.numpy()]]).long()
        return inputs, labels, pos


def private_generator(seed: int) -> torch.Generator:
    """A generator of the DataLoader's own, seeded from ``seed``: its worker seeds are drawn from it, never from the
    global generator, which dropout draws from (``engine.loop.fit`` seeds that one per epoch). Otherwise a resumed
    training, whose DataLoader iterator starts anew, would shift every dropout mask after it."""
    return torch.Generator().manual_seed(int(seed) & (2**63 - 1))


def _whole_batch(batch):
    return batch


def worker_batches(loader: DataLoader) -> Iterator:
    """The batches of ``loader``; a user's data problem raised in a worker process (a DataError: an image
    that cannot be decoded) comes back as PyTorch re-raises it, with the worker's traceback in its message:
    it is raised again with its own one sentence."""
    try:
        yield from loader
    except UserError as exc:
        text = str(exc).strip()
        if "Traceback" not in text:
            raise
        last = text.splitlines()[-1]
        raise type(exc)(last.split(": ", 1)[1] if ": " in last else last) from None


class TaggedBatches(Sampler[list]):
    """An epoch batch sampler whose batches carry the epoch: ``[(position, epoch), ...]`` (a worker process
    cannot see ``set_epoch`` calls made after it started; the epoch travels with the indices)."""

    def __init__(self, batches):
        self.batches, self.epoch = batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list]:
        for b in self.batches:
            yield [(int(p), self.epoch) for p in b]

    def __len__(self) -> int:
        return len(self.batches)


def as_float(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.float()


class SampleSplit:
    """One split of ``data`` (its dataset indices ``index``) as read sample by sample; see the module docstring."""

    def __init__(self, data, index: np.ndarray, modalities, device, workers: int = 0, augment=None,
                 mode: str = "val"):
        self.data, self.index, self.modalities = data, np.asarray(index), list(modalities)
        self.device = torch.device(device)
        self.workers = min(int(workers), usable_cpus())  # no more decoding processes than CPUs this process may use
        self.augment = augment if augment is not None and augment.active else None
        # Action clips (data.frames.ClipData): ``mode`` train = a random augmented clip per epoch (the centre
        # clip when read for evaluation), val = the centre clip, test = every test view, ``views`` per sample.
        self.mode = mode
        self.views = data.views(mode) if getattr(data, "is_clips", False) else 1
        self.labels = torch.from_numpy(np.asarray(data.labels)[self.index]).long()
        self._eval_loaders: dict = {}

    def __len__(self) -> int:
        return len(self.index)

    def dataset(self, modalities=None, seed: int = 0) -> SampleDataset:
        return SampleDataset(self.data, self.index, modalities or self.modalities, self.augment, seed, self.mode)

    def batch(self, idx: torch.Tensor, modalities) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Samples at positions ``idx`` read in this process, without augmentation, on ``device``."""
        inputs, labels, _ = self.dataset(modalities).__getitems__([int(i) for i in idx.tolist()])
        return {m: as_float(t.to(self.device)) for m, t in inputs.items()}, labels.to(self.device)

    def loader(self, batch_sampler, modalities, seed: int = 0, persistent: bool = False,
               workers: Optional[int] = None) -> DataLoader:
        workers = self.workers if workers is None else workers
        require_open_files(workers, f"{workers} DataLoader worker process(es) (train.loader_workers)")
        loader = DataLoader(self.dataset(modalities, seed), batch_sampler=batch_sampler, num_workers=workers,
                            collate_fn=_whole_batch, pin_memory=self.device.type == "cuda",
                            persistent_workers=persistent and workers > 0, generator=private_generator(seed))
        if persistent and workers > 0:
            _WITH_WORKERS.add(loader)
        return loader

    def eval_batches(self, modalities, start: int, stop: int, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """The inputs of positions ``start..stop-1`` in order, unaugmented, ``batch_size`` at a time, on ``device``.

        The DataLoader of each (modalities, range, batch size) is kept with its worker processes (validation
        runs every epoch: starting processes each time cost seconds); a range of one batch is read in this
        process. ``close`` stops the kept workers. With several views per sample (test clips) a batch holds
        ``batch_size // views`` samples and its inputs are (samples x views, ...), the views of a sample together."""
        batch_size = max(1, batch_size // self.views)
        chunks = [list(range(i, min(i + batch_size, stop))) for i in range(start, stop, batch_size)]
        if not chunks:
            return
        if len(chunks) == 1 or self.workers == 0:
            loader = self.loader(chunks, modalities, workers=0)
        else:
            key = (tuple(modalities), start, stop, batch_size)
            if key not in self._eval_loaders:
                self._eval_loaders[key] = self.loader(chunks, modalities, persistent=True)
            loader = self._eval_loaders[key]
        for inputs, _, _ in worker_batches(loader):
            if self.views > 1:  # (B, V, ...) -> (B V, ...)
                inputs = {m: t.flatten(0, 1) for m, t in inputs.items()}
            yield {m: as_float(t.to(self.device, non_blocking=True)) for m, t in inputs.items()}

    def close(self) -> None:
        """Stop the worker processes of the kept evaluation DataLoaders."""
        self._eval_loaders = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_eval_loaders"] = {}
        return state


_WITH_WORKERS: "weakref.WeakSet[DataLoader]" = weakref.WeakSet()  # SampleSplit loaders that keep worker processes


def stop_workers(grace: float = 0.2) -> None:
    """Stop the worker processes of every DataLoader ``SampleSplit.loader`` made that still has them, now
    (Ctrl-C, or an error): each gets ``grace`` seconds to end, then is terminated. Left to itself, torch waits
    up to 5 s per worker while it decodes the batch it has begun."""
    from torch.utils.data import _utils

    saved = _utils.MP_STATUS_CHECK_INTERVAL  # the wait torch's shutdown allows each worker
    _utils.MP_STATUS_CHECK_INTERVAL = grace
    try:
        for loader in list(_WITH_WORKERS):
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
    finally:
        _utils.MP_STATUS_CHECK_INTERVAL = saved


def streamed_stats(split: SampleSplit, modalities, batch_size: int = 256,
                   progress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and std of every modality over ``split``, accumulated batch by batch in float64
    (one pass over the files; memory does not grow with the number of samples)."""
    sums: dict[str, Optional[np.ndarray]] = {m: None for m in modalities}
    squares: dict[str, Optional[np.ndarray]] = {m: None for m in modalities}
    counts = {m: 0 for m in modalities}
    cpu = SampleSplit(split.data, split.index, modalities, "cpu", split.workers)  # (clips: centre views)
    bar = tqdm(total=len(cpu), desc="normalisation statistics", unit="sample", leave=False, disable=not progress)
    for inputs in cpu.eval_batches(modalities, 0, len(cpu), batch_size):
        for m, t in inputs.items():
            x = t.double()
            axes = (0,) + tuple(range(2, x.dim()))
            s, q = x.sum(dim=axes).numpy(), (x * x).sum(dim=axes).numpy()
            sums[m] = s if sums[m] is None else sums[m] + s
            squares[m] = q if squares[m] is None else squares[m] + q
            counts[m] += x.numel() // x.shape[1]
        bar.update(next(iter(inputs.values())).shape[0])
    bar.close()
    cpu.close()
    stats = {}
    for m in modalities:
        mean = sums[m] / counts[m]
        std = np.sqrt(np.maximum(squares[m] / counts[m] - mean * mean, 0.0))
        stats[m] = (mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))
    return stats


def close_splits(splits: dict) -> None:
    """Stop the kept worker processes of every split read sample by sample (tensors have none)."""
    for split in splits.values():
        if isinstance(split, SampleSplit):
            split.close()

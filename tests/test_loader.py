"""Training batches (engine.loader): the documented order, and the DataLoader path giving the same training."""
import copy

import pytest
import torch

from mmhal.config import TrainConfig, load_config
from mmhal.engine.loader import EpochBatches, TrainBatches
from mmhal.engine.loop import Split, fit
from mmhal.errors import UserError
from test_step import _data, _method


def test_epoch_order_is_randperm_seeded_with_seed_plus_epoch():
    s = EpochBatches(50, 16, seed=7)
    for epoch in (0, 3):
        s.set_epoch(epoch)
        want = torch.randperm(50, generator=torch.Generator().manual_seed(7 + epoch)).split(16)
        assert list(s) == [b.tolist() for b in want]
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first  # a function of (seed, epoch) alone: what resume relies on


@pytest.mark.parametrize("n, batch, world", [(50, 16, 1), (49, 16, 1), (33, 32, 1), (64, 16, 1), (101, 8, 4), (9, 4, 2)])
def test_len_is_the_number_of_batches_iterated(n, batch, world):
    for rank in range(world):
        s = EpochBatches(n, batch, 0, rank, world)
        assert len(s) == len(list(s))
        assert all(len(b) >= 1 for b in s)


def _fit(train, val, **tcfg):
    spec = {"weak": tuple(train.inputs["weak"].shape[1:]), "strong": (5,)}
    method = _method(spec)
    snaps = []
    res = fit(method, train, val, TrainConfig(epochs=2, batch_size=16, **tcfg), seed=0, progress=False,
              on_epoch=lambda e, r: snaps.append(copy.deepcopy(method.student.state_dict())))
    return res, snaps


@pytest.mark.parametrize("workers", [0, 2])
def test_the_dataloader_path_trains_exactly_as_the_in_memory_path(workers):
    _, train, val = _data(n=100)
    ref, ref_snaps = _fit(train, val)
    res, snaps = _fit(train, val, loader="workers", loader_workers=workers)
    assert res.history == ref.history
    for a, b in zip(snaps, ref_snaps):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_workers_path_delivers_whole_batches_with_their_indices_on_the_split_device():
    _, train, _ = _data(n=60)
    split = Split(train.inputs, train.labels, torch.device("cpu"))
    sampler = EpochBatches(len(split), 8, seed=1)
    batches = TrainBatches(split, ["weak", "strong"], sampler, "workers", workers=1)
    sampler_order = []
    batches.set_epoch(0)
    for inputs, target, idx in batches:
        sampler_order.append(idx.tolist())
        assert torch.equal(inputs["weak"], split.inputs["weak"][idx]) and torch.equal(target, split.labels[idx])
    sampler.set_epoch(0)
    assert sampler_order == list(sampler)
    batches.close()


@pytest.mark.parametrize("override, msg", [("train.loader=disk", "train.loader must be 'memory' or 'workers'"),
                                           ("train.loader_workers=-1", "train.loader_workers must be 0 or more")])
def test_bad_loader_settings_are_user_errors(override, msg):
    with pytest.raises(UserError, match=msg):
        load_config(None, [override])


def test_a_split_too_large_for_the_device_is_one_sentence_naming_the_workers_loader(tmp_path, monkeypatch):
    from mmhal.data.npz import load_npz
    from mmhal.engine.loop import make_split
    from test_cli_run import _tiny

    data = load_npz(load_config(None, []).data, str(_tiny(tmp_path / "tiny.npz")))

    def out_of_memory(self, *a, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(torch.Tensor, "to", out_of_memory)
    with pytest.raises(UserError, match=r"the train split \(0\.0 GiB\) does not fit in the memory of cpu; use train.loader=workers"):
        make_split(data, "train", ["weak", "strong"], "cpu", "memory")


def test_a_train_split_too_small_to_train_on_is_a_user_error():
    with pytest.raises(UserError, match="the train split has 1 sample"):
        EpochBatches(1, 16, seed=0)
    with pytest.raises(UserError, match="the train split has 3 sample.*one per process"):
        EpochBatches(3, 16, seed=0, rank=0, world_size=4)

"""Training batches (engine.loader): the documented order, and the DataLoader path giving the same training."""
import copy

import pytest
import torch

from mmhal.config import TrainConfig, load_config
from mmhal.engine.loader import EpochBatches, TrainBatches
from mmhal.engine.loop import Split, fit
from mmhal.errors import UserError
from mmhal.utils import derive_seed
from test_step import _data, _method


def test_epoch_order_is_randperm_seeded_with_the_derived_seed_of_seed_stream_and_epoch():
    s = EpochBatches(50, 16, seed=7)
    for epoch in (0, 3):
        s.set_epoch(epoch)
        g = torch.Generator().manual_seed(derive_seed(7, "order", "student", epoch))
        want = torch.randperm(50, generator=g).split(16)
        assert list(s) == [b.tolist() for b in want]
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first  # a function of (seed, stream, epoch) alone: what resume relies on


def _orders(seed, epochs, stream="student", n=200):
    s = EpochBatches(n, n, seed=seed, stream=stream)  # one batch = the whole permutation
    out = []
    for e in range(epochs):
        s.set_epoch(e)
        out.append(tuple(list(s)[0]))
    return out


def test_seeds_are_independent_replicates_no_seed_replays_another_seeds_batches():
    # With seed + epoch seeding, seed s at epoch e + 1 replayed seed s + 1 at epoch e.
    orders = {seed: _orders(seed, 6) for seed in range(5)}
    seen = [o for per_seed in orders.values() for o in per_seed]
    assert len(set(seen)) == len(seen)  # 30 permutations of 200, all different
    for seed in range(4):
        for e in range(5):
            assert orders[seed][e + 1] != orders[seed + 1][e]


def test_the_teacher_does_not_share_student_seed_zeros_batch_order():
    teacher = _orders(0, 4, stream="teacher")
    student = _orders(0, 4, stream="student")
    assert all(t != s for t, s in zip(teacher, student))
    assert set(teacher).isdisjoint(set(student))


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

"""The training budget: train.min_steps gives a small train split more epochs (the same rule for the teacher and
every student), train.patience stops a training whose selection figure has not improved for that many epochs (the
best epoch kept), and a resumed training stops where the uninterrupted one would have."""
import math

import pytest
import torch

from mmhal.config import RunConfig, load_config
from mmhal.distill import METHODS
from mmhal.engine.loop import Split, fit, planned_epochs
from mmhal.errors import UserError
from mmhal.models.network import MultimodalNet


def test_planned_epochs_grow_for_small_train_splits_only():
    t = RunConfig().train
    t.epochs, t.min_steps = 12, 0
    assert planned_epochs(t, 40) == 12 and planned_epochs(t, 1) == 12
    t.min_steps = 1000
    assert planned_epochs(t, 40) == 25  # ceil(1000 / 40)
    assert planned_epochs(t, 7) == math.ceil(1000 / 7) == 143
    assert planned_epochs(t, 200) == 12  # a large split keeps train.epochs
    assert planned_epochs(t, 0) == 1000  # no batch at all: never a division by zero


@pytest.mark.parametrize("key", ["train.min_steps=-1", "train.patience=-2"])
def test_negative_budget_settings_are_one_sentence(key):
    with pytest.raises(UserError, match="must be 0 \\(off\\) or more"):
        load_config(None, [key])


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 4, generator=g)
    x[torch.arange(n), y] += 2.0
    return Split({"v": x}, y)


def _fit(tmp_path, epochs, patience, on_epoch=None, resume=False, name="ckpt.pt"):
    torch.manual_seed(0)
    net = MultimodalNet({"v": (4,)}, ["v"], 3, width=2)
    t = RunConfig().train
    t.epochs, t.patience, t.batch_size, t.lr = epochs, patience, 32, 0.3  # a rate that overfits fast: stalls early
    method = METHODS.get("unimodal")(net, None, RunConfig().distill)
    return fit(method, _data(), _data(seed=1), t, seed=0, progress=False, on_epoch=on_epoch,
               checkpoint=tmp_path / name, resume=resume)


def test_patience_stops_once_no_epoch_has_been_better_for_that_many_and_keeps_the_best(tmp_path):
    full = _fit(tmp_path, 40, 0, name="a.pt")
    stopped = _fit(tmp_path, 40, 3, name="b.pt")
    losses = [h["val_loss"] for h in full.history]
    best = min(range(len(losses)), key=lambda i: losses[i]) + 1
    # the first epoch after which 3 epochs brought no better loss, as computed by hand from the full history
    stop = next(e for e in range(1, 41) if e - (min(range(e), key=lambda i: losses[i]) + 1) >= 3)
    assert len(stopped.history) == stop < 40, "patience never stopped the training"
    assert [h["val_loss"] for h in stopped.history] == losses[:stop]  # the same epochs until then
    assert stopped.best_epoch == min(range(stop), key=lambda i: losses[i]) + 1 <= best


def test_a_resumed_training_stops_where_the_uninterrupted_one_did(tmp_path):
    ref = _fit(tmp_path, 40, 3, name="ref.pt")

    def stop_after_two(epoch, rec):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, 40, 3, on_epoch=stop_after_two, name="cut.pt")
    resumed = _fit(tmp_path, 40, 3, resume=True, name="cut.pt")
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in ref.history]
    assert resumed.best_epoch == ref.best_epoch

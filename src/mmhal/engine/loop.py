"""Training and evaluation loops over in-memory splits.

A split is a :class:`Split` of tensors, held on the compute device (``train.loader=memory``, a batch is
then an index slice and a step does no Python work per sample) or in host memory (``workers``: a
DataLoader gathers and copies each batch). Which samples form each batch, on every rank, is decided by
``engine.loader.EpochBatches`` (``DistributedSampler`` seeded per epoch from the job's seed and stream, see
there), so every method sees the same batches in the same order, and under ``torchrun`` the W ranks'
shards of a step together are the single-process batch. Predictions are made on disjoint contiguous
shards and gathered.

Debugging aid: with the environment variable ``MMHAL_LOG_FIRST_STEP=FILE``, ``fit`` appends one JSON
line per step for the first two steps of every training (rank 0 only): the losses averaged over the
ranks, their total, and the norm of the (rank-averaged) gradient. ``tests/test_distributed.py`` compares
them between a single-process and a two-process run.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import collective
from ..errors import TrainingDiverged, UserError
from ..metrics import accuracy
from ..models.network import NetOutput, param_groups
from ..utils import atomic_write_text, derive_seed
from . import distributed
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .loader import EpochBatches, TrainBatches
from .outputs import METRICS_COLUMNS
from .samples import SampleSplit
from .step import TrainStep, compiled_forward, to_channels_last


@dataclass
class Split:
    """The inputs (``{modality: tensor}``) and labels of one split. ``device`` is where batches are used
    (the compute device); the tensors themselves live there too, or in host memory (``train.loader=workers``)."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    device: Optional[torch.device] = None  # None: where the tensors are

    def __post_init__(self) -> None:
        if self.device is None:
            self.device = self.labels.device

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx: torch.Tensor, modalities) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Rows ``idx`` (on the tensors' device) of the given modalities and the labels, on ``device``."""
        return {m: self.inputs[m][idx].to(self.device) for m in modalities}, self.labels[idx].to(self.device)


def make_split(data, split: str, modalities, device, loader: str = "memory", workers: int = 0, augment=None):
    """One split of a dataset: a ``Split`` of tensors on ``device`` (``loader`` memory) or in host memory
    (``workers``); a UserError when ``memory`` does not fit on the device. Data on disk (``FileData``), and
    the train split under augmentation (``augment``, a ``config.AugmentConfig``), give a
    ``samples.SampleSplit`` instead: read sample by sample by ``workers`` DataLoader processes."""
    idx = data.indices(split)
    augment = augment if augment is not None and augment.active and split == "train" else None
    if not data.in_memory or augment is not None:
        return SampleSplit(data, idx, modalities, device, workers, augment, mode=split)
    store = torch.device(device) if loader == "memory" else torch.device("cpu")
    arrays = {m: np.ascontiguousarray(data.modalities[m][idx]) for m in modalities}
    try:
        inputs = {m: torch.from_numpy(a).to(store) for m, a in arrays.items()}
    except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError in newer torch; this name in every supported one)
        gib = sum(a.nbytes for a in arrays.values()) / 1024**3
        raise UserError(f"the {split} split ({gib:.1f} GiB) does not fit in the memory of {store}; "
                        "use train.loader=workers to keep the data in host memory") from None
    return Split(inputs, torch.from_numpy(data.labels[idx]).long().to(store), torch.device(device))


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine decay to 0."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def authors_face_multiplier(epoch: int) -> float:
    """The learning-rate multiplier of epoch ``epoch`` (from 0) in the authors' face training (FAITHFULNESS_AUDIT
    1.1; issue 20): warm-up from 0 over 5 epochs, then steps of 10x down, which their code applies so that the
    rates per epoch are 0, 0, 0.2, 0.4, 0.6, 0.8, then 1 (epochs 6-13), 0.1 (14-21), 0.01 (22-30), 0.001 (31 on)."""
    if epoch < 2:
        return 0.0
    if epoch < 6:
        return (epoch - 1) / 5.0
    return 1.0 if epoch < 14 else 0.1 if epoch < 22 else 0.01 if epoch < 31 else 0.001


def lr_schedule(tcfg, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate after ``step`` optimiser steps: ``train.schedule`` ``cosine``
    (``warmup_cosine`` over ``train.warmup_epochs``) or ``authors-face`` (``authors_face_multiplier``, constant
    within an epoch; ``warmup_epochs`` is not read)."""
    if str(getattr(tcfg, "schedule", "cosine")) == "authors-face":
        return lambda step: authors_face_multiplier(step // max(1, steps_per_epoch))
    return warmup_cosine(total_steps, int(round(tcfg.warmup_epochs * steps_per_epoch)))


def make_optimizer(params, tcfg) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov, momentum 0.9) over ``params``: parameters, or groups with their own ``lr``
    (``models.network.param_groups``: pretrained parameters at ``model.pretrained_lr_mult`` times the rate)."""
    if tcfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tcfg.lr, momentum=0.9, nesterov=True, weight_decay=tcfg.weight_decay)
    return torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)


SAMPLE_EVAL_BATCH = 128  # evaluation batch of data read sample by sample (memory stays bounded for images)


def eval_batches(split, modalities, start: int, stop: int, batch_size: int):
    """The inputs of samples ``start..stop-1`` of a split, in order, ``batch_size`` at a time."""
    if isinstance(split, SampleSplit):  # decoded by worker processes; smaller batches (images, larger networks)
        yield from split.eval_batches(modalities, start, stop, min(batch_size, SAMPLE_EVAL_BATCH))
        return
    for i in range(start, stop, batch_size):
        idx = torch.arange(i, min(i + batch_size, stop), device=split.labels.device)  # where the tensors are
        yield split.batch(idx, modalities)[0]


@torch.no_grad()
def predict(model, split: Split, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, K) of ``model`` (a MultimodalNet) on a split, in eval mode, on the CPU.

    Under ``torchrun`` each rank predicts its contiguous shard (``distributed.eval_range``) and every
    rank gets all N rows, in order, each once. A split with several views per sample (``views``: the test
    clips x crops of action clips) gives per sample the log of the views' mean softmax probabilities.
    """
    was = model.training
    model.eval()
    out = []
    mods = model.modalities
    ctx = distributed.current()
    start, stop = distributed.eval_range(len(split), ctx) if ctx.enabled else (0, len(split))
    views = getattr(split, "views", 1)
    for inputs in eval_batches(split, mods, start, stop, batch_size):
        z = model(inputs).logits.float()
        if views > 1:  # several views of each sample (test clips x crops): the log of their mean probabilities
            z = z.view(-1, views, z.shape[-1]).softmax(-1).mean(1).clamp_min(1e-30).log()
        out.append(z)
    model.train(was)
    if not ctx.enabled:
        return torch.cat(out).cpu()
    local = torch.cat(out) if out else torch.zeros((0, model.head.out_features), device=split.device)
    return collective.all_gather_shards(local).cpu()


@torch.no_grad()
def teacher_outputs(teacher, split: Split, batch_size: int = 1024) -> NetOutput:
    """The frozen teacher's outputs (logits, trunk features) for every sample of a split, in order."""
    teacher.eval()
    outs = [teacher(inputs) for inputs in eval_batches(split, teacher.modalities, 0, len(split), batch_size)]
    return NetOutput(
        torch.cat([o.logits for o in outs]),
        [torch.cat([o.features[d] for o in outs]) for d in range(len(outs[0].features))],
        torch.cat([o.embedding for o in outs]),
    )


def index_output(out: NetOutput, idx: torch.Tensor) -> NetOutput:
    return NetOutput(out.logits[idx], [f[idx] for f in out.features], out.embedding[idx])


def output_nbytes(teacher, split: Split) -> int:
    """Bytes a cache of the teacher's train-split outputs would take (from one sample)."""
    inputs, _ = split.batch(torch.arange(min(2, len(split)), device=split.labels.device), teacher.modalities)
    teacher.eval()
    with torch.no_grad():
        o = teacher(inputs)
    per = sum(t[0].numel() * t.element_size() for t in [o.logits, o.embedding, *o.features])
    return per * len(split)


def _log_step(path: Path, desc: str, i: int, losses: dict, params, main: bool) -> None:
    """Append step ``i``'s rank-averaged losses, their total and the gradient norm to ``path`` (JSON lines)."""
    mean = {k: float(collective.all_reduce_mean(v.float())) for k, v in losses.items()}
    grads = [p.grad.float().pow(2).sum() for p in params if p.grad is not None]
    norm = float(torch.stack(grads).sum().sqrt()) if grads else 0.0
    if main:
        rec = {"job": desc, "step": i, "loss": sum(mean.values()), "losses": mean, "grad_norm": norm,
               "world_size": collective.world_size()}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


class WeightAverage:
    """An exponential moving average of the student's weights and buffers (``train.ema`` = decay d):
    after step t, ``avg = a * avg + (1 - a) * w`` with ``a = min(d, (1 + t) / (10 + t))`` (a short start-up,
    so the average does not lean on the random initialisation); integer buffers are copied. Evaluation and
    selection then use the averaged weights, which vary less from epoch to epoch and seed to seed."""

    def __init__(self, model: torch.nn.Module, decay: float, state: Optional[dict] = None):
        self.model, self.decay = model, float(decay)
        source = state if state is not None else model.state_dict()
        self.state = {k: v.detach().clone().to(model.state_dict()[k].device) for k, v in source.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        a = min(self.decay, (1.0 + step) / (10.0 + step))
        for k, w in self.model.state_dict().items():
            avg = self.state[k]
            if avg.is_floating_point():
                avg.mul_(a).add_(w.detach(), alpha=1.0 - a)
            else:
                avg.copy_(w)

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own weights again after it."""
        own = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.state)
        try:
            yield
        finally:
            self.model.load_state_dict(own)


@contextmanager
def _closed_after(*things):
    """Close ``things`` (a progress bar, the DataLoader's worker processes) when the block ends, also when
    Ctrl-C or an error ends it."""
    try:
        yield
    finally:
        for thing in things:
            thing.close()


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    last_state: Optional[dict] = None  # the weights after the last epoch (a selection-free control)
    # the method's companion networks (``Method.companions``): name -> weights at the selected / the last epoch
    best_companions: dict = field(default_factory=dict)
    last_companions: dict = field(default_factory=dict)


def loss_weights(method) -> dict[str, float]:
    """The settings that weight ``method``'s loss terms, with their values: the continuous settings of its
    ``tune_space`` other than a temperature (``{"distill.kd_alpha": 0.5}``; none for unimodal)."""
    out = {}
    for key, spec in getattr(type(method), "tune_space", {}).items():
        if spec[0] not in ("log", "uniform") or key.endswith("temperature") or not key.startswith("distill."):
            continue
        value = getattr(method, "cfg", None)
        for part in key.split(".")[1:]:
            value = getattr(value, part, None)
        if value is not None:
            out[key] = value
    return out


def check_finite(method, tcfg, network: str, epoch: int, losses: dict[str, float], val_loss: float) -> None:
    """A ``TrainingDiverged`` naming ``network``, the (1-based) ``epoch`` and the settings most likely to blame
    when the epoch's mean training losses ``losses`` or the validation loss are NaN or infinite: the learning
    rate, the method's loss weights (``loss_weights``), float16 precision. Called once per epoch (the loss sums
    are read then anyway), so it adds no device synchronisation to a step; under ``torchrun`` the losses are
    the ranks' means and the validation loss is computed on every rank from the same logits, so every rank
    decides alike."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        total = sum(losses.values())
        what = f"training loss {total}" + ("" if len(bad) == len(losses) else f" in its {', '.join(bad)} term")
    elif not math.isfinite(val_loss):
        what = f"validation loss {val_loss}"
    else:
        return
    raise TrainingDiverged(network, epoch, what, divergence_hint(method, tcfg))


def divergence_hint(method, tcfg, lr_note: str = "") -> str:
    """What to change when ``method`` trained with ``tcfg`` diverged: a lower learning rate (``lr_note`` added
    to its value), the method's loss weights, and precision 16 when it was used."""
    hints = [f"lower train.lr (now {tcfg.lr}{lr_note})"]
    weights = loss_weights(method)
    if weights:
        hints.append("its loss weights (" + ", ".join(f"{k} now {v}" for k, v in weights.items()) + ")")
    if str(getattr(tcfg, "precision", "32")) == "16":
        hints.append("train.precision (now 16; bf16 or 32 do not overflow as easily)")
    return hints[0] if len(hints) == 1 else ", ".join(hints[:-1]) + " or " + hints[-1]


def companion_states(method) -> dict:
    """Copies of the weights of the method's companion networks (``Method.companions``), by name."""
    return {n: copy.deepcopy(getattr(method, n).state_dict()) for n in getattr(method, "companions", ())}


def planned_epochs(tcfg, steps_per_epoch: int) -> int:
    """The epochs a training plans: ``train.epochs``, or more where ``train.min_steps`` asks for more optimiser
    steps than that many epochs of ``steps_per_epoch`` batches hold (small train splits)."""
    min_steps = int(getattr(tcfg, "min_steps", 0))
    return max(int(tcfg.epochs), math.ceil(min_steps / max(1, steps_per_epoch)))


def write_metrics(path: Path, history: list[dict], timeline: list[dict]) -> None:
    """A student's per-epoch CSV (``metrics/<job>-seed<s>.csv``): ``epoch``, ``lr`` (the learning rate at the
    epoch's first step), ``seconds`` (its training and validation), the epoch's mean of each loss term
    (``ce``, ``kd``, ...), ``val_loss``, ``val_acc``; written atomically."""
    import csv
    import io

    terms = [k for k in (history[0] if history else {}) if k not in ("epoch", "val_loss", "val_acc")]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*METRICS_COLUMNS, *terms, "val_loss", "val_acc"])
    when = {t["epoch"]: t for t in timeline}
    for rec in history:
        t = when.get(rec["epoch"], {})
        w.writerow([rec["epoch"], t.get("lr", ""), t.get("seconds", ""), *(rec.get(k, "") for k in terms),
                    rec["val_loss"], rec["val_acc"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


class EpochBoard:
    """TensorBoard event files of one training (the run's ``tensorboard`` setting): every per-epoch figure as a scalar at step
    ``epoch``, flushed as each epoch ends, so that ``tensorboard --logdir RUN`` shows the curves while it trains.
    Nothing without a folder. A context manager: the writer is closed at the end, however the training ends."""

    def __init__(self, folder: Optional[Path]):
        self.writer = None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter  # the tensorboard package (mmhal[tensorboard])

            self.writer = SummaryWriter(log_dir=str(folder))

    def add(self, figures: dict) -> None:
        if self.writer is None:
            return
        step = int(figures["epoch"])
        for k, v in figures.items():
            if k != "epoch":
                self.writer.add_scalar(k, float(v), step)
        self.writer.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(
    method,
    train: Split,
    val: Split,
    tcfg,
    seed: int,
    desc: str = "",
    progress: bool = True,
    on_epoch: Optional[Callable[[int, dict], None]] = None,
    teacher_cache: Optional[NetOutput] = None,
    *,
    checkpoint: Optional[Path] = None,
    resume: bool = False,
    stream: str = "student",
    network: str = "",
    metrics: Optional[Path] = None,
    events: Optional[Path] = None,
) -> FitResult:
    """Train ``method.student`` for ``planned_epochs`` epochs (``train.epochs``, more for a small train split under
    ``train.min_steps``), or until ``train.patience`` epochs bring no better one; keep the epoch best on validation.

    The data order is ``EpochBatches``' for (``seed``, ``stream``): ``stream`` is ``teacher`` for the
    teacher and ``student`` for every student, so the teacher never shares a student seed's batches.

    Selection uses the student's validation cross-entropy (``select_on=val_loss``) or accuracy
    (``val_acc``, ties to the lower loss). The test split is never seen here.

    ``tcfg.precision``, ``tcfg.channels_last`` and ``tcfg.compile`` choose how a step runs (see
    ``engine.step``; absent fields mean fp32, contiguous, eager). With ``checkpoint`` (a path), the whole
    training state is written there atomically after every epoch; with ``resume`` as well, training
    continues from that file when it exists, and ends as the uninterrupted run would have.

    A NaN or infinite mean training loss of an epoch, or validation loss, stops the training with a
    ``TrainingDiverged`` (``check_finite``) naming ``network`` (default: ``desc``), that epoch and the likely
    setting; the epoch checkpoint is then left as it was after the last finite epoch.

    With ``metrics`` (a path), a CSV with a row per epoch so far (``write_metrics``: learning rate, seconds, the
    mean of every loss term, validation loss and accuracy) is rewritten atomically after every epoch (rank 0);
    with ``events`` (a folder), the same figures go to TensorBoard event files there as each epoch ends.
    """
    device = train.device
    channels_last = bool(getattr(tcfg, "channels_last", False))
    student = method.student
    mods = method.modalities
    if channels_last:
        to_channels_last(method)
        if method.teacher is not None:
            to_channels_last(method.teacher)
    ctx = distributed.current()
    distributed.check_batch_size(tcfg.batch_size, ctx.world_size)
    model = distributed.wrap(method, device)  # the method itself, or DDP around it under torchrun
    params = [p for p in method.parameters() if p.requires_grad]
    opt = make_optimizer(param_groups(method, tcfg.lr, tcfg.weight_decay), tcfg)
    sampler = EpochBatches(len(train), tcfg.batch_size, seed, ctx.rank, ctx.world_size, stream)
    batches = TrainBatches(train, mods, sampler, str(getattr(tcfg, "loader", "memory")),
                           int(getattr(tcfg, "loader_workers", 0)))
    steps_per_epoch = len(sampler)
    epochs = planned_epochs(tcfg, steps_per_epoch)
    patience = int(getattr(tcfg, "patience", 0))
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(tcfg, total, steps_per_epoch))
    step = TrainStep(model, opt, sched, str(getattr(tcfg, "precision", "32")), channels_last, device)
    start, best_key, best, history, timeline = 0, None, None, [], []
    ckpt = None
    if resume and checkpoint is not None:  # rank 0 reads it, every rank gets it: all agree on where to go on
        ckpt = distributed.main_only(lambda: load_checkpoint(checkpoint))
    debug_log = os.environ.get("MMHAL_LOG_FIRST_STEP")
    n_logged = 0
    if ckpt is not None:
        assert ckpt["epochs"] == epochs and ckpt["seed"] == seed, f"checkpoint {checkpoint} is for another job"
        if ckpt.get("world_size", 1) != ctx.world_size:
            raise UserError(f"checkpoint '{checkpoint}' was written by a run of {ckpt.get('world_size', 1)} process(es), "
                            f"this one has {ctx.world_size}; resume it with the same number of processes")
        method.load_state_dict(ckpt["method"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if step.scaler is not None and ckpt["scaler"] is not None:
            step.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        start, history, timeline = ckpt["epoch"], list(ckpt["history"]), list(ckpt.get("timeline", []))
        best_key = tuple(ckpt["best"]["key"])
        best = (ckpt["best"]["epoch"], {k: v.to(device) for k, v in ckpt["best"]["state"].items()},
                {n: {k: v.to(device) for k, v in st.items()} for n, st in ckpt["best"].get("companions", {}).items()})
    decay = float(getattr(tcfg, "ema", 0.0))
    ema = WeightAverage(student, decay, ckpt.get("ema") if ckpt is not None else None) if decay > 0 else None
    bar = tqdm(range(start, epochs), desc=desc, leave=False, disable=not progress, unit="ep", dynamic_ncols=True,
               initial=start, total=epochs)
    board = EpochBoard(events if ctx.is_main else None)
    with compiled_forward(student, bool(getattr(tcfg, "compile", False))), _closed_after(bar, batches), board:
        for epoch in bar:
            if patience and best is not None and epoch - best[0] >= patience:
                break  # no better epoch for `patience` epochs (also when a resumed run had reached that point)
            method.start_epoch(epoch, derive_seed(seed, "method", stream, epoch))  # the same on every rank
            # The global generator (dropout) starts every epoch from (seed, stream, epoch, rank), like the data
            # order: a resumed training draws what the uninterrupted one drew, whatever else (a DataLoader's
            # iterator, a validation pass) took numbers from it before.
            torch.manual_seed(derive_seed(seed, "noise", stream, epoch, ctx.rank))
            t_epoch, lr_epoch = time.perf_counter(), float(opt.param_groups[0]["lr"])
            method.train()
            sums: dict[str, torch.Tensor] = {}
            n_steps = 0
            batches.set_epoch(epoch)
            for inputs, target, idx in batches:
                t_out = index_output(teacher_cache, idx) if teacher_cache is not None else None
                losses = step(inputs, target, t_out, index=idx if method.needs_index else None)
                if ema is not None:
                    ema.update(sched.last_epoch)  # the number of steps taken so far: exact across a resume
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_steps += 1
                if debug_log and n_logged < 2:
                    _log_step(Path(debug_log), desc, n_logged, losses, params, ctx.is_main)
                    n_logged += 1
            if ctx.enabled:  # the epoch's mean losses over all ranks, the same on every rank
                sums = {k: collective.all_reduce_mean(torch.as_tensor(v, device=device)) for k, v in sums.items()}
            with ema.applied() if ema is not None else nullcontext():  # what is evaluated, kept and selected
                logits = predict(student, val)
            val_loss = F.cross_entropy(logits, val.labels.cpu()).item()
            val_acc = accuracy(val.labels.cpu().numpy(), logits.argmax(1).numpy())
            rec = {"epoch": epoch + 1, **{k: float(v) / n_steps for k, v in sums.items()}, "val_loss": val_loss, "val_acc": val_acc}
            check_finite(method, tcfg, network or desc or "the network", epoch + 1, {k: rec[k] for k in sums}, val_loss)
            history.append(rec)
            timeline.append({"epoch": epoch + 1, "lr": lr_epoch, "seconds": round(time.perf_counter() - t_epoch, 3)})
            key = (val_loss,) if tcfg.select_on == "val_loss" else (-val_acc, val_loss)
            if best_key is None or key < best_key:
                best_key = key
                best = (epoch + 1, copy.deepcopy(ema.state if ema is not None else student.state_dict()),
                        companion_states(method))
            if checkpoint is not None and ctx.is_main:
                save_checkpoint(
                    checkpoint, epoch=epoch + 1, epochs=epochs, seed=seed, method=method.state_dict(),
                    optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    scaler=step.scaler.state_dict() if step.scaler is not None else None, rng=rng_state(),
                    world_size=ctx.world_size,
                    best={"epoch": best[0], "key": list(best_key), "state": best[1], "companions": best[2]},
                    history=history, timeline=timeline,
                    ema=ema.state if ema is not None else None,
                )
            if metrics is not None and ctx.is_main:
                write_metrics(metrics, history, timeline)
            board.add({**timeline[-1], **rec})
            bar.set_postfix(loss=f"{sum(rec[k] for k in sums):.3f}", val_acc=f"{val_acc:.3f}", best=best[0])
            if on_epoch is not None:
                on_epoch(epoch, rec)
    last = copy.deepcopy(ema.state if ema is not None else student.state_dict())
    student.load_state_dict(best[1])
    return FitResult(best[1], best[0], history, last, best[2], companion_states(method))

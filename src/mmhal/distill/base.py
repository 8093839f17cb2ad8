"""A distillation method is one ``nn.Module`` holding the student (and the frozen teacher).

Usage on its own::

    method = METHODS.get("rad")(student, teacher, distill_cfg)
    logits, losses = method(inputs, target)   # inputs: {modality: (B, ...)}, target: (B,) int64
    sum(losses.values()).backward()

``teacher_out`` may carry the teacher's precomputed output for this batch (the trainer caches it
when the inputs are not randomly augmented, so the frozen teacher runs once per sample, not once per
epoch). ``logits`` are the student's (B, K); ``losses`` maps a name ("ce", "rad", ...) to a scalar already
multiplied by its weight, so the training loss is their sum. The teacher is kept in ``eval()`` with
no gradient whatever ``train()`` is called with; trainable extras of a method belong to it, so the
optimizer sees them through ``method.parameters()`` (teacher parameters have requires_grad False).

What a method may ask of the trainer (``engine.loop.fit``), explicitly rather than through hooks:

* ``needs_index = True``: the method is built with ``train_labels=`` (the train split's labels, (N,) int64,
  row i = the sample at position i of the train split; N sizes whatever the method keeps per sample) and
  every training ``forward`` gets ``index=``, (B,) int64, each sample's position in the train split.
* ``start_epoch(epoch, seed)`` is called before every training epoch (0-based ``epoch``; ``seed`` derived
  from the job's seed, stream and that epoch, the same on every rank): a method whose loss depends on the
  epoch (DKD's warm-up) or draws random numbers (CRD's negatives) takes both from here, so a resumed
  training, which restarts at an epoch boundary, continues exactly.
* ``companions``: names of networks the method trains beside its student that are deployed with it (Hoffman's
  RGB network ``rgb``, an attribute of that name): the trainer keeps each one's weights at the student's
  selected epoch, saves it as the job ``<method>.<name>`` and records its predictions, so an ensemble
  (``hallucination-fusion``) can sum them with the student's.
* ``ddp_local_buffers``: names of buffers that DistributedDataParallel must not broadcast from rank 0 at
  every step (a memory bank the method keeps identical on every rank itself, by gathering explicitly).

The trainer may run ``forward`` under ``torch.autocast`` (``train.precision`` bf16 or 16): networks then
compute in reduced precision, but every loss is computed in fp32, on ``.float()`` logits and features,
with matrix products inside ``full_precision``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..models.network import MultimodalNet, NetOutput
from ..registry import Registry

#: name -> method class
METHODS: Registry[Callable[..., "Method"]] = Registry("method")
register_method = METHODS.register


class Method(nn.Module):
    needs_teacher: bool = True
    #: The method's own hyperparameters for ``mmhal tune``: dotted config key -> ("log", lo, hi) |
    #: ("uniform", lo, hi) | ("choice", [values]). The schedule (learning rate, weight decay) is searched
    #: for every method alike, on top of these (``engine.tune.COMMON_SPACE``).
    tune_space: dict = {}
    #: see the module docstring
    needs_index: bool = False
    companions: tuple[str, ...] = ()
    ddp_local_buffers: tuple[str, ...] = ()

    def __init__(self, student: MultimodalNet, teacher: Optional[MultimodalNet], cfg):
        super().__init__()
        self.student = student
        self.cfg = cfg
        if self.needs_teacher and teacher is None:
            raise ValueError(f"{type(self).__name__} needs a teacher")
        # A plain attribute list keeps the teacher out of this module's parameters() and state_dict().
        self._teacher = [teacher] if teacher is not None else []
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)

    @property
    def teacher(self) -> Optional[MultimodalNet]:
        return self._teacher[0] if self._teacher else None

    @property
    def modalities(self) -> list[str]:
        """Every modality a batch must carry: the student's, then the teacher's."""
        mods = list(self.student.modalities)
        if self.teacher is not None:
            mods += [m for m in self.teacher.modalities if m not in mods]
        return mods

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def to(self, *args, **kwargs):
        if self.teacher is not None:
            self.teacher.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def start_epoch(self, epoch: int, seed: int) -> None:
        """Called by the trainer before training epoch ``epoch`` (0-based); see the module docstring."""

    def teacher_forward(self, inputs: dict[str, torch.Tensor], precomputed: Optional[NetOutput] = None) -> NetOutput:
        """The frozen teacher's output on this batch (``precomputed`` when the trainer cached it)."""
        if precomputed is not None:
            return precomputed
        with torch.no_grad():
            return self.teacher(inputs)

    def ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The cross-entropy term (fp32), with ``cfg.label_smoothing``."""
        return F.cross_entropy(logits.float(), target, label_smoothing=float(getattr(self.cfg, "label_smoothing", 0.0)))

    def forward(self, inputs: dict[str, torch.Tensor], target: torch.Tensor, teacher_out: Optional[NetOutput] = None):
        raise NotImplementedError


@register_method("unimodal")
class Unimodal(Method):
    """Cross-entropy only, on the student's own modalities (the baseline; also trains the teacher)."""

    needs_teacher = False

    def forward(self, inputs, target, teacher_out=None):
        out = self.student(inputs)
        return out.logits, {"ce": self.ce(out.logits, target)}


def build_method(name: str, student: MultimodalNet, teacher: Optional[MultimodalNet], cfg,
                 train_labels: Optional[torch.Tensor] = None) -> Method:
    """Method ``name`` around ``student`` (and ``teacher`` when it needs one), given the train split's labels
    when it keeps something per training sample (``needs_index``)."""
    cls = METHODS.get(name)
    if not cls.needs_index:
        return cls(student, teacher if cls.needs_teacher else None, cfg)
    if train_labels is None:
        raise ValueError(f"method '{name}' needs the train split's labels (train_labels=)")
    return cls(student, teacher, cfg, train_labels=train_labels)


def full_precision(t: torch.Tensor):
    """A block where autocast is off for ``t``'s device: loss arithmetic (matrix products included) stays fp32.

    The trainer runs a method's forward under ``torch.autocast`` for bf16/fp16 training; a ``.float()``
    cast alone would not keep a matrix product in fp32 there, because autocast casts its inputs down.
    """
    return torch.autocast(device_type=t.device.type, enabled=False)


def kl_at_temperature(teacher_logits: torch.Tensor, student_logits: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) over the last axis, one value per row (fp32)."""
    log_pt = F.log_softmax(teacher_logits.float() / t, dim=-1)
    log_ps = F.log_softmax(student_logits.float() / t, dim=-1)
    return (t * t) * (log_pt.exp() * (log_pt - log_ps)).sum(-1)

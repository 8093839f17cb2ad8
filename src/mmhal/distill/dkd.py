"""Decoupled knowledge distillation (Zhao et al. 2022): KD split into a target and a non-target term.

With p = softmax(z / T) and the true class y of each sample:

* TCKD = T^2 * mean_b KL(b^t || b^s), b = [p_y, 1 - p_y] (the binary target / non-target split);
* NCKD = T^2 * mean_b KL(q^t || q^s), q = softmax(z / T - 1000 * onehot(y)) (the distribution over the
  non-target classes);
* DKD = alpha * TCKD + beta * NCKD, and L = CE(z_s, y) + min(epoch / W, 1) * DKD, epochs counted from 1.

Per sample, KD = TCKD + (1 - b^t_y) * NCKD: DKD re-weights KD's two parts. The binary split is computed
from log-sum-exps, so log b^s stays finite when the student is confidently wrong. T is ``distill.temperature``
(shared with KD and RAD); alpha = 1, beta = 8 are the CIFAR defaults (beta 0.5..8 in the paper's tables),
W = ``distill.dkd.warmup`` epochs. With 2 classes the non-target distribution has one class, NCKD is 0 and
DKD is alpha * KD: the method refuses such data (use ``kd``).

The warm-up needs the epoch: the trainer tells the method before every epoch (``start_epoch``, see
``distill.base``), so a resumed training has the right factor from its first step. Used on its own, the
method is at epoch 1 until ``start_epoch`` says otherwise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Method, register_method

NON_TARGET_SHIFT = 1000.0


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
              t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (TCKD, NCKD), each (B,), both already multiplied by T^2 (fp32)."""
    zs, zt = student_logits.float() / t, teacher_logits.detach().float() / t
    gt = F.one_hot(target, zs.shape[1]).bool()

    def binary_log(z):  # log [p_y, 1 - p_y], from log-sum-exps
        total = torch.logsumexp(z, dim=1)
        log_target = z.masked_fill(~gt, float("-inf")).logsumexp(dim=1) - total
        log_other = z.masked_fill(gt, float("-inf")).logsumexp(dim=1) - total
        return torch.stack([log_target, log_other], dim=1)

    lb_s, lb_t = binary_log(zs), binary_log(zt)
    tckd = (lb_t.exp() * (lb_t - lb_s)).sum(1)
    lq_s = F.log_softmax(zs - NON_TARGET_SHIFT * gt.float(), dim=1)
    lq_t = F.log_softmax(zt - NON_TARGET_SHIFT * gt.float(), dim=1)
    nckd = (lq_t.exp() * (lq_t - lq_s)).sum(1)
    return (t * t) * tckd, (t * t) * nckd


@register_method("dkd")
class DKD(Method):
    """L = CE(z_s, y) + min(epoch / W, 1) * (alpha * TCKD + beta * NCKD)."""

    tune_space = {"distill.dkd.beta": ("log", 0.5, 16.0), "distill.temperature": ("choice", [1.0, 2.0, 4.0, 8.0])}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        if student.head.out_features < 3:
            raise UserError("method 'dkd' needs at least 3 classes: with 2 its non-target term is empty and it "
                            "is KD with the weight alpha, so use 'kd'")
        self.epoch = 1  # the epoch under way, counted from 1 (set by the trainer, see the module doc)

    def start_epoch(self, epoch: int, seed: int) -> None:
        self.epoch = int(epoch) + 1

    def warmup_factor(self) -> float:
        """min(epoch / W, 1) for the epoch under way."""
        return min(self.epoch / float(self.cfg.dkd.warmup), 1.0)

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        tckd, nckd = dkd_terms(out.logits, t_out.logits, target, self.cfg.temperature)
        c = self.cfg.dkd
        dkd = c.alpha * tckd.mean() + c.beta * nckd.mean()
        return out.logits, {"ce": self.ce(out.logits, target), "dkd": self.warmup_factor() * dkd}

"""Region-aware distillation (RAD): per-region response matching over a region pyramid.

For the last trunk feature maps of teacher and student, pool R pyramid regions, pass every region
through the network's own head (one call on (B*R, C)), and take per region

    l_{b,r} = T^2 * KL( softmax(z^t_{b,r} / T) || softmax(z^s_{b,r} / T) ).

The loss is L_RAD = mean_b sum_r w_{b,r} l_{b,r} with weights that sum to 1 over regions (but see ``confidence``):

* ``uniform``:    w_r = 1 / R.
* ``attention``:  parameter-free attention over each sample's loss vector (a per-sample variant of the authors'
                  UCF101 weighting, ``authors-ucf101`` below, with constant weights):
                  A = softmax(l l^T) row-wise, the weighted loss A l summed over rows equals
                  sum_j (sum_i A_ij) l_j, so w_j = (1/R) sum_i A_ij.
* ``confidence``: w_r proportional to p^t_r(y) * [argmax_k p^t_r = y], the teacher's region
                  probability of the true class, zero where the teacher's region is wrong; a sample whose
                  teacher is wrong in every region has all weights 0 (it contributes nothing).

Weights are treated as constants (no gradient through them): they choose where the student
learns, they are not a quantity the student should shrink.

* ``authors``:    the authors' face code (FAITHFULNESS_AUDIT 1.2 step 6): the batch-mean loss vector l (R,)
                  goes through a trainable self-attention, q = W_q l, k = W_k l (two bias-free R x R linear
                  maps the optimiser trains with the student), A = softmax(k q^T) row-wise,
                  L_RAD = (1/R) sum_i (A l)_i, with gradient through l and A (``AuthorsAttention``). Their code
                  detaches l first (``torch.tensor(loss_list)``), which leaves the student without any RAD
                  gradient; mmhal keeps it.
* ``authors-ucf101``: the authors' UCF101 code (FAITHFULNESS_AUDIT 1.3; ``ucf101/loss/kd/st.py``): the same
                  batch-mean loss vector l (R,) through a parameter-free self-attention, A = softmax(l l^T)
                  row-wise, L_RAD = sum_i (A l)_i / (R - n), with gradient through l and A; a region whose
                  batch-mean loss is NaN counts as 0 and n is the number of such regions (``ucf101_attention``).
                  ``attention`` above is its per-sample variant with constant weights.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Method, kl_at_temperature, register_method

WEIGHTINGS = ("uniform", "attention", "confidence", "authors", "authors-ucf101")


def ucf101_attention(losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``authors-ucf101`` weighting of an (R,) vector of batch-mean region losses l: (L, A) with
    A = softmax_j(l_i l_j) (R x R, rows sum to 1) and L = sum_i (A l)_i / (R - n), gradient through A and l;
    NaN entries count as 0 and n is their number (the authors' code)."""
    nan = torch.isnan(losses)
    l = torch.where(nan, torch.zeros_like(losses), losses)
    att = torch.softmax(l.unsqueeze(1) * l.unsqueeze(0), dim=1)
    return (att @ l).sum() / (losses.numel() - nan.sum()), att


class AuthorsAttention(nn.Module):
    """The ``authors`` weighting: (R,) region losses l -> (1/R) sum_i sum_j softmax_j(k_i q_j) l_j with
    q = W_q l and k = W_k l, W_q and W_k bias-free R x R linear maps (trained with the student)."""

    def __init__(self, regions: int):
        super().__init__()
        self.q = nn.Linear(regions, regions, bias=False)
        self.k = nn.Linear(regions, regions, bias=False)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """(R, R): A = softmax(k q^T), rows sum to 1."""
        return torch.softmax(self.k(losses).unsqueeze(1) * self.q(losses).unsqueeze(0), dim=1)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights(losses) @ losses).mean()


def rad_attention(student, cfg) -> "AuthorsAttention | None":
    """The trainable attention of the ``authors`` weighting for ``student``'s region count, or None."""
    if cfg.rad_weighting != "authors":
        return None
    from ..models.pyramid import num_regions

    return AuthorsAttention(num_regions(getattr(student, "region_dims", student.dims), cfg.rad_levels))


def region_weights(
    losses: torch.Tensor, teacher_region_logits: torch.Tensor, target: torch.Tensor, mode: str
) -> torch.Tensor:
    """(B, R) weights for per-region losses (B, R): each row sums to 1, except ``confidence`` rows of a sample
    whose teacher is wrong in every region, which are all 0."""
    b, r = losses.shape
    if mode == "uniform":
        return losses.new_full((b, r), 1.0 / r)
    if mode == "attention":
        l = losses.detach()
        att = torch.softmax(l.unsqueeze(2) * l.unsqueeze(1), dim=2)  # (B, R, R), rows sum to 1
        return att.sum(dim=1) / r
    if mode == "confidence":
        probs = torch.softmax(teacher_region_logits.float(), dim=-1)  # (B, R, K)
        idx = target.view(b, 1, 1).expand(b, r, 1)
        p_true = probs.gather(2, idx).squeeze(2)
        correct = (probs.argmax(dim=-1) == target.view(b, 1)).float()
        w = p_true * correct
        total = w.sum(dim=1, keepdim=True)
        # A sample whose teacher is wrong in every region gets all-zero weights: it contributes nothing,
        # instead of being renormalised back to full weight towards a wrong teacher.
        return w / torch.where(total > 0, total, torch.ones_like(total))
    raise ValueError(f"unknown region weighting '{mode}'")


def rad_loss(student, s_fmap, teacher, t_fmap, target, temperature=2.0, weighting="confidence", levels=(4, 2, 1),
             pool: str = "map", remap: str = "none", attention: "AuthorsAttention | None" = None,
             detach_defect: bool = False):
    """L_RAD for one batch; returns (loss, per-region losses (B, R), weights (B, R)). ``pool="finest"`` pools the
    coarse levels from the finest level's map, ``remap="square"`` re-maps both feature maps to F^2 / ||F^2|| first
    (``models.pyramid``; both as the authors' face code)."""
    how = {"from_finest": pool == "finest", "remap": remap == "square"}
    with torch.no_grad():
        t_regions = teacher.region_logits(t_fmap, levels, **how)
    s_regions = student.region_logits(s_fmap, levels, **how)
    per_region = kl_at_temperature(t_regions, s_regions, temperature)  # (B, R)
    if weighting == "authors":
        if attention is None:
            raise ValueError("the 'authors' weighting needs the method's AuthorsAttention (rad_attention)")
        batch_mean = per_region.mean(dim=0)  # (R,): the authors' batchmean KL per region
        if detach_defect:  # their face code's torch.tensor(loss_list): no RAD gradient reaches the student
            batch_mean = batch_mean.detach()
        w = (attention.weights(batch_mean.detach()).mean(dim=0)).expand_as(per_region).detach()  # for reports
        return attention(batch_mean.float()), per_region, w
    if weighting == "authors-ucf101":
        loss, att = ucf101_attention(per_region.mean(dim=0).float())
        w = (att.sum(dim=0) / att.shape[0]).expand_as(per_region).detach()  # for reports: w_j = (1/R) sum_i A_ij
        return loss, per_region, w
    w = region_weights(per_region, t_regions, target, weighting).detach()
    return (w * per_region).sum(dim=1).mean(), per_region, w


def rad_term(method: Method, out, t_out, target: torch.Tensor) -> torch.Tensor:
    """lambda_RAD * L_RAD of a method's student output ``out`` against the teacher's ``t_out``, as configured."""
    c = method.cfg
    loss, _, _ = rad_loss(method.student, out.fmap, method.teacher, t_out.fmap, target, c.temperature, c.rad_weighting,
                          c.rad_levels, getattr(c, "rad_pool", "map"), getattr(c, "rad_remap", "none"),
                          getattr(method, "rad_attention", None), bool(getattr(c, "rad_reproduce_detach_defect", False)))
    return c.rad_lambda * loss


@register_method("rad")
class RAD(Method):
    """L = CE(z_s, y) + lambda_RAD * L_RAD."""

    tune_space = {"distill.rad_lambda": ("log", 0.1, 10.0), "distill.temperature": ("choice", [1.0, 2.0, 4.0, 8.0]),
                  "distill.rad_weighting": ("choice", ["uniform", "attention", "confidence"])}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.rad_attention = rad_attention(student, cfg)

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        return out.logits, {"ce": self.ce(out.logits, target), "rad": rad_term(self, out, t_out, target)}

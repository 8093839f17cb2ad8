"""Attention transfer (Zagoruyko & Komodakis 2017) on the trunk feature maps f3 and f4.

For a feature map F (B, C, *grid), the attention map is a(F) = vec(mean over channels of |F|^p), scaled to
unit L2 norm over the grid positions of each sample (eps 1e-12). Per depth

    L_depth = (1 / (B * |grid|)) * sum_b || a(F^s_b) - a(F^t_b) ||^2

and L = CE(z_s, y) + beta * (L_f3 + L_f4); p = 2 and beta = 1000 as in the CIFAR zoos. The maps of
teacher and student have the same grid in mmhal, so nothing is resampled. A depth whose grid has fewer
than 2 positions carries no attention (a(F) = 1 there, a constant loss of 0), so the method refuses a
student whose features are vectors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Method, full_precision, register_method


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """(B, C, *grid) -> (B, |grid|): channel mean of |F|^p, unit L2 norm per sample (fp32)."""
    with full_precision(f):
        a = f.float().abs().pow(p).mean(dim=1).flatten(1)
        return F.normalize(a, p=2, dim=1, eps=1e-12)


def at_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean over B * |grid| of the squared difference of the attention maps; 0 for a grid of one position."""
    if s_feat.dim() < 3 or math.prod(s_feat.shape[2:]) < 2:
        return s_feat.float().sum() * 0.0
    return (attention_map(s_feat, p) - attention_map(t_feat.detach(), p)).pow(2).mean()


@register_method("at")
class AT(Method):
    """L = CE(z_s, y) + beta * sum over f3, f4 of L_AT."""

    tune_space = {"distill.at.beta": ("log", 100.0, 10000.0)}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        if getattr(student, "dims", 1) == 0 or math.prod(getattr(student, "grid", (2,))) < 2:
            raise UserError("method 'at' needs feature maps with a spatial or temporal grid, but the student's "
                            "trunk features are vectors; use a feature method on the embedding (sp, pkt, rkd, mars)")

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        p = self.cfg.at.p
        at = sum(at_loss(s, t, p) for s, t in zip(out.features, t_out.features))
        return out.logits, {"ce": self.ce(out.logits, target), "at": self.cfg.at.beta * at}

"""Similarity-preserving distillation (Tung & Mori 2019) at one depth: the single-layer baseline of DAD.

For the last trunk map f4 flattened per sample (B x D): G = f f^T, each row of G scaled to unit L2 norm,

    L = CE(z_s, y) + gamma * mean over the B x B entries of (G^s - G^t)^2

with gamma = 3000 (the CIFAR zoos' weight). This is ``dad``'s loss (``distill.dad.sp_loss``, variant
``batch``) on f4 alone, where DAD sums it over f3 and f4 with lambda 100: reporting both isolates what the
second depth (and DAD's local variant) adds. Invariant to a global scale and to an orthogonal map of the
features; batch-relational, so its value depends on the batch size (L <= 4 / B). Under ``torchrun`` the
features of every rank are gathered first (``distill.dad_global``, as for DAD).
"""
from __future__ import annotations

from .base import Method, register_method
from .dad import relational_pair, sp_loss


@register_method("sp")
class SP(Method):
    """L = CE(z_s, y) + gamma * L_SP(f4)."""

    tune_space = {"distill.sp.gamma": ("log", 300.0, 30000.0)}

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        sp = sp_loss(*relational_pair(self.cfg, out.features[-1], t_out.features[-1]), "batch")
        return out.logits, {"ce": self.ce(out.logits, target), "sp": self.cfg.sp.gamma * sp}

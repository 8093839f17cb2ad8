"""Relational knowledge distillation (Park et al. 2019): distance- and angle-wise terms on the embedding.

For embeddings e (B x D):

* distance: d_ij = sqrt(max(||e_i - e_j||^2, 1e-12)), d_ii = 0, psi_D = d / mean(d over the entries > 0)
  (the teacher's mean without gradient, the student's with). L_D = mean over the B^2 entries of
  Huber_1(psi_D^s - psi_D^t) (smooth L1 with threshold 1; the zero diagonal included).
* angle: psi_A(i, j, k) = cosine of the angle at e_i between e_j - e_i and e_k - e_i (each difference scaled
  to unit length, eps 1e-12; the zero vector when j = i or k = i). L_A = mean over the B^3 triples of
  Huber_1(psi_A^s - psi_A^t).

L = CE(z_s, y) + w_D * L_D + w_A * L_A with w_D = 25, w_A = 50 (the paper's and the zoos' weights).
Distances are computed from the differences e_i - e_j (not from ||e_i||^2 + ||e_j||^2 - 2 e_i.e_j), so
repeated samples have distance exactly 0 and sit at the clamp, where the square root passes no gradient;
likewise their zero difference vector passes no gradient through the angle's normalisation (the reference's
1 / eps there gives gradients of ~1e10).
Both terms are 0 when the student's embedding is a similarity transform c * e Q + b (c > 0, Q orthogonal)
of the teacher's. Cost: the angle term is a batched product (B, B, D) x (B, D, B), B^3 * D multiply-adds, for
each network, the most expensive loss of the baselines. The student's angle term is one fused autograd
function (``_AngleHuber``): its forward computes the loss and, while the (B, B, B) residual is at hand, turns
it in place into Huber_1' = clamp(r, -1, 1) and forms the gradient with respect to the unit differences (one
more product); the backward only scales it. Three (B, B, B) products per step instead of four and no further
B^3 buffers (the loss alone ~20 % faster at B = 128, D = 96 on one CPU thread, benchmarks/RESULTS.md).
Memory: (B, B, D) + (B, B, B) floats. ``distill.rkd.angle=0`` skips the term.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .base import Method, full_precision, register_method
from .dad import relational_pair


def potentials(e: torch.Tensor, angle: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(psi_D (B, B), psi_A (B, B, B)) of embeddings e (B, D), in fp32; psi_A is None unless ``angle``.

    psi_D: pairwise distances divided by their mean over the nonzero entries. psi_A[i, j, k]: the cosine of
    the angle at e_i between e_j - e_i and e_k - e_i."""
    psi_d, u = _distance_and_directions(e, angle)
    return psi_d, (None if u is None else torch.bmm(u, u.transpose(1, 2)))


def _distance_and_directions(e: torch.Tensor, angle: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(psi_D (B, B), u (B, B, D)) in fp32: u[i, j] = (e_j - e_i) / ||e_j - e_i||, the zero vector where the
    difference is zero; u is None unless ``angle``. psi_A = u u^T per anchor i."""
    with full_precision(e):
        e = e.float().flatten(1)
        diff = e.unsqueeze(0) - e.unsqueeze(1)  # (i, j) = e_j - e_i
        norm = diff.norm(p=2, dim=2)
        b = norm.shape[0]
        d = norm.pow(2).clamp_min(1e-12).sqrt() * (1.0 - torch.eye(b, device=e.device))  # d_ii = 0, no gradient
        # Off the diagonal d >= 1e-6 (the clamp), so the entries > 0 are exactly the B (B - 1) off-diagonal ones.
        psi_d = d / (d.sum() / (b * (b - 1)))
        if not angle:
            return psi_d, None
        # u = F.normalize(diff, eps=1e-12), except that a zero difference (j = i, or a repeated sample) passes no
        # gradient instead of 1 / eps (for a repeated sample the two rows' gradients would not cancel).
        inv = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-12), torch.zeros_like(norm))
        return psi_d, diff * inv.unsqueeze(2)


class _AngleHuber(torch.autograd.Function):
    """mean over (i, j, k) of Huber_1(u[i, j] . u[i, k] - a_t[i, j, k]) for unit differences u (B, B, D) and
    the teacher's psi_A a_t (B, B, B); the gradient with respect to u is formed in the forward pass."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        a_s = torch.bmm(u, u.transpose(1, 2))
        loss = F.smooth_l1_loss(a_s, a_t, beta=1.0)
        if ctx.needs_input_grad[0]:
            # d/du[i, j] of sum_k Huber_1(r[i, j, k]), r = a_s - a_t, through both the j and the k position;
            # r is symmetric in (j, k), so that is 2 clamp(r, -1, 1) u. In place: no further (B, B, B) buffer
            # (each new one costs page faults comparable to its arithmetic on a CPU).
            h = a_s.sub_(a_t).clamp_(-1.0, 1.0)
            ctx.save_for_backward(torch.bmm(h, u).mul_(2.0 / h.numel()))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (grad_u,) = ctx.saved_tensors
        return grad_u * grad, None


def distance_potential(e: torch.Tensor) -> torch.Tensor:
    """psi_D of embeddings e (B, D): (B, B)."""
    return potentials(e)[0]


def angle_potential(e: torch.Tensor) -> torch.Tensor:
    """psi_A of embeddings e (B, D): (B, B, B)."""
    return potentials(e)[1]


def rkd_losses(s_emb: torch.Tensor, t_emb: torch.Tensor, angle: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_D, L_A) between student and teacher embeddings; the teacher's side carries no gradient. Without
    ``angle`` L_A is not computed (0): the angle term is the costly one."""
    with torch.no_grad():
        t_d, t_a = potentials(t_emb, angle)
    s_d, u = _distance_and_directions(s_emb, angle)
    l_d = F.smooth_l1_loss(s_d, t_d, beta=1.0)
    if not angle:
        return l_d, l_d.new_zeros(())
    with full_precision(u):
        return l_d, _AngleHuber.apply(u, t_a)


@register_method("rkd")
class RKD(Method):
    """L = CE(z_s, y) + w_D * L_D + w_A * L_A on the embedding."""

    tune_space = {"distill.rkd.distance": ("log", 2.5, 250.0), "distill.rkd.angle": ("log", 5.0, 500.0)}

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        c = self.cfg.rkd
        l_d, l_a = rkd_losses(*relational_pair(self.cfg, out.embedding, t_out.embedding), angle=c.angle > 0)
        return out.logits, {"ce": self.ce(out.logits, target), "rkd_distance": c.distance * l_d,
                            "rkd_angle": c.angle * l_a}

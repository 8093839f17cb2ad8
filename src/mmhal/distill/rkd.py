"""Relational knowledge distillation (Park et al. 2019): distance- and angle-wise terms on the embedding.

For embeddings e (B x D):

* distance: d_ij = sqrt(max(||e_i - e_j||^2, 1e-12)), d_ii = 0, psi_D = d / mean(d over the entries > 0)
  (the teacher's mean without gradient, the student's with). L_D = mean over the B^2 entries of
  Huber_1(psi_D^s - psi_D^t) (smooth L1 with threshold 1; the zero diagonal included).
* angle: psi_A(i, j, k) = cosine of the angle at e_i between e_j - e_i and e_k - e_i (each difference scaled
  to unit length, eps 1e-12; the zero vector when j = i or k = i). L_A = mean over the B^3 triples of
  Huber_1(psi_A^s - psi_A^t).

L = CE(z_s, y) + w_D * L_D + w_A * L_A with w_D = 25, w_A = 50 (the paper's and the zoos' weights).
Distances are computed from the differences e_i - e_j (``cdist`` without the matrix-product shortcut, not
||e_i||^2 + ||e_j||^2 - 2 e_i.e_j), so repeated samples have distance exactly 0 and sit at the clamp, where
the square root passes no gradient; likewise their zero difference vector passes no gradient through the
angle's normalisation (the reference's 1 / eps there gives gradients of ~1e10).
Both terms are 0 when the student's embedding is a similarity transform c * e Q + b (c > 0, Q orthogonal)
of the teacher's. Cost: the angle term is B^3 cosines per network. It is one fused autograd function
(``_AngleHuber``) that takes both embeddings and works through their Gram matrices: <e_j - e_i, e_k - e_i> =
G_jk - G_ij - G_ik + G_ii, so the B^3 part is elementwise (in float64, a chunk of anchors at a time, each chunk's
buffers ~1 MB so that they stay in cache) and only O(B^2 D) products remain; the residual r = psi_A^s - psi_A^t,
the Huber sum and the gradient with respect to the student's embedding (back through G and the distances) are
formed in the forward pass, the backward only scales it. Before, the unit differences (c, B, D) were formed and
multiplied, B^3 D multiply-adds per network: the same values to float precision, a cost that grew with D (the
embedding of a sequence network doubled with ``model.pool=meanmax``).
Memory: O(c B^2 + B D) for the angle term, O(B^2) for the distance term. ``distill.rkd.angle=0`` skips the
angle term.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .base import Method, full_precision, register_method
from .dad import relational_pair


def potentials(e: torch.Tensor, angle: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(psi_D (B, B), psi_A (B, B, B)) of embeddings e (B, D), in fp32; psi_A is None unless ``angle``. The plain
    formula, the whole (B, B, B) at once (``rkd_losses`` fuses the angle term instead).

    psi_D: pairwise distances divided by their mean over the nonzero entries. psi_A[i, j, k]: the cosine of
    the angle at e_i between e_j - e_i and e_k - e_i."""
    with full_precision(e):
        e = e.float().flatten(1)
        if not angle:
            return _distance_potential(e), None
        u, _ = _anchor_directions(e, 0, e.shape[0])
        return _distance_potential(e), torch.bmm(u, u.transpose(1, 2))


def _distances(e: torch.Tensor) -> torch.Tensor:
    """d (B, B) of embeddings e (B, D): sqrt(max(||e_i - e_j||^2, 1e-12)) off the diagonal, 0 on it. From the
    differences (``cdist`` without the matrix-product shortcut), in O(B^2) memory: a repeated sample has
    distance exactly 0 and passes no gradient."""
    dist = torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")
    return dist.pow(2).clamp_min(1e-12).sqrt() * (1.0 - torch.eye(e.shape[0], device=e.device, dtype=e.dtype))


def _distance_potential(e: torch.Tensor) -> torch.Tensor:
    """psi_D (B, B): ``_distances`` divided by their mean over the B (B - 1) off-diagonal entries (the entries
    > 0: off the diagonal d >= 1e-6, the clamp)."""
    d = _distances(e)
    b = d.shape[0]
    return d / (d.sum() / (b * (b - 1)))


def _anchor_directions(e: torch.Tensor, i0: int, i1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, inv) for the anchors i0 <= i < i1: u (c, B, D) = (e_j - e_i) / ||e_j - e_i|| (the zero vector where
    the difference is zero), inv (c, B) = 1 / ||e_j - e_i|| (0 there)."""
    diff = e.unsqueeze(0) - e[i0:i1].unsqueeze(1)
    norm = torch.linalg.vector_norm(diff, dim=2)
    inv = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-12), torch.zeros_like(norm))
    if diff.requires_grad:  # the plain formula through autograd (``potentials``): no in-place scaling
        return diff * inv.unsqueeze(2), inv
    return diff.mul_(inv.unsqueeze(2)), inv


def _anchors_per_chunk(b: int, d: int, device: torch.device) -> int:
    """Anchors per chunk of the angle term: on a CPU so that each (c, B, B) / (c, B, D) buffer is ~0.5 MB and
    stays in cache (a fresh B^3 buffer costs page faults comparable to its arithmetic); elsewhere all at once."""
    if device.type != "cpu":
        return b
    return max(1, min(b, (1 << 17) // (b * max(b, d, 1))))


class _AngleHuber(torch.autograd.Function):
    """L_A = mean over (i, j, k) of Huber_1(psi_A^s(i, j, k) - psi_A^t(i, j, k)) from the embeddings e_s, e_t
    (B, D) fp32, the gradient with respect to e_s formed in the forward pass, a chunk of anchors i at a time.

    Through Gram matrices, so that no B^3 x D product is formed: <e_j - e_i, e_k - e_i> = G_jk - G_ij - G_ik + G_ii
    with G = e e^T, hence psi_A(i, j, k) = (G_jk - G_ij - G_ik + G_ii) inv_ij inv_ik, inv_ij = 1 / ||e_j - e_i||
    (0 where the difference is zero: a repeated sample passes no gradient, as before). The B^3 part is then
    elementwise, in float64 (the four Gram terms cancel where points are close); the distances come from the
    differences themselves (exactly 0 for a repeated sample); the gradient goes back through G and the distances
    in O(B^2 D). Equal to forming the unit differences (the plain formula, ``potentials``) to float precision
    (tests/test_baselines.py); its cost no longer grows with D (benchmarks/SCIENCE.md §10)."""

    @staticmethod
    def forward(ctx, e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        b, d = e_s.shape
        n = float(b) ** 3
        want_grad = ctx.needs_input_grad[0]
        s, t = e_s.double(), e_t.double()
        g_s, g_t = s @ s.T, t @ t.T
        inv_s, inv_t = _inverse_distances(s), _inverse_distances(t)
        total = s.new_zeros(())
        grad_g = torch.zeros_like(g_s) if want_grad else None
        grad_inv = torch.zeros_like(g_s) if want_grad else None
        step = _anchors_per_chunk(b, b, e_s.device)
        for i0 in range(0, b, step):
            i1 = min(b, i0 + step)
            a_s, dot_s = _angles(g_s, inv_s, i0, i1)
            a_t, _ = _angles(g_t, inv_t, i0, i1)
            r = a_s.sub_(a_t)
            total += F.smooth_l1_loss(r, r.new_zeros(()).expand_as(r), reduction="sum", beta=1.0)
            if not want_grad:
                continue
            h = r.clamp_(-1.0, 1.0)  # d Huber_1(r) / dr
            w = inv_s[i0:i1].unsqueeze(2) * inv_s[i0:i1].unsqueeze(1)  # inv_ij inv_ik
            p = h * w  # dL / d dot_ijk; symmetric in (j, k)
            grad_g += p.sum(0)  # the G_jk term
            row = p.sum(2)  # the G_ij and G_ik terms (equal by symmetry)
            grad_g[i0:i1] -= 2.0 * row
            idx = torch.arange(i0, i1, device=e_s.device)
            grad_g[idx, idx] += row.sum(1)  # the G_ii term
            # inv_ij appears as the j-factor and, by symmetry, as the k-factor: 2 sum_k h dot inv_ik
            grad_inv[i0:i1] += 2.0 * (h.mul_(dot_s).mul_(inv_s[i0:i1].unsqueeze(1))).sum(2)
        if want_grad:
            # inv_ij = 1 / ||e_j - e_i|| (where > 0): d inv = -inv^2 d||.||, d||e_j - e_i|| = u_ij . (de_j - de_i)
            m = -grad_inv * inv_s.pow(3)  # dL/d||.|| / ||.||, per (anchor i, j)
            grad_e = (m.sum(0) + m.sum(1)).unsqueeze(1) * s - (m + m.T) @ s
            grad_e += (grad_g + grad_g.T) @ s
            ctx.save_for_backward(grad_e.mul_(1.0 / n).to(e_s.dtype))
        return (total / n).to(e_s.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (grad_e,) = ctx.saved_tensors
        return grad_e * grad, None


def _inverse_distances(e: torch.Tensor) -> torch.Tensor:
    """(B, B) 1 / ||e_j - e_i|| from the differences themselves, 0 where the difference is zero."""
    dist = torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.where(dist > 0, 1.0 / dist.clamp_min(1e-300), torch.zeros_like(dist))


def _angles(g: torch.Tensor, inv: torch.Tensor, i0: int, i1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(psi_A, dot) for the anchors i0 <= i < i1, each (c, B, B): dot_ijk = <e_j - e_i, e_k - e_i> from the Gram
    matrix ``g``, psi_A = dot inv_ij inv_ik."""
    gi = g[i0:i1]
    diag = torch.diagonal(g)[i0:i1]
    dot = g.unsqueeze(0) - gi.unsqueeze(2) - gi.unsqueeze(1) + diag.view(-1, 1, 1)
    return dot * inv[i0:i1].unsqueeze(2) * inv[i0:i1].unsqueeze(1), dot


def distance_potential(e: torch.Tensor) -> torch.Tensor:
    """psi_D of embeddings e (B, D): (B, B)."""
    return potentials(e)[0]


def angle_potential(e: torch.Tensor) -> torch.Tensor:
    """psi_A of embeddings e (B, D): (B, B, B)."""
    return potentials(e)[1]


def rkd_losses(s_emb: torch.Tensor, t_emb: torch.Tensor, angle: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_D, L_A) between student and teacher embeddings; the teacher's side carries no gradient. Without
    ``angle`` L_A is not computed (0): the angle term is the costly one."""
    with full_precision(s_emb):
        s_emb, t_emb = s_emb.float().flatten(1), t_emb.detach().float().flatten(1)
        with torch.no_grad():
            t_psi = _distance_potential(t_emb)
        l_d = F.smooth_l1_loss(_distance_potential(s_emb), t_psi, beta=1.0)
        if not angle:
            return l_d, l_d.new_zeros(())
        return l_d, _AngleHuber.apply(s_emb, t_emb)


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

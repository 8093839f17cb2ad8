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
of the teacher's. Cost: the angle term is B^3 cosines per network, batched products (c, B, D) x (c, D, B) for
c anchors at a time, B^3 * D multiply-adds each. It is one fused autograd function (``_AngleHuber``) that
takes both embeddings and, a chunk of anchors at a time, forms the unit differences of both networks, the
residual r = psi_A^s - psi_A^t in one product, the Huber sum from r and clamp(r, -1, 1) without a further
buffer, and the gradient with respect to the student's embedding (through 2 clamp(r, -1, 1) u and the
normalisation); the backward only scales it. On a CPU a chunk is ~0.5 MB (c = 8 anchors at B = D = 128), so
its buffers stay in cache instead of paying a fresh B^3 buffer's page faults for every elementwise pass (step
times in benchmarks/RESULTS.md, "Baselines: step cost"); elsewhere (a GPU) one chunk.
Memory: O(c B (B + D)) for the angle term, O(B^2) for the distance term. ``distill.rkd.angle=0`` skips the
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
    (B, D) fp32, the gradient with respect to e_s formed in the forward pass, a chunk of anchors i at a time."""

    @staticmethod
    def forward(ctx, e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
        b, d = e_s.shape
        n = float(b) ** 3
        want_grad = ctx.needs_input_grad[0]
        grad_e = torch.zeros_like(e_s) if want_grad else None
        total = e_s.new_zeros((), dtype=torch.float64)
        step = _anchors_per_chunk(b, d, e_s.device)
        for i0 in range(0, b, step):
            i1 = min(b, i0 + step)
            u_t, _ = _anchor_directions(e_t, i0, i1)
            u_s, inv = _anchor_directions(e_s, i0, i1)
            # r = psi_A^s - psi_A^t on this chunk's anchors, in one product
            r = torch.baddbmm(torch.bmm(u_t, u_t.transpose(1, 2)), u_s, u_s.transpose(1, 2), beta=-1.0)
            # the Huber sum in one pass (against an expanded zero: no further buffer), then clamp(r, -1, 1)
            total += F.smooth_l1_loss(r, r.new_zeros(()).expand_as(r), reduction="sum", beta=1.0).double()
            h = r.clamp_(-1.0, 1.0)
            if want_grad:
                # d/du[i, j] of sum_k Huber_1(r[i, j, k]) through both the j and the k position: r is symmetric
                # in (j, k), so 2 clamp(r, -1, 1) u; then through u = diff / ||diff|| (no gradient where the
                # difference is zero) and diff[i, j] = e_j - e_i
                g_u = torch.bmm(h, u_s)
                g_diff = g_u.sub_(u_s * (u_s * g_u).sum(2, keepdim=True)).mul_(inv.unsqueeze(2))
                grad_e += g_diff.sum(0)
                grad_e[i0:i1] -= g_diff.sum(1)
        if want_grad:
            ctx.save_for_backward(grad_e.mul_(2.0 / n))
        return (total / n).to(e_s.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (grad_e,) = ctx.saved_tensors
        return grad_e * grad, None


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


def rkd_angle(s_emb: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
    """RKD's angle term L_A alone between (B, ...) student and teacher features (flattened per sample); the
    teacher's side carries no gradient."""
    with full_precision(s_emb):
        return _AngleHuber.apply(s_emb.float().flatten(1), t_emb.detach().float().flatten(1))


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

"""Probabilistic knowledge transfer (Passalis & Tefas 2018) on the embedding (pooled f4).

For embeddings f (B x D): f_hat = f / (||f||_2 + 1e-7) per sample, S = (f_hat f_hat^T + 1) / 2 (the cosine
kernel mapped to [0, 1]), P = S with each row scaled to sum 1, and

    L_PKT = (1 / B^2) * sum_ij P^t_ij * log((P^t_ij + 1e-7) / (P^s_ij + 1e-7))

(the row-wise KL divergences summed, divided by B^2, diagonal included: hence the weight 30000 of the
CIFAR zoos). L = CE(z_s, y) + beta * L_PKT. 0 when the embeddings are equal; invariant to a positive
scale of each sample and to an orthogonal map of the features.
"""
from __future__ import annotations

import torch

from .base import Method, full_precision, register_method
from .dad import relational_pair

EPS = 1e-7


def cosine_probabilities(f: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) conditional probabilities of the cosine kernel, rows summing to 1 (fp32)."""
    with full_precision(f):
        f = f.float().flatten(1)
        f = f / (f.norm(p=2, dim=1, keepdim=True) + EPS)
        f = torch.where(torch.isnan(f), torch.zeros_like(f), f)  # not in place: f may need its gradient
        s = (f @ f.t() + 1.0) / 2.0
        return s / s.sum(dim=1, keepdim=True)


def pkt_loss(s_emb: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
    """L_PKT between student and teacher embeddings; the teacher's side carries no gradient."""
    p_s = cosine_probabilities(s_emb)
    p_t = cosine_probabilities(t_emb.detach())
    return (p_t * torch.log((p_t + EPS) / (p_s + EPS))).mean()


@register_method("pkt")
class PKT(Method):
    """L = CE(z_s, y) + beta * L_PKT(embedding)."""

    tune_space = {"distill.pkt.beta": ("log", 3000.0, 300000.0)}

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        return out.logits, {"ce": self.ce(out.logits, target),
                            "pkt": self.cfg.pkt.beta * pkt_loss(*relational_pair(self.cfg, out.embedding, t_out.embedding))}

"""Contrastive representation distillation (Tian et al. 2020): the loss and its memory banks, not yet a method.

Not registered: CRD needs every training sample's index in the train split (0 <= index < N) with each batch,
which the trainer does not pass to a method yet (see ``CRDLoss.forward``). What the loss does:

* v_s = normalise(W_s f_s + b_s), v_t = normalise(W_t f_t + b_t): trainable Linear(D -> 128) embeddings of the
  student's and the teacher's pooled features (both in the optimizer; the teacher's features carry no
  gradient, W_t learns from the teacher-anchor term).
* Memory banks M_s, M_t (N x 128 buffers, uniform in +-1/sqrt(128/3)), one row per training sample. For each
  sample b, K + 1 contrast indices J_b: J_b0 = its own index, J_b1..K drawn uniformly from [0, N).
* Scores with the banks' rows detached, tau = 0.07: h_s(b, k) = exp(<M_t[J_bk], v_s,b> / tau) / Z_s (student
  anchor, teacher memory) and h_t(b, k) = exp(<M_s[J_bk], v_t,b> / tau) / Z_t (teacher anchor, student memory).
  Z_s, Z_t are set once, on the first call, to N * mean(exp(score / tau)) of that batch, and kept (buffers).
* NCE loss, P_n = 1/N, m = K, eps = 1e-7: l(h) = -(1/B) sum_b [log(h_b0 / (h_b0 + m P_n + eps)) +
  sum_{k>=1} log(m P_n / (h_bk + m P_n + eps))]; L_CRD = l(h_s) + l(h_t).
* Then, without gradient: M_s[i_b] <- normalise(0.5 M_s[i_b] + 0.5 v_s,b), the same for M_t with v_t.

Defaults are the CIFAR zoos' (dim 128, K 16384, tau 0.07, momentum 0.5, weight 0.8 with CE 1). K is capped
at N - 1. Everything in fp32 (exp(1 / 0.07) is 1.6e6, past float16).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .base import full_precision

NCE_EPS = 1e-7


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (no eps, as the reference)."""
    return x / x.norm(p=2, dim=1, keepdim=True)


def nce_loss(h: torch.Tensor, num_samples: int) -> torch.Tensor:
    """l(h) for scores h (B, K + 1[, 1]) whose column 0 is the positive, with noise P_n = 1 / num_samples."""
    h = h.reshape(h.shape[0], -1)
    m_pn = (h.shape[1] - 1) / num_samples
    pos = torch.log(h[:, 0] / (h[:, 0] + m_pn + NCE_EPS))
    neg = torch.log(m_pn / (h[:, 1:] + m_pn + NCE_EPS)).sum(1)
    return -(pos + neg).mean()


class CRDLoss(nn.Module):
    """L_CRD between student and teacher features (B, D_s), (B, D_t) of the samples ``index`` of the train split."""

    def __init__(self, s_dim: int, t_dim: int, num_samples: int, dim: int = 128, k: int = 16384,
                 tau: float = 0.07, momentum: float = 0.5):
        super().__init__()
        if num_samples < 2:
            raise ValueError("CRD needs a train split of at least 2 samples")
        self.num_samples, self.k = int(num_samples), min(int(k), num_samples - 1)
        self.tau, self.momentum = tau, momentum
        self.embed_s, self.embed_t = nn.Linear(s_dim, dim), nn.Linear(t_dim, dim)
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_s", torch.rand(num_samples, dim) * 2 * bound - bound)
        self.register_buffer("memory_t", torch.rand(num_samples, dim) * 2 * bound - bound)
        self.register_buffer("z", torch.full((2,), -1.0))  # Z_s, Z_t; negative = not yet set

    def contrast_indices(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(B, K + 1): each sample's own index, then K indices drawn uniformly from [0, N)."""
        neg = torch.randint(0, self.num_samples, (index.shape[0], self.k), generator=generator,
                            device="cpu").to(index.device)
        return torch.cat([index.view(-1, 1), neg], dim=1)

    def scores(self, v: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, K + 1, 1): exp(<memory[idx], v> / tau), the memory rows detached (not yet divided by Z)."""
        rows = memory[idx].detach()  # (B, K + 1, dim)
        return torch.exp(torch.bmm(rows, v.unsqueeze(2)) / self.tau)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, index: torch.Tensor,
                contrast_index: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None):
        """(L_CRD, h_s, h_t); updates the memory banks (and Z on the first call). ``index``: (B,) int64, each
        sample's position in the train split; ``contrast_index`` (B, K + 1) overrides the uniform draw."""
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise IndexError(f"CRD sample indices must lie in [0, {self.num_samples}), got "
                             f"{int(index.min())}..{int(index.max())}")
        idx = contrast_index if contrast_index is not None else self.contrast_indices(index, generator)
        with full_precision(f_s):
            v_s = _unit(self.embed_s(f_s.float().flatten(1)))
            v_t = _unit(self.embed_t(f_t.detach().float().flatten(1)))
            out_s = self.scores(v_s, self.memory_t, idx)
            out_t = self.scores(v_t, self.memory_s, idx)
            if self.z[0] < 0:  # set once, from the first batch, and kept
                with torch.no_grad():
                    self.z.copy_(torch.stack([out_s.mean(), out_t.mean()]) * self.num_samples)
            h_s, h_t = out_s / self.z[0], out_t / self.z[1]
            loss = nce_loss(h_s, self.num_samples) + nce_loss(h_t, self.num_samples)
            with torch.no_grad():
                for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                    rows = memory[index] * self.momentum + v.detach() * (1 - self.momentum)
                    memory.index_copy_(0, index, _unit(rows))
        return loss, h_s, h_t


__all__ = ["CRDLoss", "nce_loss"]

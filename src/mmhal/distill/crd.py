"""Contrastive representation distillation (Tian et al. 2020): L = CE(z_s, y) + beta * L_CRD.

* v_s = normalise(W_s f_s + b_s), v_t = normalise(W_t f_t + b_t): trainable Linear(D -> 128) embeddings of the
  student's and the teacher's pooled features (``embedding``; both in the optimizer; the teacher's features
  carry no gradient, W_t learns from the teacher-anchor term).
* Memory banks M_s, M_t (N x 128 buffers, uniform in +-1/sqrt(128/3)), one row per training sample: N is the
  size of the train split the trainer passes (``train_labels``), never a constant. For each sample b, K + 1
  contrast indices J_b: J_b0 = its own index ("exact"), J_b1..K drawn uniformly, with replacement, from the
  train samples of the *other* classes (class-aware negatives, as the reference's dataset draws them; the
  reference draws without replacement when it can, which costs a permutation per sample).
* Scores with the banks' rows detached, tau = 0.07: h_s(b, k) = exp(<M_t[J_bk], v_s,b> / tau) / Z_s (student
  anchor, teacher memory) and h_t(b, k) = exp(<M_s[J_bk], v_t,b> / tau) / Z_t (teacher anchor, student memory).
  Z_s, Z_t are set once, on the first call, to N * mean(exp(score / tau)) of that batch, and kept (buffers).
* NCE loss, P_n = 1/N, m = K, eps = 1e-7: l(h) = -(1/B) sum_b [log(h_b0 / (h_b0 + m P_n + eps)) +
  sum_{k>=1} log(m P_n / (h_bk + m P_n + eps))]; L_CRD = l(h_s) + l(h_t).
* Then, without gradient: M_s[i_b] <- normalise(0.5 M_s[i_b] + 0.5 v_s,b), the same for M_t with v_t.

Defaults are the CIFAR zoos' (dim 128, K 16384, tau 0.07, momentum 0.5, beta 0.8 with CE 1). K is capped at
the smallest number of other-class train samples. Everything in fp32 (exp(1 / 0.07) is 1.6e6, past float16).

Cost: when 16 (K + 1) >= N (every dataset up to ~260 000 training samples at the default K), the scores are
one (B, 128) x (128, N) product per bank, instead of gathering B (K + 1) memory rows (0.5 GB per bank at
B = 64, K = 16384), which on a CPU is several times slower than the product even where it does 16 times fewer
multiply-adds. The method's loss is then formed from the negatives' counts C (B, N) (``_WholeBankNCE``: the
same value and gradient as the gathered (B, K + 1) scores through autograd, pinned in the tests), with its
gradient formed in the forward pass: no (B, K + 1) score tensor, no gather and scatter, no copy of the banks.
The K negatives per sample are drawn with NumPy's PCG64 and mapped to train indices with one lookup. The
(B, K) and (B, N) arrays of a step are reused from step to step (``_workspace``): on a CPU each fresh
multi-megabyte tensor costs its page faults again, more than its arithmetic. On HAPT
(N = 5128, so K = 4129 by the class cap) see ``benchmarks/RESULTS.md`` ("Baselines: step cost") for the step
time against a plain student step; ``distill.crd.k=2048`` halves the negatives' part.

Randomness and processes: the negatives of an epoch come from a generator seeded by the trainer for that
epoch (``start_epoch``; NumPy's PCG64), so a resumed training draws what the uninterrupted one drew. Under ``torchrun``
every rank draws the whole global batch's uniforms and keeps its own rows (rank r holds positions r, r + W,
... of the global batch, ``engine.loader``), so the W ranks together draw what one process draws; Z is set
from the mean over ranks; the banks are updated on every rank with every rank's (index, v_s, v_t),
gathered explicitly, and DistributedDataParallel does not broadcast them (``ddp_local_buffers``).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import collective
from ..errors import UserError
from .base import Method, full_precision, register_method

NCE_EPS = 1e-7


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (no eps, as the reference)."""
    return x / x.norm(p=2, dim=1, keepdim=True)


def nce_loss(h: torch.Tensor, num_samples: int) -> torch.Tensor:
    """l(h) for scores h (B, K + 1[, 1]) whose column 0 is the positive, with noise P_n = 1 / num_samples."""
    return nce_loss_log(torch.log(h), num_samples)


def nce_loss_log(log_h: torch.Tensor, num_samples: int) -> torch.Tensor:
    """l(h) from log h: with c = m P_n + eps, log(h_0 / (h_0 + c)) = log h_0 - logaddexp(log h_0, log c) and
    log(m P_n / (h_k + c)) = log(m P_n) - logaddexp(log h_k, log c): one fused pass over the B (K + 1) scores
    instead of an exp, two divisions, an addition and a log."""
    log_h = log_h.reshape(log_h.shape[0], -1)
    m_pn = (log_h.shape[1] - 1) / num_samples
    log_c = log_h.new_full((), math.log(m_pn + NCE_EPS))
    denom = torch.logaddexp(log_h, log_c)
    pos = log_h[:, 0] - denom[:, 0]
    neg = (math.log(m_pn) - denom[:, 1:]).sum(1)
    return -(pos + neg).mean()


def _workspace(store: dict, name: str, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor kept in ``store`` and reused while its shape, dtype and device stay the same. On a CPU every fresh
    multi-megabyte tensor costs its page faults again (glibc gives such blocks back to the system when they
    are freed): in a HAPT CRD step a fresh (B, K) buffer cost about 5 ms, its arithmetic under 1 ms."""
    buf = store.get(name)
    if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype or buf.device != device:
        buf = store[name] = torch.empty(tuple(shape), dtype=dtype, device=device)
    return buf


class _WholeBankNCE(torch.autograd.Function):
    """l(h) of one anchor side from the scores against every row of a detached bank, the contrast draws given as
    counts: x = v M^T - (log Z + log c) (B, N), so that log h - logaddexp(log h, log c) = x - softplus(x) and
    log(m P_n) - logaddexp(log h, log c) = log(m P_n) - log c - softplus(x); the loss is
    -(1/B) sum_b [x_{b,pos_b} - softplus(x_{b,pos_b}) + K (log(m P_n) - log c) - sum_j C_bj softplus(x_bj)]
    with C_bj the times row j was drawn as one of b's K negatives. Its gradient with respect to x is
    (1/B) [C sigmoid(x) - onehot(pos) (1 - sigmoid(x))], formed here, so that no (B, K + 1) or (B, N) tensor is
    kept for the backward (and the bank, updated in place after the loss, need not be copied)."""

    @staticmethod
    def forward(ctx, v, memory, pos, counts, shift, neg_const, work):
        """``work``: two (B, N) float32 tensors overwritten here (``_workspace``); nothing of them is kept."""
        b = v.shape[0]
        x, sp = work
        torch.mm(v, memory.t(), out=x).sub_(shift)
        x_pos = x.gather(1, pos.view(-1, 1)).squeeze(1)
        torch.logaddexp(x, x.new_zeros(()), out=sp)  # softplus(x) = log(1 + e^x), stable, into the workspace
        neg = torch.dot(counts.reshape(-1), sp.reshape(-1))
        loss = -((x_pos - torch.nn.functional.softplus(x_pos)).sum() + neg_const * b - neg) / b
        if ctx.needs_input_grad[0]:
            g = torch.sigmoid(x, out=sp).mul_(counts)
            g.scatter_add_(1, pos.view(-1, 1), (torch.sigmoid(x_pos) - 1.0).view(-1, 1))
            ctx.save_for_backward(torch.mm(g, memory).div_(b))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (grad_v,) = ctx.saved_tensors
        return grad_v * grad, None, None, None, None, None, None


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
        self._z_known = False
        self._work: dict = {}  # reused (B, N) tensors of the counted loss (``_workspace``); not state

    def _load_from_state_dict(self, *args, **kwargs):
        self._z_known = False  # a loaded Z may be unset again
        return super()._load_from_state_dict(*args, **kwargs)

    def contrast_indices(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(B, K + 1): each sample's own index, then K indices drawn uniformly from [0, N)."""
        neg = torch.randint(0, self.num_samples, (index.shape[0], self.k), generator=generator,
                            device="cpu").to(index.device)
        return torch.cat([index.view(-1, 1), neg], dim=1)

    def scores(self, v: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, K + 1, 1): exp(<memory[idx], v> / tau), the memory rows detached (not yet divided by Z)."""
        return torch.exp(self.log_scores(v, memory, idx))

    def log_scores(self, v: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, K + 1, 1): <memory[idx], v> / tau, the log of ``scores``."""
        memory, v = memory.detach(), v / self.tau  # 1 / tau on the (B, dim) side, not on the B (K + 1) scores
        if 16 * idx.shape[1] >= self.num_samples:  # every row's score at once, then the K + 1 wanted
            # (a copy: the product keeps the bank for the backward, and the bank is updated in place below)
            return (v @ memory.clone().t()).gather(1, idx).unsqueeze(2)
        return torch.bmm(memory[idx], v.unsqueeze(2))  # (B, K + 1, dim) x (B, dim, 1)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, index: torch.Tensor,
                contrast_index: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                scores: bool = True, negatives: Optional[torch.Tensor] = None):
        """(L_CRD, h_s, h_t); updates the memory banks (and Z on the first call). ``index``: (B,) int64, each
        sample's position in the train split; ``contrast_index`` (B, K + 1) overrides the uniform draw, and so
        does ``negatives`` (B, K), the draw without the sample's own column. Without ``scores`` h_s and h_t are
        None (not computed), and where the whole-bank product applies the loss is formed from the draws' counts
        (``_WholeBankNCE``: the same value and gradient, fewer passes over B (K + 1) numbers)."""
        if index.device.type == "cpu" and index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise IndexError(f"CRD sample indices must lie in [0, {self.num_samples}), got "
                             f"{int(index.min())}..{int(index.max())}")  # (not checked on a GPU: no sync per step)
        if negatives is None:
            idx = contrast_index if contrast_index is not None else self.contrast_indices(index, generator)
            pos, negatives = idx[:, 0], idx[:, 1:]
        else:
            idx, pos = None, index
        k = negatives.shape[1]
        with full_precision(f_s):
            v_s = _unit(self.embed_s(f_s.float().flatten(1)))
            v_t = _unit(self.embed_t(f_t.detach().float().flatten(1)))
            if scores or 16 * (k + 1) < self.num_samples:
                if idx is None:
                    idx = torch.cat([pos.view(-1, 1), negatives], dim=1)
                loss, h_s, h_t = self._gathered_loss(v_s, v_t, idx, scores)
            else:
                loss, h_s, h_t = self._counted_loss(v_s, v_t, pos, negatives), None, None
            with torch.no_grad():  # every rank's rows, so that the banks stay the same on every rank
                all_index = collective.all_gather_shards(index)
                every = collective.all_gather_shards(torch.cat([v_s, v_t], dim=1).detach())
                dim = v_s.shape[1]
                for memory, v in ((self.memory_s, every[:, :dim]), (self.memory_t, every[:, dim:])):
                    rows = memory[all_index] * self.momentum + v * (1 - self.momentum)
                    memory.index_copy_(0, all_index, _unit(rows))
        return loss, h_s, h_t

    def _set_z_once(self, means) -> None:
        """Z = N * the mean scores of the first (global) batch, ``means()`` -> (mean_s, mean_t), set once and kept;
        the buffer is read once per process (a device sync), not every step."""
        if self._z_known:
            return
        if self.z[0] < 0:
            with torch.no_grad():
                self.z.copy_(collective.all_reduce_mean(torch.stack(list(means()))) * self.num_samples)
        self._z_known = True

    def _gathered_loss(self, v_s, v_t, idx, scores: bool):
        log_s = self.log_scores(v_s, self.memory_t, idx)
        log_t = self.log_scores(v_t, self.memory_s, idx)
        self._set_z_once(lambda: (log_s.detach().exp().mean(), log_t.detach().exp().mean()))
        log_h_s, log_h_t = log_s - self.z[0].log(), log_t - self.z[1].log()
        loss = nce_loss_log(log_h_s, self.num_samples) + nce_loss_log(log_h_t, self.num_samples)
        return (loss, *((log_h_s.exp(), log_h_t.exp()) if scores else (None, None)))

    def _counted_loss(self, v_s, v_t, pos, negatives):
        b, k = negatives.shape
        shape, dev = (b, self.num_samples), v_s.device
        counts = _workspace(self._work, "counts", shape, torch.float32, dev).zero_()
        counts.scatter_add_(1, negatives, counts.new_ones(()).expand(b, k))
        work = (_workspace(self._work, "x", shape, torch.float32, dev), _workspace(self._work, "sp", shape, torch.float32, dev))
        v_s, v_t = v_s / self.tau, v_t / self.tau

        def drawn_means():  # the mean of exp(score) over the B (K + 1) drawn entries
            drawn = counts.clone().scatter_add_(1, pos.view(-1, 1), counts.new_ones(()).expand(b, 1))
            return [torch.mm(v.detach(), m.t()).exp_().mul_(drawn).sum() / (b * (k + 1))
                    for v, m in ((v_s, self.memory_t), (v_t, self.memory_s))]

        self._set_z_once(drawn_means)
        m_pn = k / self.num_samples
        log_c = math.log(m_pn + NCE_EPS)
        neg_const = k * (math.log(m_pn) - log_c)
        log_z = self.z.log()
        return (_WholeBankNCE.apply(v_s, self.memory_t, pos, counts, log_z[0] + log_c, neg_const, work)
                + _WholeBankNCE.apply(v_t, self.memory_s, pos, counts, log_z[1] + log_c, neg_const, work))


@register_method("crd")
class CRD(Method):
    """L = CE(z_s, y) + beta * L_CRD(embedding_s, embedding_t); built with ``train_labels`` (see distill.base)."""

    needs_index = True
    ddp_local_buffers = ("crd.memory_s", "crd.memory_t", "order", "others", "others_start")
    tune_space = {"distill.crd.beta": ("log", 0.2, 5.0), "distill.crd.tau": ("choice", [0.05, 0.07, 0.1, 0.2])}

    def __init__(self, student, teacher, cfg, *, train_labels=None):
        super().__init__(student, teacher, cfg)
        if train_labels is None:
            raise TypeError("CRD is built with train_labels=, the train split's labels (one per sample, in order)")
        labels = torch.as_tensor(train_labels).detach().long().cpu().flatten()
        classes = student.head.out_features
        count = torch.bincount(labels, minlength=classes)
        others = labels.numel() - count[count > 0]
        if labels.numel() < 2 or int(others.min()) < 1:
            raise UserError("method 'crd' needs train samples of at least 2 classes: its negatives are samples of "
                            "the other classes")
        c = cfg.crd
        self.crd = CRDLoss(student.head.in_features, self.teacher.head.in_features, labels.numel(), dim=c.dim,
                           k=min(c.k, int(others.min())), tau=c.tau, momentum=c.momentum)
        # the train samples sorted by class, twice over: class y's are order[start[y] : start[y] + count[y]], and
        # the N - count[y] others follow them: order[start[y] + count[y] : start[y] + N]
        order = torch.argsort(labels, stable=True)
        self.register_buffer("order", torch.cat([order, order]), persistent=False)
        self.register_buffer("others", labels.numel() - count, persistent=False)
        self.register_buffer("others_start", torch.cumsum(count, 0), persistent=False)
        self.generator = np.random.default_rng(0)  # replaced by the trainer's, every epoch
        self._uniforms: Optional[np.ndarray] = None
        self._work: dict = {}

    def start_epoch(self, epoch: int, seed: int) -> None:
        self.generator = np.random.default_rng(int(seed))

    def negatives(self, target: torch.Tensor) -> torch.Tensor:
        """(B, K): for each sample, K train indices of other classes, uniform with replacement (a new tensor;
        the training step uses ``_draw_negatives``, which fills a reused one)."""
        return self._draw_negatives(target).clone()

    def _draw_negatives(self, target: torch.Tensor) -> torch.Tensor:
        """``negatives`` into reused tensors (``_workspace``), valid until the next call. The uniforms (float64 in
        [0, 1), NumPy's PCG64, several times faster than torch's CPU generator) are drawn for the whole global
        batch on every rank and each rank keeps its rows (module docstring); floor(u n) < n for every u < 1
        and n < 2^52 in float64, so no clamp is needed; other-class position j of class y is entry
        others_start[y] + j of the class-sorted order written twice."""
        w, r, (b, k), dev = collective.world_size(), collective.rank(), (target.shape[0], self.crd.k), target.device
        at = torch.device("cpu") if dev.type == "mps" else dev  # (MPS has no float64: drawn on the CPU there)
        raw = self._uniforms
        if raw is None or raw.shape != (b * w, k):
            raw = self._uniforms = np.empty((b * w, k))
        self.generator.random(out=raw)
        y = target.to(at)
        u = torch.from_numpy(raw)[r::w].to(at)  # on a CPU the NumPy buffer itself, scaled in place below
        u.mul_(self.others.to(at)[y].unsqueeze(1).double())
        j = _workspace(self._work, "j", (b, k), torch.long, at)
        j.copy_(u).add_(self.others_start.to(at)[y].unsqueeze(1))
        out = _workspace(self._work, "negatives", (b, k), torch.long, at)
        torch.index_select(self.order.to(at), 0, j.view(-1), out=out.view(-1))
        return out.to(dev)

    def forward(self, inputs, target, teacher_out=None, index=None):
        if index is None:
            raise TypeError("CRD's forward needs index=, each sample's position in the train split")
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        loss, _, _ = self.crd(out.embedding, t_out.embedding, index, negatives=self._draw_negatives(target),
                              scores=False)
        return out.logits, {"ce": self.ce(out.logits, target), "crd": self.cfg.crd.beta * loss}


__all__ = ["CRD", "CRDLoss", "nce_loss", "nce_loss_log"]

"""Discrepancy-aware distillation (DAD): match the teacher's inter-sample structure.

``distill.dad_relation=distance`` (the default; ``distance_loss``): the pairwise Euclidean distances over their
mean, Huber_1 between student and teacher, as RKD's distance term, by default on the pooled feature
(``distill.dad_features=embedding``). ``similarity`` (the authors' code): the similarity-preserving loss (Tung &
Mori 2019), on the trunk features at two depths (f3, f4; ``dad_features=trunk``, their face code) or on the pooled
feature (their action code). For one depth with features f (B x D, flattened per sample): G = f f^T, each row of
G scaled to unit L2 norm, and

    L = mean_{i,j} (G^s_ij - G^t_ij)^2          (``batch``: the whole mini-batch)
    L = sum_{ij} M_ij (G^s_ij - G^t_ij)^2 / sum M   (``local``)

where for ``local`` M_ij = 1 when j is one of the k nearest neighbours of i in the teacher's
feature space (Euclidean, i itself excluded): only local inter-sample distances are matched.
The losses of the two depths are summed. Row normalisation makes L invariant to the scale of f.

``distill.dad_angle`` (default 0: off) adds RKD's angle term on the same features with that weight, as the term
``dad_angle`` (``dad_terms``): with the distance relation on the embedding and weights 25 / 50, DAD is RKD.

Global batch (``distill.dad_global``; "auto" = on when the job has more than one process): under
``torchrun`` each rank holds a shard of the global batch; the student features of all ranks are
gathered with gradient and the teacher's without (``mmhal.collective.all_gather_rows``), so every rank
computes the same L over the global batch, as one process would. The gather's backward sums the
gradient of every rank's (identical) loss into the rows' owner, which DDP's averaging turns back into
the gradient of L (see ``mmhal.collective``). Off, each rank's L compares only its own shard.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import collective
from .base import Method, full_precision, register_method


def similarity(f: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gram matrix of (B, ...) features, computed in fp32."""
    with full_precision(f):
        f = f.float().flatten(1)
        return F.normalize(f @ f.t(), p=2, dim=1)


def knn_mask(t_feat: torch.Tensor, k: int) -> torch.Tensor:
    """(B, B) 0/1 mask: M_ij = 1 when j is among the k nearest neighbours of i (teacher space, i excluded)."""
    f = t_feat.float().flatten(1)
    b = f.shape[0]
    k = max(1, min(k, b - 1))
    with full_precision(f):
        dist = torch.cdist(f, f)
    dist.fill_diagonal_(float("inf"))
    idx = dist.topk(k, dim=1, largest=False).indices
    return torch.zeros(b, b, device=f.device).scatter_(1, idx, 1.0)


def _over_pairs(entries: torch.Tensor, t_feat: torch.Tensor, variant: str, k: int) -> torch.Tensor:
    """The mean of the (B, B) per-pair ``entries`` over every pair (``batch``) or over each sample's k nearest
    neighbours in the teacher's feature space ``t_feat`` (``local``, ``knn_mask``)."""
    if variant == "batch":
        return entries.mean()
    if variant == "local":
        mask = knn_mask(t_feat.detach(), k)
        return (entries * mask).sum() / mask.sum()
    raise ValueError(f"unknown DAD variant '{variant}'")


def sp_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, variant: str = "batch", k: int = 8) -> torch.Tensor:
    """Similarity-preserving loss between student and teacher features of one depth."""
    return _over_pairs((similarity(s_feat) - similarity(t_feat).detach()) ** 2, t_feat, variant, k)


def distance_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, variant: str = "batch", k: int = 8) -> torch.Tensor:
    """Distance-preserving loss between student and teacher features of one depth: Huber_1(psi^s_ij - psi^t_ij)
    with psi the pairwise Euclidean distances of the flattened features divided by their mean off the diagonal
    (RKD's distance potential, ``distill.rkd``), averaged over the B^2 entries (``batch``; on pooled embeddings
    this is RKD's distance term L_D) or over the teacher's k nearest neighbours of each sample (``local``)."""
    from .rkd import _distance_potential  # rkd imports this module

    with full_precision(s_feat):
        psi_s = _distance_potential(s_feat.float().flatten(1))
        psi_t = _distance_potential(t_feat.detach().float().flatten(1))
        h = F.smooth_l1_loss(psi_s, psi_t, reduction="none", beta=1.0)
    return _over_pairs(h, t_feat, variant, k)


#: distill.dad_relation -> the loss of one depth
RELATIONS = {"similarity": sp_loss, "distance": distance_loss}


def global_batch(cfg) -> bool:
    """Whether DAD and the other batch-relational losses (SP, PKT, RKD) gather the features of every rank
    (``cfg.dad_global``: auto | true | false)."""
    mode = str(getattr(cfg, "dad_global", "auto")).lower()
    return mode in ("auto", "true") and collective.world_size() > 1


def relational_pair(cfg, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher features of the batch a relational loss compares: this rank's rows, or under
    ``torchrun`` with ``global_batch(cfg)`` every rank's (the student's with gradient, the teacher's without),
    so that SP, PKT and RKD see the single-process batch, as DAD does."""
    if not global_batch(cfg):
        return s, t.detach()
    return collective.all_gather_rows(s), collective.all_gather_rows(t.detach())


def dad_loss(s_feats, t_feats, variant: str = "batch", k: int = 8, gather: bool = False,
             relation: str = "similarity") -> torch.Tensor:
    """Sum over the paired depths of the ``relation``'s loss (``sp_loss`` or ``distance_loss``); with ``gather``,
    over the global batch of all ranks."""
    loss = RELATIONS[relation]
    return sum(loss(s, t, variant, k) for s, t in _paired_depths(s_feats, t_feats, gather))


def _paired_depths(s_feats, t_feats, gather: bool):
    """(student, teacher) features of each depth; with ``gather``, the global batch of all ranks (the student's rows
    with gradient, the teacher's without)."""
    if gather:
        s_feats = [collective.all_gather_rows(s) for s in s_feats]
        t_feats = [collective.all_gather_rows(t.detach()) for t in t_feats]
    return zip(s_feats, t_feats)


def dad_features(cfg, out) -> list:
    """What DAD compares of a network output: its trunk maps [f3, f4] (``distill.dad_features=trunk``) or its
    pooled embedding alone (``embedding``)."""
    return [out.embedding] if getattr(cfg, "dad_features", "trunk") == "embedding" else out.features


def dad_term(cfg, out, t_out) -> torch.Tensor:
    """lambda_DAD * L_DAD of a student output ``out`` against the teacher's ``t_out``, as ``cfg`` says."""
    return cfg.dad_lambda * dad_loss(dad_features(cfg, out), dad_features(cfg, t_out), cfg.dad_variant, cfg.dad_k,
                                     global_batch(cfg), getattr(cfg, "dad_relation", "similarity"))


def dad_angle_loss(s_feats, t_feats, gather: bool = False) -> torch.Tensor:
    """Sum over the paired depths of RKD's angle term (Huber_1 between the cosines of the angle every triple of
    samples forms, ``distill.rkd``) on the flattened features, over the whole batch (the ``local`` variant does not
    restrict it); with ``gather``, over the global batch of all ranks."""
    from .rkd import rkd_angle  # rkd imports this module

    return sum(rkd_angle(s, t) for s, t in _paired_depths(s_feats, t_feats, gather))


def dad_terms(cfg, out, t_out) -> dict:
    """The loss terms DAD adds to a student's loss: ``dad`` (``dad_term``) and, where ``distill.dad_angle`` > 0,
    ``dad_angle`` = dad_angle * RKD's angle term on the same features (``dad_angle_loss``)."""
    terms = {"dad": dad_term(cfg, out, t_out)}
    w = float(getattr(cfg, "dad_angle", 0.0))
    if w > 0:
        terms["dad_angle"] = w * dad_angle_loss(dad_features(cfg, out), dad_features(cfg, t_out), global_batch(cfg))
    return terms


@register_method("dad")
class DAD(Method):
    """L = CE(z_s, y) + lambda_DAD * L_DAD."""

    tune_space = {"distill.dad_lambda": ("log", 10.0, 1000.0), "distill.dad_variant": ("choice", ["batch", "local"]),
                  "distill.dad_angle": ("choice", [0.0, 50.0])}

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        return out.logits, {"ce": self.ce(out.logits, target), **dad_terms(self.cfg, out, t_out)}

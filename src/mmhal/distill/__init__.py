"""Distillation methods, found by name in ``METHODS``; importing this package registers them all.

MMH's own: ``kd`` (Hinton), ``rad``, ``dad``, ``mmh`` (and the ensembles in ``ENSEMBLES``). The field's
baselines, each one module: ``fitnet``, ``at``, ``sp``, ``pkt``, ``rkd``, ``crd``, ``dkd``, ``mars``, ``hallucination``.

``build_method`` builds any of them for the trainer (it hands CRD the train split's labels).
"""
from . import at, crd, dad, dkd, fitnet, hallucination, kd, mars, mmh, pkt, rad, rkd, sp  # noqa: F401  (registration)
from .base import METHODS, Method, build_method, full_precision, kl_at_temperature, register_method
from .dad import dad_loss, sp_loss
from .mmh import ENSEMBLES, member_job
from .rad import rad_loss, region_weights

__all__ = [
    "METHODS", "Method", "build_method", "register_method", "full_precision", "kl_at_temperature", "rad_loss", "region_weights",
    "dad_loss", "sp_loss", "ENSEMBLES", "member_job",
]

"""Distillation methods, found by name in ``METHODS``; importing this package registers them all.

MMH's own: ``kd`` (Hinton), ``rad``, ``dad``, ``mmh`` (and the ensembles in ``ENSEMBLES``). The field's
baselines, each one module: ``fitnet``, ``at``, ``sp``, ``pkt``, ``rkd``, ``dkd``, ``mars``, ``hallucination``.
"""
from . import at, dad, dkd, fitnet, hallucination, kd, mars, mmh, pkt, rad, rkd, sp  # noqa: F401  (registration)
from .base import METHODS, Method, full_precision, kl_at_temperature, register_method
from .dad import dad_loss, sp_loss
from .mmh import ENSEMBLES
from .rad import rad_loss, region_weights

__all__ = [
    "METHODS", "Method", "register_method", "full_precision", "kl_at_temperature", "rad_loss", "region_weights",
    "dad_loss", "sp_loss", "ENSEMBLES",
]

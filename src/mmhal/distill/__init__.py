"""Distillation methods, found by name in ``METHODS``; importing this package registers them all."""
from . import dad, kd, mmh, rad  # noqa: F401  (registration)
from .base import METHODS, Method, full_precision, kl_at_temperature, register_method
from .dad import dad_loss, sp_loss
from .mmh import ENSEMBLES
from .rad import rad_loss, region_weights

__all__ = [
    "METHODS", "Method", "register_method", "full_precision", "kl_at_temperature", "rad_loss", "region_weights",
    "dad_loss", "sp_loss", "ENSEMBLES",
]

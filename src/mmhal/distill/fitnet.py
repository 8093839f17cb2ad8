"""FitNet (Romero et al. 2015): the student's f3 regresses the teacher's f3 through a trained regressor.

    L = CE(z_s, y) + beta * mean over all B * C * |grid| elements of (R(f3_s) - f3_t)^2

R ("ConvReg" of the CIFAR distillation zoos) is a 1x1 convolution of the grid's rank (a Linear layer for
vector features) from the student's to the teacher's channels, then BatchNorm, then ReLU: teacher and
student f3 have the same shape in mmhal, so the zoos' kernel rule gives 1x1. The teacher's hint is taken
after its ReLU (every trunk stage ends in one), which R's final ReLU can reach. ``distill.fitnet.regressor
=none`` drops R (the regressor-free variant of the authors' face code; then FitNet is MARS on f3).

R belongs to the method (``method.regressor``): the optimizer trains it with the student and the epoch
checkpoint holds it; it is not part of the saved student and costs nothing at test time. Training is
one stage (hint and CE together), as in both zoos, not the original two-stage schedule. Default beta 100
(the zoos' CIFAR value); MSE scales with the feature magnitude, so tune it per architecture.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import conv, norm
from .base import Method, full_precision, register_method


def conv_regressor(dims: int, c_in: int, c_out: int) -> nn.Module:
    """R: 1x1 convolution (with bias) over a grid of rank ``dims`` (Linear for 0), BatchNorm, ReLU."""
    return nn.Sequential(conv(dims, c_in, c_out, 1, bias=True), norm(dims, c_out), nn.ReLU())


def hint_loss(s_feat: torch.Tensor, t_feat: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over all elements, in fp32; the teacher's hint carries no gradient."""
    with full_precision(s_feat):
        return F.mse_loss(s_feat.float(), t_feat.detach().float())


@register_method("fitnet")
class FitNet(Method):
    """L = CE(z_s, y) + beta * MSE(R(f3_s), f3_t)."""

    tune_space = {"distill.fitnet.beta": ("log", 10.0, 1000.0)}

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher, cfg)
        self.regressor = None
        if cfg.fitnet.regressor == "conv":
            self.regressor = conv_regressor(student.dims, f3_channels(student), f3_channels(self.teacher))

    def forward(self, inputs, target, teacher_out=None):
        t_out = self.teacher_forward(inputs, teacher_out)
        out = self.student(inputs)
        hint = out.features[0]
        if self.regressor is not None:
            hint = self.regressor(hint)
        return out.logits, {"ce": self.ce(out.logits, target),
                            "fitnet": self.cfg.fitnet.beta * hint_loss(hint, t_out.features[0])}


def f3_channels(net: nn.Module) -> int:
    """Channels of a network's f3: the width of the last BatchNorm in its third trunk stage (``stage3`` of
    the small network, ``layer3`` of ResNet-18); a late-fusion teacher's f3 is its members' mean, of their width."""
    members = getattr(net, "members", None)
    if members is not None and len(members):
        return f3_channels(next(iter(members.values())))
    if hasattr(net, "feature_channels"):  # the small network states them (its MLP for vectors has no stage3 layer)
        return net.feature_channels[0]
    stage = getattr(net, "stage3", None) or getattr(net, "layer3", None)
    norms = [m for m in stage.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if stage is not None else []
    if not norms:
        raise TypeError(f"FitNet cannot find the stage that computes f3 in a {type(net).__name__}")
    return norms[-1].num_features

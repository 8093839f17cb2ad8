"""``model.backbone=tmm-face``: the face anti-spoofing network of the authors' code (TMM-MMH), for images.

    x_m --norm_m--> stem_m: conv1 3x3 s2 (64) BN ReLU, max-pool, layer1, layer2 (128), SE (r 16)
        --(to the trunk grid)--> concat (128 M) --> layer3 (128 M -> 256, s2) --> layer4 (512)
                                                     |f3 256                 |f4 512
                                                                          pool -> head -> [dropout on the logits]

As their ``models/resnet18_se.py`` / ``surf_patch_spp.py`` / ``resnet_se_spp.py`` (``../shared/research/
FAITHFULNESS_AUDIT.md`` 1.1; ``docs/faithfulness.md``): one squeeze-excitation per stem, after layer2, and none in
the residual blocks; a 3x3 first convolution; the concatenated stems go straight into layer3 (its first block
takes 128 M channels, with a 1x1 projection on the shortcut), with no fusion SE and no 1x1 layer, so the
one-modality student's layer3 takes 128 channels; dropout (``model.dropout``; theirs 0.5) on the **logits**,
in training only; the regions of RAD go through the head without it, as theirs. Input 112x112 gives layer3
7x7 and layer4 4x4. Their teachers' depth stem shares the IR stem's layers (a defect of their code,
FAITHFULNESS_AUDIT 1.1); here every stem has its own. Blocks are torchvision's ``BasicBlock`` with torchvision's
initialisation; no pretrained weights (the authors train from scratch).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .layers import SqueezeExcite
from .network import NetOutput, NetworkBase, Normalizer
from .resnet import STEM_CHANNELS, ResNetStem, resnet_layer

SE_REDUCTION = 16


class TMMFaceStem(ResNetStem):
    """(B, C, H, W) -> (B, 128, ~H/8, ~W/8): the ResNet-18 stem with a 3x3 conv1 and no SE in its blocks, then one
    SE over layer2's output."""

    def __init__(self, channels: int):
        super().__init__(channels, se=False, conv1_kernel=3)
        self.se = SqueezeExcite(STEM_CHANNELS, SE_REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(super().forward(x))


class TMMFaceNet(NetworkBase):
    """The authors' face network over ``modalities`` (a subset of ``spec``): per-stem SE, concat, layer3, layer4."""

    def __init__(self, spec: dict[str, tuple[int, ...]], modalities: Sequence[str], num_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        self.modalities = list(modalities)
        for m in self.modalities:
            if len(spec[m]) != 3:
                raise UserError(f"model.backbone=tmm-face is for images (C, H, W) but modality '{m}' has per-sample "
                                f"shape {tuple(spec[m])}; use model.backbone=small")
        outs = [TMMFaceStem.out_spatial(s) for s in spec.values() if len(s) == 3]
        self.dims = 2
        self.grid = tuple(min(o[i] for o in outs) for i in range(2))
        self.norms = nn.ModuleDict({m: Normalizer(spec[m][0], 3) for m in self.modalities})
        self.stems = nn.ModuleDict({m: TMMFaceStem(spec[m][0]) for m in self.modalities})
        self.layer3 = resnet_layer(STEM_CHANNELS * len(self.modalities), 256, 2, se=False)
        self.layer4 = resnet_layer(256, 512, 2, se=False)
        self.head = nn.Linear(512, num_classes)
        self.logit_dropout = dropout

    def forward(self, inputs: dict[str, torch.Tensor]) -> NetOutput:
        parts = []
        for m in self.modalities:
            z = self.stems[m](self.norms[m](inputs[m]))
            parts.append(z if tuple(z.shape[2:]) == self.grid else F.adaptive_avg_pool2d(z, self.grid))
        f3 = self.layer3(torch.cat(parts, dim=1))
        f4 = self.layer4(f3)
        emb = f4.mean(dim=(2, 3))
        logits = F.dropout(self.head(emb), self.logit_dropout, self.training)
        return NetOutput(logits, [f3, f4], emb)


def build_tmm_face(spec, modalities, num_classes, model_cfg) -> TMMFaceNet:
    """The ``tmm-face`` backbone from ``model.*`` settings; settings of the other backbones are refused."""
    unsupported = [key for key, off in (("weights", ""), ("se", False)) if getattr(model_cfg, key, off) != off]
    if unsupported:
        raise UserError(f"model.{', model.'.join(unsupported)} do not apply to model.backbone=tmm-face (the authors' "
                        "network has one SE per stem and trains from scratch)")
    return TMMFaceNet(spec, modalities, num_classes, dropout=getattr(model_cfg, "dropout", 0.0))

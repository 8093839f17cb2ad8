"""``model.backbone=resnet18``: torchvision's ResNet-18 (optionally ResNet-18-SE) as stems and trunk, for images.

    x_m --norm_m--> stem_m: conv1 bn1 relu maxpool layer1 layer2 (128 channels, H/8 x W/8)
        --(to the trunk grid)--> concat (128 M) --SE--> 1x1 conv BN ReLU (128) --> layer3 --> layer4
                                                                                  |f3 256   |f4 512
                                                                                        pool -> [dropout] -> head

Every stem and the trunk use torchvision's ``BasicBlock`` and keep torchvision's module names, so a stem's
state dict reads ``stems.<m>.conv1.weight``, ``stems.<m>.layer2.0.downsample.0.weight``, ... and the trunk's
``layer3.*``, ``layer4.*``: ImageNet weights map onto them by name (``load_pretrained``). With ``se`` every
block gets a squeeze-excitation on its residual branch (Hu et al. 2018, reduction 16; ``SEBasicBlock``), whose
layers stay freshly initialised when weights are loaded. The fusion (SE over the concatenation, then a 1x1
projection to 128 channels) makes the trunk of a one-modality student the same as the teacher's, so their
feature maps have identical shapes. ``model.width`` and ``model.blocks`` do not apply here; the fusion SE
uses ``model.se_reduction``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from ..errors import UserError
from .layers import SqueezeExcite, halve, read_state_dict
from .network import StemFusionNet

#: torchvision resnet18 layers a stem takes, and those the trunk takes (``fc`` is never loaded).
STEM_LAYERS = ("conv1", "bn1", "layer1", "layer2")
TRUNK_LAYERS = ("layer3", "layer4")
STEM_CHANNELS = 128
BLOCK_SE_REDUCTION = 16


class SEBasicBlock(BasicBlock):
    """torchvision's BasicBlock with a squeeze-excitation on the residual branch before the addition.

    The block's own modules keep their names (conv1, bn1, conv2, bn2, downsample), so pretrained weights load;
    ``se`` is extra."""

    def __init__(self, inplanes: int, planes: int, *args, **kwargs):
        super().__init__(inplanes, planes, *args, **kwargs)
        self.se = SqueezeExcite(planes * self.expansion, BLOCK_SE_REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


def _init(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan-out) convolutions, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet_layer(cin: int, cout: int, stride: int, se: bool, blocks: int = 2) -> nn.Sequential:
    """One ResNet-18 stage (``layerN``): ``blocks`` basic blocks, the first with a 1x1 projection if needed."""
    block = SEBasicBlock if se else BasicBlock
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    layer = nn.Sequential(block(cin, cout, stride, down), *[block(cout, cout) for _ in range(blocks - 1)])
    _init(layer)
    return layer


class ResNetStem(nn.Module):
    """(B, C, H, W) -> (B, 128, ~H/8, ~W/8): ResNet-18 conv1 (``conv1_kernel`` x ``conv1_kernel``, stride 2), bn1,
    relu, maxpool, layer1, layer2."""

    def __init__(self, channels: int, se: bool = False, conv1_kernel: int = 7):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, conv1_kernel, 2, conv1_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        _init(self)
        self.layer1 = resnet_layer(64, 64, 1, se)
        self.layer2 = resnet_layer(64, STEM_CHANNELS, 2, se)

    @staticmethod
    def out_spatial(shape: Sequence[int]) -> tuple[int, int]:
        """conv1, max-pool and layer2 each halve (rounding up)."""
        return halve(shape[1], 3), halve(shape[2], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer2(self.layer1(x))


class ResNet18Net(StemFusionNet):
    """Image stems for ``modalities`` (a subset of ``spec``), concat + SE + 1x1 fusion, ResNet-18 layer3/layer4."""

    def __init__(
        self,
        spec: dict[str, tuple[int, ...]],
        modalities: Sequence[str],
        num_classes: int,
        se: bool = False,
        dropout: float = 0.0,
        se_reduction: int = 16,
    ):
        super().__init__()
        self._build(spec, modalities, num_classes, backbone="resnet18", sample_dims=3,
                    stem=lambda c: ResNetStem(c, se), out_spatial=ResNetStem.out_spatial, channels=STEM_CHANNELS,
                    trunk=lambda: (resnet_layer(STEM_CHANNELS, 256, 2, se), resnet_layer(256, 512, 2, se)),
                    out_channels=512, dropout=dropout, se_reduction=se_reduction, init=_init,
                    other="model.backbone=small")


def adapt_conv1(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """ImageNet conv1 kernel (64, 3, k, k) -> (64, C, k, k).

    C = 3: unchanged. Otherwise every input channel gets the RGB kernel summed over its three channels divided
    by C (average over RGB, repeated C times, scaled by 3 / C); for C = 1 (depth, IR) this is the sum over RGB.
    An input whose C channels are all equal to a grey image g then responds as the RGB network does to g."""
    if channels == weight.shape[1]:
        return weight
    return (weight.sum(dim=1, keepdim=True) / channels).expand(-1, channels, -1, -1).clone()


def _reference_shapes() -> dict[str, torch.Size]:
    """Names and shapes of torchvision resnet18's state dict (built on the meta device: no memory, no init)."""
    from torchvision.models import resnet18

    with torch.device("meta"):
        return {k: v.shape for k, v in resnet18().state_dict().items()}


def read_resnet18_weights(path: str, sha256: str = "") -> dict[str, torch.Tensor]:
    """A local torchvision resnet18 state dict, checked (SHA-256 first when given, then names and shapes)."""
    sd = read_state_dict(path, sha256, "resnet18")
    ref = _reference_shapes()
    bad = [k for k, s in ref.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
           and (k not in sd or tuple(sd[k].shape) != tuple(s))]
    bad += [k for k in sd if k not in ref]
    if bad:
        raise UserError(
            f"model.weights {path} is not a torchvision resnet18 state dict ({len(bad)} tensors missing, "
            f"unexpected or of another shape, e.g. '{bad[0]}')"
        )
    return sd


@torch.no_grad()
def load_pretrained(net: ResNet18Net, path: str, sha256: str = "") -> int:
    """Copy ImageNet resnet18 weights into ``net``: every stem gets conv1 (adapted to its channel count,
    ``adapt_conv1``), bn1, layer1, layer2; the trunk gets layer3, layer4. The fusion, the SE layers and the head
    stay as initialised. The names of the loaded parameters are added to ``net.pretrained_names``.
    Returns the number of tensors loaded (parameters and BN buffers)."""
    sd = read_resnet18_weights(path, sha256)
    params = dict(net.named_parameters())
    targets: list[tuple[str, str]] = []  # (name in net, name in the file)
    for m in net.modalities:
        targets += [(f"stems.{m}.{k}", k) for k in net.stems[m].state_dict() if k.split(".")[0] in STEM_LAYERS]
    targets += [(k, k) for k in net.state_dict() if k.split(".")[0] in TRUNK_LAYERS]
    own = net.state_dict(keep_vars=True)
    count = 0
    for name, src in targets:
        if src not in sd:  # an SE layer (not in resnet18), or num_batches_tracked absent from older files
            continue
        value = sd[src]
        if src == "conv1.weight":
            value = adapt_conv1(value, own[name].shape[1])
        own[name].copy_(value)
        count += 1
        if name in params:
            net.pretrained_names.add(name)
    net.pretrained_loaded = count
    return count


def build_resnet18(spec, modalities, num_classes, model_cfg) -> ResNet18Net:
    """The ``resnet18`` backbone from ``model.*`` settings (loads ``model.weights`` when set)."""
    net = ResNet18Net(
        spec, modalities, num_classes, se=model_cfg.se, dropout=model_cfg.dropout,
        se_reduction=model_cfg.se_reduction,
    )
    net.pretrained_lr_mult = float(model_cfg.pretrained_lr_mult)
    if model_cfg.weights:
        load_pretrained(net, model_cfg.weights, model_cfg.weights_sha256)
    return net

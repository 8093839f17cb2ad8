"""``model.backbone=r3d18`` and ``r2plus1d18``: torchvision's 3D video ResNets as stems and trunk, for clips.

    x_m (B, C_m, T, H, W) --norm_m--> stem_m: stem, layer1, layer2 (128 channels, ~T/2 x H/4 x W/4)
        --(to the trunk grid)--> concat (128 M) --SE--> 1x1x1 conv BN ReLU (128) --> layer3 --> layer4
                                                                                     |f3 256   |f4 512
                                                                        pool over (T', H', W') -> [dropout] -> head

Time is kept everywhere (unlike the ``clip`` stem of the small network): f3 and f4 are 5-D maps
(B, C, T', H', W'). torchvision strides time by 2 in layer2, layer3 and layer4 as it strides space, so a
16x112x112 clip gives stem outputs 8x28x28, f3 4x14x14 and f4 2x7x7; an 8-frame clip f3 2x14x14, f4 1x7x7.

``r3d18`` is R3D-18 (full 3x3x3 convolutions, torchvision ``r3d_18``); ``r2plus1d18`` is R(2+1)D-18 (every 3x3x3
convolution factorised into a 1x3x3 spatial and a 3x1x1 temporal one, torchvision ``r2plus1d_18``). Both are
built here from torchvision's own video blocks (``BasicBlock``, ``Conv3DSimple``, ``Conv2Plus1D``) and keep
torchvision's module names, so a stem's state dict reads ``stems.<m>.stem.0.weight``,
``stems.<m>.layer2.0.downsample.0.weight``, ... and the trunk's ``layer3.*``, ``layer4.*``: a LOCAL torchvision
state dict of ``r3d_18`` / ``r2plus1d_18`` (e.g. the Kinetics-400 files) maps onto them by name
(``load_video_pretrained``; nothing is ever downloaded, ``fc`` is never loaded). A stem whose modality has
another channel count than 3 (depth 1, optical flow 2) gets the first convolution adapted by
``adapt_input_conv``: the RGB kernel averaged over its 3 input channels, repeated C times and scaled by 3 / C.

As in ``models.resnet``, the trunk grid is the smallest stem output over every clip modality in the data, so
the teacher and every student built from the same data spec have identical f3/f4 shapes; the fusion SE uses
``model.se_reduction``; ``model.se`` adds a squeeze-excitation (reduction 16) to every residual block;
``model.dropout`` drops the pooled feature before the head; ``model.width`` and ``model.blocks`` do not apply.

Region pyramid (RAD). By default ``region_logits`` averages time away before the spatial pyramid, as the
authors' action code does (SPP3D: adaptive pools to (1,4,4), (1,2,2), (1,1,1) = 21 regions for levels 4, 2, 1);
``region_pool_time=False`` keeps time and pools cubic regions (lv, lv, lv) over (T', H', W') instead
(4^3 + 2^3 + 1 = 73 regions; where T' < lv, adaptive pooling repeats frames). ``region_dims`` says which
(2 or 3): the dimensionality of the region grid, which can differ from ``fmap.dim() - 2``.

``LateFusionNet`` is the authors' action teacher: one unimodal network per modality, logits and features
averaged (see its docstring for why f4 is concatenated rather than averaged).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple

from ..errors import UserError
from .layers import SqueezeExcite, halve, read_state_dict
from .network import NetOutput, NetworkBase, Normalizer, StemFusionNet

#: model.backbone -> (torchvision builder name, 3D convolution of the residual blocks)
ARCHS: dict[str, tuple[str, type]] = {"r3d18": ("r3d_18", Conv3DSimple), "r2plus1d18": ("r2plus1d_18", Conv2Plus1D)}
#: torchvision video-ResNet layers a stem takes, and those the trunk takes (``fc`` is never loaded).
STEM_LAYERS = ("stem", "layer1", "layer2")
TRUNK_LAYERS = ("layer3", "layer4")
FIRST_CONV = "stem.0.weight"  # the only tensor whose shape depends on the modality's channel count
BLOCK_SE_REDUCTION = 16


def _init(module: nn.Module) -> None:
    """torchvision's VideoResNet initialisation: Kaiming-normal (fan-out) 3D convolutions, BN weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def video_stem(arch: str, channels: int, width: int = 64) -> nn.Sequential:
    """torchvision's stem for ``arch`` over ``channels`` input channels (``width`` = 64 is torchvision's).

    r3d18: 3x7x7 conv, stride (1, 2, 2) (``BasicStem``); r2plus1d18: 1x7x7 conv to 45 channels, then 3x1x1 conv
    (``R2Plus1dStem``). Time is never strided here."""
    if arch == "r3d18":
        layers = [nn.Conv3d(channels, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(width),
                  nn.ReLU(inplace=True)]
    else:
        mid = max(1, width * 45 // 64)
        layers = [nn.Conv3d(channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid),
                  nn.ReLU(inplace=True), nn.Conv3d(mid, width, (3, 1, 1), 1, (1, 0, 0), bias=False),
                  nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
    stem = nn.Sequential(*layers)
    _init(stem)
    return stem


class SEVideoBlock(BasicBlock):
    """torchvision's video BasicBlock with a squeeze-excitation on the residual branch before the addition.

    The block's own modules keep their names (conv1, conv2, downsample), so pretrained weights load; ``se`` is
    extra and stays freshly initialised."""

    def __init__(self, inplanes: int, planes: int, conv_builder, stride: int = 1, downsample=None):
        super().__init__(inplanes, planes, conv_builder, stride, downsample)
        self.se = SqueezeExcite(planes, BLOCK_SE_REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.se(self.conv2(self.conv1(x)))
        return self.relu(out + identity)


def video_layer(conv_builder: type, cin: int, cout: int, stride: int, se: bool, blocks: int = 2) -> nn.Sequential:
    """One video-ResNet-18 stage (``layerN``): ``blocks`` basic blocks; a stride-2 stage halves T, H and W."""
    block = SEVideoBlock if se else BasicBlock
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(
            nn.Conv3d(cin, cout, 1, conv_builder.get_downsample_stride(stride), bias=False), nn.BatchNorm3d(cout)
        )
    layer = nn.Sequential(block(cin, cout, conv_builder, stride, down),
                          *[block(cout, cout, conv_builder) for _ in range(blocks - 1)])
    _init(layer)
    return layer


class VideoStem(nn.Module):
    """(B, C, T, H, W) -> (B, 2 width, ~T/2, ~H/4, ~W/4): torchvision's stem, layer1 and layer2; time is kept."""

    def __init__(self, arch: str, channels: int, se: bool = False, width: int = 64):
        super().__init__()
        conv_builder = ARCHS[arch][1]
        self.stem = video_stem(arch, channels, width)
        self.layer1 = video_layer(conv_builder, width, width, 1, se)
        self.layer2 = video_layer(conv_builder, width, 2 * width, 2, se)

    @staticmethod
    def out_spatial(shape: Sequence[int]) -> tuple[int, int, int]:
        """(T', H', W') of the output for a clip of per-sample shape (C, T, H, W): layer2 halves T (rounding up);
        the stem and layer2 each halve H and W."""
        return halve(shape[1], 1), halve(shape[2], 2), halve(shape[3], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.stem(x)))


class VideoNet(StemFusionNet):
    """Clip stems for ``modalities`` (a subset of ``spec``), concat + SE + 1x1x1 fusion, video-ResNet layer3/layer4.

    ``width`` = 64 is torchvision's (stem outputs 2 width = 128 channels, f3 256, f4 512); only that width can
    load pretrained weights, smaller ones are for tests. ``region_pool_time``: see the module docstring."""

    def __init__(
        self,
        spec: dict[str, tuple[int, ...]],
        modalities: Sequence[str],
        num_classes: int,
        arch: str = "r3d18",
        se: bool = False,
        dropout: float = 0.0,
        se_reduction: int = 16,
        region_pool_time: bool = True,
        width: int = 64,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"unknown video backbone '{arch}'; known: {', '.join(ARCHS)}")
        self.arch = arch
        self.region_pool_time = bool(region_pool_time)
        self.region_dims = 2 if self.region_pool_time else 3
        c, conv_builder = 2 * width, ARCHS[arch][1]
        self._build(spec, modalities, num_classes, backbone=arch, sample_dims=4,
                    stem=lambda ch: VideoStem(arch, ch, se, width), out_spatial=VideoStem.out_spatial, channels=c,
                    trunk=lambda: (video_layer(conv_builder, c, 2 * c, 2, se), video_layer(conv_builder, 2 * c, 4 * c, 2, se)),
                    out_channels=4 * c, dropout=dropout, se_reduction=se_reduction, init=_init,
                    other="model.backbone=small or resnet18")

    def region_logits(self, fmap: torch.Tensor, levels: Sequence[int], **how) -> torch.Tensor:
        """(B, C, T', H', W') -> (B, R, K). With ``region_pool_time`` time is averaged first, then the spatial
        pyramid (R = sum lv^2, 21 for levels 4, 2, 1); without it the pyramid is cubic (R = sum lv^3). ``how``:
        ``NetworkBase.region_logits``'s options."""
        if self.region_pool_time and fmap.dim() == 5:
            fmap = fmap.mean(dim=2)
        return super().region_logits(fmap, levels, **how)


def adapt_input_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A pretrained first-convolution kernel (out, 3, *k) over RGB -> (out, C, *k) for a C-channel modality.

    C = 3: unchanged. Otherwise every input channel gets the RGB kernel summed over its three channels divided
    by C (the RGB average, repeated C times and scaled by 3 / C): for depth (C = 1) the sum over RGB, for
    optical flow (C = 2) 1.5 times the RGB average on each of x and y. An input whose C channels all equal a
    grey clip g then responds as the RGB network does to g; for flow this is only a starting point (the
    common cross-modal initialisation), not a flow-trained filter."""
    if channels == weight.shape[1]:
        return weight
    return (weight.sum(dim=1, keepdim=True) / channels).expand(-1, channels, *weight.shape[2:]).clone()


def reference_shapes(arch: str) -> dict[str, torch.Size]:
    """Names and shapes of torchvision's state dict for ``arch`` (built with weights=None on the meta device:
    nothing is downloaded, allocated or initialised)."""
    import torchvision.models.video as tvv

    with torch.device("meta"):
        return {k: v.shape for k, v in getattr(tvv, ARCHS[arch][0])(weights=None).state_dict().items()}


def read_video_weights(path: str, arch: str, sha256: str = "") -> dict[str, torch.Tensor]:
    """A local torchvision ``r3d_18`` / ``r2plus1d_18`` state dict, checked (SHA-256 first, then names and shapes)."""
    tv_name = ARCHS[arch][0]
    sd = read_state_dict(path, sha256, tv_name)
    ref = reference_shapes(arch)
    bad = [k for k, s in ref.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
           and (k not in sd or tuple(sd[k].shape) != tuple(s))]
    bad += [k for k in sd if k not in ref]
    if bad:
        raise UserError(
            f"model.weights {path} is not a torchvision {tv_name} state dict ({len(bad)} tensors missing, "
            f"unexpected or of another shape, e.g. '{bad[0]}')"
        )
    return sd


def load_video_pretrained(net: VideoNet, path: str, sha256: str = "") -> int:
    """Read ``path`` (``read_video_weights``) and copy it into ``net`` (``copy_video_weights``)."""
    return copy_video_weights(net, read_video_weights(path, net.arch, sha256), path)


@torch.no_grad()
def copy_video_weights(net: VideoNet, sd: dict[str, torch.Tensor], path: str = "model.weights") -> int:
    """Copy torchvision video-ResNet weights into ``net``: every stem gets stem (its first convolution adapted to
    the modality's channel count, ``adapt_input_conv``), layer1, layer2; the trunk gets layer3, layer4. The
    fusion, the SE layers and the head stay as initialised (``fc`` is not loaded). The loaded parameters' names
    go into ``net.pretrained_names`` (so ``model.pretrained_lr_mult`` applies to them).
    Returns the number of tensors loaded (parameters and BN buffers)."""
    params = dict(net.named_parameters())
    own = net.state_dict(keep_vars=True)
    targets: list[tuple[str, str]] = []  # (name in net, name in the file)
    for m in net.modalities:
        targets += [(f"stems.{m}.{k}", k) for k in net.stems[m].state_dict() if k.split(".")[0] in STEM_LAYERS]
    targets += [(k, k) for k in own if k.split(".")[0] in TRUNK_LAYERS]
    count = 0
    for name, src in targets:
        if src not in sd:  # an SE layer (not in torchvision), or num_batches_tracked absent from older files
            continue
        value = sd[src]
        if src == FIRST_CONV:
            value = adapt_input_conv(value, own[name].shape[1])
        if tuple(value.shape) != tuple(own[name].shape):
            raise UserError(
                f"model.weights {path} does not fit this network ('{src}' has shape {tuple(value.shape)}, the "
                f"network needs {tuple(own[name].shape)})"
            )
        own[name].copy_(value)
        count += 1
        if name in params:
            net.pretrained_names.add(name)
    net.pretrained_loaded = count
    return count


def build_video_net(spec, modalities, num_classes, model_cfg, arch: str) -> VideoNet:
    """The ``r3d18`` / ``r2plus1d18`` backbone from ``model.*`` settings (loads ``model.weights`` when set).

    ``model.region_pool_time`` (bool, default True when the field does not exist) chooses the region pyramid.
    The weights file is read and checked before the network is built, so a wrong file fails fast."""
    sd = read_video_weights(model_cfg.weights, arch, model_cfg.weights_sha256) if model_cfg.weights else None
    net = VideoNet(
        spec, modalities, num_classes, arch=arch, se=model_cfg.se, dropout=model_cfg.dropout,
        se_reduction=model_cfg.se_reduction, region_pool_time=getattr(model_cfg, "region_pool_time", True),
    )
    net.pretrained_lr_mult = float(model_cfg.pretrained_lr_mult)
    if sd is not None:
        copy_video_weights(net, sd, model_cfg.weights)
    return net


class _MeanHead(nn.Module):
    """Shape stand-in for a late-fusion network's ``head``: in_features, out_features and a forward that averages
    the members' heads on the same input (callers that only ask for the sizes, e.g. CRD, see a Linear's)."""

    def __init__(self, heads: Sequence[nn.Linear]):
        super().__init__()
        self._heads = list(heads)  # not registered: the members own them
        self.in_features = heads[0].in_features
        self.out_features = heads[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self._heads]).mean(0)


class LateFusionNet(NetworkBase):
    """The authors' action teacher: one unimodal network per modality (``members``), averaged.

    ``forward`` returns the mean of the members' logits, the mean of their embeddings and f3 = the mean of
    their f3 (shapes as a student's). f4 (``fmap``) is the members' f4 **concatenated along channels**
    (B, M * C, *grid), in ``modalities`` order: each member has its own head, so the teacher's region logits (the
    mean of the members' region logits, as in the authors' code) need every member's own map, and an averaged
    map would mix member m's head with member k's features. ``region_logits`` splits the map back and averages
    ``member.region_logits`` (each member pools time as it is configured). Losses that only compare f4 through
    Gram or attention maps (SP/DAD, AT) accept the wider map; the embedding keeps the student's width.

    Members must share the trunk grid and head sizes (build them from the same data spec: ``build_late_fusion``).
    ``pretrained_parameters`` of the members are found by ``param_groups`` through the members themselves."""

    def __init__(self, members: dict[str, NetworkBase]):
        super().__init__()
        if not members:
            raise UserError("a late-fusion network needs at least one member network")
        self.members = nn.ModuleDict(members)
        first = next(iter(members.values()))
        for m, net in members.items():
            if (tuple(net.grid), net.head.in_features, net.head.out_features) != (
                tuple(first.grid), first.head.in_features, first.head.out_features
            ):
                raise UserError(f"the late-fusion member '{m}' differs from the others in trunk grid or head size")
        self.modalities = [m for net in members.values() for m in net.modalities]
        self.dims, self.grid = first.dims, first.grid
        self.region_dims = getattr(first, "region_dims", first.dims)
        self._head = _MeanHead([net.head for net in members.values()])

    @property
    def head(self) -> _MeanHead:  # type: ignore[override]
        return self._head

    @property
    def norms(self) -> dict[str, Normalizer]:  # type: ignore[override]
        """Every modality's normaliser, as held by the member that sees it (``set_normalization`` and export)."""
        return {m: net.norms[m] for net in self.members.values() for m in net.modalities}

    def forward(self, inputs: dict[str, torch.Tensor]) -> NetOutput:
        outs = [net(inputs) for net in self.members.values()]
        mean = lambda xs: torch.stack(xs).mean(0)
        f3 = mean([o.features[0] for o in outs])
        f4 = torch.cat([o.features[-1] for o in outs], dim=1)
        return NetOutput(mean([o.logits for o in outs]), [f3, f4], mean([o.embedding for o in outs]))

    def region_logits(self, fmap: torch.Tensor, levels: Sequence[int], **how) -> torch.Tensor:
        """The mean over members of each member's region logits of its own part of the concatenated f4."""
        parts = fmap.chunk(len(self.members), dim=1)
        return torch.stack([net.region_logits(p, levels, **how)
                            for net, p in zip(self.members.values(), parts)]).mean(0)


def build_late_fusion(spec, modalities, num_classes, model_cfg,
                      build: Callable[..., NetworkBase] | None = None) -> LateFusionNet:
    """A ``LateFusionNet`` of one ``model.backbone`` network per modality in ``modalities``, all from ``spec``."""
    if build is None:
        from .network import build_network as build
    return LateFusionNet({m: build(spec, [m], num_classes, model_cfg) for m in modalities})

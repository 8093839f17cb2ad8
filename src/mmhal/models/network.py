"""The multimodal network: per-modality stems, concat + SE fusion, a shared trunk, a head.

The teacher is a ``MultimodalNet`` over all modalities; the hallucination network (student) is a
``MultimodalNet`` over the available ones. Both are built from the same ``spec`` (the shapes of
*every* modality in the data), so their trunk grids and feature shapes are identical and regions
align one to one.

    x_m --norm_m--> stem_m --(to the trunk grid)--> concat --SE--> 1x1 proj --> stage3 --> stage4
                                                                               |f3        |f4
                                                                                       pool -> head

When every modality is a vector (a feature table) the network is a wide, shallow MLP instead
(``MultimodalNet._build_mlp``): x_m --norm_m--> Linear-BN-ReLU (8w) --> concat --> Linear-BN-ReLU (8w) = f3 = f4 --> head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import input_kind
from ..errors import UserError
from ..registry import Registry
from .layers import ResBlock, SqueezeExcite, conv, norm
from .pyramid import region_pool, square_remap
from .stems import STEMS

# Spatial dims of each kind's stem output (clips average time away).
_STEM_DIMS = {"vector": 0, "sequence": 1, "image": 2, "clip": 2}


@dataclass
class NetOutput:
    logits: torch.Tensor  # (B, K)
    features: list[torch.Tensor]  # trunk feature maps [f3, f4], each (B, C, *grid)
    embedding: torch.Tensor  # (B, C4): globally pooled f4

    @property
    def fmap(self) -> torch.Tensor:
        """The last trunk feature map (the one RAD pools into regions)."""
        return self.features[-1]


def trunk_geometry(spec: dict[str, tuple[int, ...]]) -> tuple[int, tuple[int, ...]]:
    """(spatial dims, grid) of the trunk input, from the shapes of all modalities in the data.

    The trunk works at the highest spatial dimensionality any stem produces; its grid is the
    smallest stem output of that dimensionality. Lower-dimensional stem outputs are pooled to a
    vector and broadcast over the grid.
    """
    outs = {m: STEMS.get(input_kind(s)).out_spatial(s) for m, s in spec.items()}
    dims = max(len(o) for o in outs.values())
    same = [o for o in outs.values() if len(o) == dims]
    grid = tuple(min(o[i] for o in same) for i in range(dims))
    return dims, grid


class Normalizer(nn.Module):
    """(x - mean) / std per channel; statistics come from the train split and live in the state dict."""

    def __init__(self, channels: int, ndim: int):
        super().__init__()
        self.view = (1, channels) + (1,) * (ndim - 1)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.view(self.view)) / self.std.view(self.view)


class NetworkBase(nn.Module):
    """What every backbone's network shares: per-modality ``norms``, ``region_logits`` through ``head``, and
    the record of which parameters hold pretrained weights (``pretrained_names``, relative to this network;
    ``param_groups`` gives them ``lr * pretrained_lr_mult``).

    A network also has ``modalities``, ``dims``, ``grid``, ``head`` (nn.Linear) and ``forward(inputs) ->
    NetOutput`` with ``features = [f3, f4]``."""

    norms: nn.ModuleDict
    head: nn.Linear
    modalities: list[str]

    def __init__(self):
        super().__init__()
        self.pretrained_names: set[str] = set()
        self.pretrained_lr_mult = 1.0
        self.pretrained_loaded = 0  # tensors (parameters and buffers) loaded from a weights file

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The parameters loaded from pretrained weights (empty for a network trained from scratch)."""
        return [p for n, p in self.named_parameters() if n in self.pretrained_names]

    def set_normalization(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Store per-channel (mean, std) of each modality's train split in the model."""
        for m in self.modalities:
            mean, std = stats[m]
            self.norms[m].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.norms[m].std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def region_logits(self, fmap: torch.Tensor, levels: Sequence[int], from_finest: bool = False,
                      remap: bool = False) -> torch.Tensor:
        """(B, C, *grid) -> (B, R, K): every pyramid region through this network's own head, in one call; with
        ``remap`` the map is first ``square_remap``-ed, with ``from_finest`` the coarse levels are pooled from the
        finest (``region_pool``)."""
        if remap and fmap.dim() > 2:
            fmap = square_remap(fmap)
        regions = region_pool(fmap, levels, from_finest, getattr(self, "pool", "mean"))  # (B, R, C or 2C)
        b, r, ch = regions.shape
        return self.head(regions.reshape(b * r, ch)).view(b, r, -1)


class StemFusionNet(NetworkBase):
    """The frame the ResNet-18 and the video networks share: one stem per modality, each stem's map brought to the
    trunk grid (the smallest stem output over every modality of the network's kind in the data, so that the
    teacher and every student agree whatever subset they see), concatenated, squeeze-excited and projected to
    ``channels`` by a 1x1(x1) convolution; trunk stages ``layer3`` and ``layer4``; the mean over the grid, dropout,
    head. Subclasses call ``_build`` from their ``__init__``; the modules keep one set of names for checkpoints."""

    def _build(self, spec, modalities, num_classes: int, *, backbone: str, sample_dims: int, stem: Callable,
               out_spatial: Callable, channels: int, trunk: Callable, out_channels: int, dropout: float,
               se_reduction: int, init: Callable, other: str) -> None:
        """``stem(C)`` makes a modality's stem, ``out_spatial(shape)`` its output grid, ``trunk()`` (called after
        the projection is made and initialised: the order of random draws) returns (layer3, layer4), ``init``
        initialises the projection; ``other`` names the backbones to use for data of another kind."""
        kinds = {3: "images (C, H, W)", 4: "clips (C, T, H, W)"}
        self.modalities = list(modalities)
        for m in self.modalities:
            if len(spec[m]) != sample_dims:
                raise UserError(f"model.backbone={backbone} is for {kinds[sample_dims]} but modality '{m}' has "
                                f"per-sample shape {tuple(spec[m])}; use {other}")
        outs = [out_spatial(s) for s in spec.values() if len(s) == sample_dims]
        self.dims = sample_dims - 1
        self.grid = tuple(min(o[i] for o in outs) for i in range(self.dims))
        self.norms = nn.ModuleDict()
        self.stems = nn.ModuleDict()
        for m in self.modalities:
            self.norms[m] = Normalizer(spec[m][0], sample_dims)
            self.stems[m] = stem(spec[m][0])
        fused = channels * len(self.modalities)
        conv_nd, bn_nd = (nn.Conv2d, nn.BatchNorm2d) if self.dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        self.se = SqueezeExcite(fused, se_reduction)
        self.proj = nn.Sequential(conv_nd(fused, channels, 1, bias=False), bn_nd(channels), nn.ReLU(inplace=True))
        init(self.proj)
        self.layer3, self.layer4 = trunk()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(out_channels, num_classes)

    def _to_grid(self, z: torch.Tensor) -> torch.Tensor:
        if tuple(z.shape[2:]) == self.grid:
            return z
        return F.adaptive_avg_pool2d(z, self.grid) if self.dims == 2 else F.adaptive_avg_pool3d(z, self.grid)

    def forward(self, inputs: dict[str, torch.Tensor]) -> NetOutput:
        parts = [self._to_grid(self.stems[m](self.norms[m](inputs[m]))) for m in self.modalities]
        x = self.proj(self.se(torch.cat(parts, dim=1)))
        f3 = self.layer3(x)
        f4 = self.layer4(f3)
        emb = f4.mean(dim=tuple(range(2, f4.dim())))
        return NetOutput(self.head(self.drop(emb)), [f3, f4], emb)


class MultimodalNet(NetworkBase):
    """Stems for ``modalities`` (a subset of ``spec``), fused, then a trunk shared in shape by every network."""

    def __init__(
        self,
        spec: dict[str, tuple[int, ...]],
        modalities: Sequence[str],
        num_classes: int,
        width: int = 16,
        blocks: int = 1,
        se_reduction: int = 4,
        dropout: float = 0.0,
        pool: str = "mean",
    ):
        super().__init__()
        self.modalities = list(modalities)
        self.dims, self.grid = trunk_geometry(spec)
        # How f4 becomes the embedding (and each RAD region its vector): mean, or mean and maximum concatenated
        # (meanmax); a network of feature tables has no grid to pool (mean).
        self.pool = pool if self.dims > 0 else "mean"
        c = 2 * width
        self.norms = nn.ModuleDict()
        self.stems = nn.ModuleDict()
        if self.dims == 0:
            self._build_mlp(spec, num_classes, width, blocks, dropout)
            return
        for m in self.modalities:
            shape = tuple(spec[m])
            self.norms[m] = Normalizer(shape[0] if len(shape) > 1 else shape[0], len(shape))
            self.stems[m] = STEMS.get(input_kind(shape))(shape, width, blocks)
        fused = c * len(self.modalities)
        self.se = SqueezeExcite(fused, se_reduction)
        self.proj = nn.Sequential(conv(self.dims, fused, c, 1), norm(self.dims, c), nn.ReLU(inplace=True))
        self.feature_channels = (4 * width, 8 * width)
        s3 = 2 if self.dims and min(self.grid) >= 6 else 1
        after3 = tuple((g + 1) // 2 if s3 == 2 else g for g in self.grid)
        s4 = 2 if self.dims and min(after3) >= 6 else 1
        self.stage3 = nn.Sequential(
            ResBlock(self.dims, c, 4 * width, s3), *[ResBlock(self.dims, 4 * width, 4 * width) for _ in range(blocks - 1)]
        )
        self.stage4 = nn.Sequential(
            ResBlock(self.dims, 4 * width, 8 * width, s4),
            *[ResBlock(self.dims, 8 * width, 8 * width) for _ in range(blocks - 1)],
        )
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # before the head (no parameters)
        self.head = nn.Linear(8 * width * (2 if self.pool == "meanmax" else 1), num_classes)

    def _build_mlp(self, spec, num_classes: int, width: int, blocks: int, dropout: float) -> None:
        """Every modality of the data is a vector: a wide, shallow MLP. One Linear-BN-ReLU layer of ``8 * width``
        units per modality (its stem), concatenated, one more to ``8 * width`` (``proj``, the fusion; its output
        is f3), ``blocks - 1`` residual blocks (``stage4``; f4, f3 itself when ``blocks`` is 1), the head; no SE.
        On feature tables it beat the narrow stem-SE-residual layout that sequences and images keep by 2-7 points
        of validation accuracy, students and teachers alike (benchmarks/SCIENCE.md §7)."""
        c = 8 * width
        for m in self.modalities:
            self.norms[m] = Normalizer(spec[m][0], 1)
            self.stems[m] = STEMS.get("vector")(tuple(spec[m]), 4 * width, plain=True)
        self.se = nn.Identity()
        self.proj = nn.Sequential(conv(0, c * len(self.modalities), c), norm(0, c), nn.ReLU(inplace=True))
        self.stage3 = nn.Sequential()
        self.stage4 = nn.Sequential(*[ResBlock(0, c, c) for _ in range(blocks - 1)])
        self.feature_channels = (c, c)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c, num_classes)

    def _to_grid(self, z: torch.Tensor) -> torch.Tensor:
        """Bring one stem output onto the trunk grid (adaptive pooling, or broadcast of a pooled vector)."""
        if z.dim() - 2 == self.dims:
            if tuple(z.shape[2:]) != self.grid:
                pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d}[self.dims]
                z = pool(z, self.grid)
            return z
        if z.dim() > 2:
            z = z.flatten(2).mean(-1)
        return z.view(*z.shape, *([1] * self.dims)).expand(*z.shape, *self.grid)

    def forward(self, inputs: dict[str, torch.Tensor]) -> NetOutput:
        parts = [self._to_grid(self.stems[m](self.norms[m](inputs[m]))) for m in self.modalities]
        x = self.proj(self.se(torch.cat(parts, dim=1)))
        f3 = self.stage3(x)
        f4 = self.stage4(f3)
        if f4.dim() == 2:
            emb = f4
        elif self.pool == "meanmax":
            z = f4.flatten(2)
            emb = torch.cat([z.mean(-1), z.amax(-1)], dim=1)
        else:
            emb = f4.flatten(2).mean(-1)
        return NetOutput(self.head(self.drop(emb)), [f3, f4], emb)


#: model.backbone name -> builder(spec, modalities, num_classes, model_cfg) -> network. Adding a backbone is
#: one module and one entry here.
BACKBONES: Registry[Callable[..., NetworkBase]] = Registry("backbone")


@BACKBONES.register("small")
def _small(spec, modalities, num_classes, model_cfg) -> MultimodalNet:
    """The small default network (``MultimodalNet``); it takes no pretrained weights or block SE."""
    unsupported = [key for key, off in (("weights", ""), ("se", False)) if getattr(model_cfg, key, off) != off]
    if unsupported:
        raise UserError(f"model.{', model.'.join(unsupported)} apply only to model.backbone=resnet18, r3d18 or r2plus1d18, not to small")
    return MultimodalNet(
        spec, modalities, num_classes, width=model_cfg.width, blocks=model_cfg.blocks,
        se_reduction=model_cfg.se_reduction, dropout=getattr(model_cfg, "dropout", 0.0),
        pool=resolve_pool(getattr(model_cfg, "pool", "mean"), spec),
    )


def resolve_pool(pool: str, spec) -> str:
    """``model.pool`` for data of shapes ``spec``: ``auto`` is meanmax where the trunk is a sequence, else mean."""
    if pool != "auto":
        return pool
    return "meanmax" if trunk_geometry(spec)[0] == 1 else "mean"


@BACKBONES.register("resnet18")
def _resnet18(spec, modalities, num_classes, model_cfg) -> NetworkBase:
    """torchvision ResNet-18(-SE) stems and trunk for images (``models.resnet``; torchvision is imported here)."""
    from .resnet import build_resnet18

    return build_resnet18(spec, modalities, num_classes, model_cfg)


@BACKBONES.register("tmm-face")
def _tmm_face(spec, modalities, num_classes, model_cfg) -> NetworkBase:
    """The authors' face network: ResNet-18 stems with one SE after layer2, 3x3 conv1, dropout on the logits
    (``models.tmm_face``)."""
    from .tmm_face import build_tmm_face

    return build_tmm_face(spec, modalities, num_classes, model_cfg)


@BACKBONES.register("r3d18")
def _r3d18(spec, modalities, num_classes, model_cfg) -> NetworkBase:
    """torchvision R3D-18 stems and trunk for clips, time kept (``models.video``; torchvision is imported there)."""
    from .video import build_video_net

    return build_video_net(spec, modalities, num_classes, model_cfg, "r3d18")


@BACKBONES.register("r2plus1d18")
def _r2plus1d18(spec, modalities, num_classes, model_cfg) -> NetworkBase:
    """torchvision R(2+1)D-18 stems and trunk for clips, time kept (``models.video``)."""
    from .video import build_video_net

    return build_video_net(spec, modalities, num_classes, model_cfg, "r2plus1d18")


def build_network(spec, modalities, num_classes, model_cfg) -> NetworkBase:
    """The network of ``model.backbone`` over ``modalities``, from the shapes ``spec`` of every modality in the data."""
    return BACKBONES.get(getattr(model_cfg, "backbone", "small"))(spec, modalities, num_classes, model_cfg)


_MAC_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def macs_per_sample(net: nn.Module, shapes: dict[str, Sequence[int]]) -> int:
    """Multiply-accumulates of one forward pass of ``net`` per sample (its convolutions and linear layers, counted
    on one random sample of the per-sample ``shapes`` of its modalities): how much arithmetic a step holds, which
    decides whether more than one thread pays (``engine.jobs.train_threads``). The network is left as it was."""
    total = [0]

    def count(module, inputs, output):
        per_out = module.in_features if isinstance(module, nn.Linear) else \
            (module.in_channels // module.groups) * int(torch.tensor(module.kernel_size).prod())
        total[0] += (output.numel() // output.shape[0]) * per_out

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, _MAC_LAYERS)]
    was = net.training
    try:
        net.eval()
        net({m: torch.randn(1, *shapes[m]) for m in net.modalities})
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    return total[0]


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups for the trainable parameters of ``module`` (a network, or anything holding
    networks, e.g. a distillation method): parameters a network marks as pretrained (``pretrained_parameters``)
    get ``lr * pretrained_lr_mult`` of that network, every other one ``lr``. Without pretrained parameters (or
    with every multiplier 1) this is one group holding every trainable parameter in ``module.parameters()``
    order, as passing ``module.parameters()`` would be."""
    mult_of: dict[int, float] = {}
    for sub in module.modules():
        if isinstance(sub, NetworkBase):
            for p in sub.pretrained_parameters():
                mult_of[id(p)] = float(sub.pretrained_lr_mult)
    groups: dict[float, list[nn.Parameter]] = {1.0: []}
    for p in module.parameters():
        if p.requires_grad:
            groups.setdefault(mult_of.get(id(p), 1.0), []).append(p)
    out = [{"params": ps, "lr": lr * mult, "weight_decay": weight_decay} for mult, ps in groups.items() if ps]
    return out or [{"params": [], "lr": lr, "weight_decay": weight_decay}]

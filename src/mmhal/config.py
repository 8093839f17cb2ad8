"""Typed configuration: dataclasses, filled from a YAML recipe and then ``key=value`` overrides.

OmegaConf holds the settings as a tree typed by these dataclasses (``OmegaConf.structured``): it converts and
checks each value against its field's declared type; ``validate`` then checks ranges and combinations. Every
mistake is a ``UserError`` in one sentence that names the key, the value and what is expected.

Overrides are dotted ``key=value`` pairs (``train.lr=1e-3``, ``data={name: x.npz, split_seed: 3}``,
``method_overrides.kd.distill.kd_alpha=0.7``); a list is ``0,1,2``, ``[0, 1, 2]`` or one value, an Optional
setting takes ``null``. Relative paths are relative to the current directory, in a recipe too.

The resolved configuration is written into every run folder (``config.yaml``, paths made absolute) and a run
can be repeated from it with ``mmhal run --config RUN/config.yaml``.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import numpy as np
import yaml
from omegaconf import Container, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import UserError, not_a_file


def default_cache_dir() -> str:
    """Where converted datasets and trained teachers are cached (``$MMHAL_CACHE`` or ``~/.cache/mmhal``)."""
    return os.environ.get("MMHAL_CACHE") or str(Path.home() / ".cache" / "mmhal")


@dataclass
class AugmentConfig:
    """Random augmentation of image modalities while training (``mmhal.data.augment``). Geometric operations
    draw once per sample for every modality (RAD compares teacher and student regions, so both see the same
    crop); photometric ones draw per modality and touch only ``photometric_modalities``. Every draw is a
    function of (seed, stream, epoch, sample index). Everything off (the default) = no augmentation."""

    flip: bool = False  # horizontal flip with probability 0.5 (shared)
    rotate: float = 0.0  # rotation by an angle uniform in [-rotate, rotate] degrees (shared)
    crop: float = 1.0  # a random square-ish crop of side crop * size, resized back to the size (shared); 1 = off
    erase: float = 0.0  # probability of erasing one random box (shared), as random erasing / cutout
    brightness: float = 0.0  # brightness factor uniform in [1 - b, 1 + b] (per modality)
    contrast: float = 0.0  # contrast factor uniform in [1 - c, 1 + c] (per modality)
    photometric_modalities: list[str] = field(default_factory=lambda: ["rgb"])  # who gets brightness/contrast

    @property
    def active(self) -> bool:
        return bool(self.flip or self.rotate or self.crop < 1.0 or self.erase or self.brightness or self.contrast)


# ---- action clips (data.clip)
def is_whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


def pair_of(v) -> Optional[tuple]:
    """``v`` as a 2-tuple when it is a sequence (list, tuple, OmegaConf list) of two items, else None."""
    if isinstance(v, (str, bytes)):
        return None
    try:
        items = tuple(v)
    except TypeError:
        return None
    return items if len(items) == 2 else None


@dataclass
class ClipConfig:
    """How action clips are sampled and augmented (``data.clip``, ``mmhal.data.clips``); ``check`` raises a
    UserError in one sentence for a bad value (it also runs when the config is made)."""

    length: int = 16  # frames per clip (the paper: 8 for NW-UCLA, 16 for NTU, UCF101, HMDB51)
    stride: int = 1  # frames between two frames of a clip (1 = contiguous)
    num_test_clips: int = 10  # clips evenly spaced over a test video
    test_crops: int = 3  # spatial views per test clip: 1 (centre) or 3 (start, centre, end of the longer side)
    size: list[int] = field(default_factory=lambda: [224, 224])  # output (H, W) of training crops and test views
    scale: list[float] = field(default_factory=lambda: [0.25, 1.0])  # crop area as a fraction of the frame
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # crop aspect ratio w / h
    flip: bool = True  # horizontal flip with probability 0.5 (flow x negated)
    brightness: float = 0.0  # brightness factor uniform in [1 - b, 1 + b], photometric modalities only
    contrast: float = 0.0  # contrast factor uniform in [1 - c, 1 + c], photometric modalities only
    photometric_modalities: list[str] = field(default_factory=lambda: ["rgb"])  # who gets brightness/contrast
    flow_modalities: list[str] = field(default_factory=lambda: ["flow"])  # 2-channel (x, y) optical flow
    flow_center: Optional[float] = None  # stored value of zero motion; None: 0 (float), 127.5 (uint8)

    def __post_init__(self) -> None:
        self.check()

    def check(self, prefix: str = "data.clip") -> None:
        """A UserError naming the key ``prefix.<field>`` for the first bad value; nothing when all are good."""
        def bad(name: str, expects: str, got) -> UserError:
            return UserError(f"config key '{prefix}.{name}' expects {expects}, got {got!r}")

        for name in ("length", "stride", "num_test_clips"):
            v = getattr(self, name)
            if not is_whole(v) or v < 1:
                raise bad(name, "a whole number of at least 1", v)
        if not is_whole(self.test_crops) or self.test_crops not in (1, 3):
            raise bad("test_crops", "1 (centre crop) or 3 (three crops)", self.test_crops)
        size = pair_of(self.size)
        if size is None or not all(is_whole(s) and s >= 1 for s in size):
            raise bad("size", "two whole numbers of at least 1, [H, W]", self.size)
        scale = pair_of(self.scale)
        if scale is None or not all(is_real_number(s) for s in scale) or not 0 < scale[0] <= scale[1] <= 1:
            raise bad("scale", "two area fractions [lo, hi] with 0 < lo <= hi <= 1", self.scale)
        ratio = pair_of(self.ratio)
        if ratio is None or not all(is_real_number(r) for r in ratio) or not 0 < ratio[0] <= ratio[1]:
            raise bad("ratio", "two aspect ratios [lo, hi] with 0 < lo <= hi", self.ratio)
        if not isinstance(self.flip, (bool, np.bool_)):
            raise bad("flip", "true or false", self.flip)
        for name in ("brightness", "contrast"):
            v = getattr(self, name)
            if not is_real_number(v) or not 0 <= v <= 1:
                raise bad(name, "a number from 0 to 1", v)
        for name in ("photometric_modalities", "flow_modalities"):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not all(isinstance(m, str) and m for m in items_of(v)):
                raise bad(name, "a list of modality names", v)
        both = sorted(set(items_of(self.photometric_modalities)) & set(items_of(self.flow_modalities)))
        if both:
            raise UserError(f"config keys '{prefix}.photometric_modalities' and '{prefix}.flow_modalities' both name "
                            f"'{both[0]}'; brightness and contrast never apply to optical flow")
        if self.flow_center is not None and not is_real_number(self.flow_center):
            raise bad("flow_center", "a number (the stored value of zero motion) or null", self.flow_center)

    @property
    def out_size(self) -> tuple[int, int]:
        h, w = pair_of(self.size)
        return int(h), int(w)


def items_of(v) -> list:
    try:
        return list(v)
    except TypeError:
        return [None]



@dataclass
class CefaConfig:
    """CASIA-SURF CeFA protocol filters (``mmhal.data.cefa``). ``data.protocol`` picks a preset (4@1, 4@2, 4@3,
    mmh-4@5; auto = 4@1) and every field set here (non-empty) replaces the preset's; with ``data.protocol=custom``
    only these fields count (empty = no filter; empty ID ranges = the standard 0-199 / 200-299 / 300-499)."""

    train_races: list[str] = field(default_factory=list)  # ethnicities of train and dev: AF, CA, EA
    test_races: list[str] = field(default_factory=list)  # ethnicities of test
    train_pais: list[int] = field(default_factory=list)  # PAIs of train and dev: 1 real, 2 print, 3 photo, 4 replay
    test_pais: list[int] = field(default_factory=list)  # PAIs of test
    devices: list[int] = field(default_factory=list)  # acquisition devices kept (1..4), every split
    sessions: list[int] = field(default_factory=list)  # sessions kept (1..3), every split
    train_ids: list[int] = field(default_factory=list)  # subject ID range [first, last] (inclusive) of train
    dev_ids: list[int] = field(default_factory=list)  # ... of dev (the val split)
    test_ids: list[int] = field(default_factory=list)  # ... of test
    frames_per_video: int = 0  # 0 = every frame; k > 0 = k frames per video, evenly spaced (deterministic)


@dataclass
class DataConfig:
    name: str = "hapt"  # a registered dataset name, a path to a .npz file, or a path to a manifest .csv
    path: Optional[str] = None  # root folder / file for datasets that need one (`--root`)
    # Image data read from files (manifest.csv, casia-surf, cefa): every image is resized to this (H, W) when
    # decoded; empty = the size of the first sample's image (the face loaders use 112).
    image_size: list[int] = field(default_factory=list)
    # Dataset-specific protocol: casia-surf: auto | challenge | rerelease (which release's lists, and so which
    # label polarity); cefa: a preset (4@1, 4@2, 4@3, mmh-4@5) or custom (then data.cefa.* say everything);
    # nw-ucla: cross-view (= auto, test view 3) | cross-view-<k>; ntu60: cross-subject (= auto) | cross-view;
    # ucf101, hmdb51: split-1 (= auto) | split-2 | split-3.
    protocol: str = "auto"
    # How presentation-attack data are scored: sample (every image) | video (mean score of a video's frames)
    # | auto (video where the data name videos, e.g. cefa).
    scoring: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cefa: CefaConfig = field(default_factory=CefaConfig)  # CeFA protocol filters (see CefaConfig)
    # Clips of action videos (frame folders): length, stride, crops, test views (see ClipConfig); their frames
    # are decoded at data.image_size (empty = the first frame's size), then cropped to data.clip.size.
    clip: ClipConfig = field(default_factory=ClipConfig)
    # 16-bit frames of clips (depth in millimetres): clipped to [lo, hi] and scaled to 0..255 when decoded (NTU's
    # loader: 500-4500 mm unless set); empty = their raw values.
    depth_range: list[float] = field(default_factory=list)
    # Splits made by the tool when the data has none (npz without `split`): fractions of groups/samples.
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    # An npz file's own `split` that puts samples of one `group` (person, video, session) in more than one of
    # train/val/test is an error (the test figures would be inflated); true: accept it, with a warning.
    allow_shared_groups: bool = False
    # Keys of a .npz file (columns of a manifest) kept on purpose that mmhal does not read: neither refused for
    # looking like a key it reads (`splits`, `target`, `X.rgb`) nor named in the warning on unread keys
    # (data/keys.py). May not name a modality key (x.<name>); a key the format reads is refused when loading.
    ignore_keys: list[str] = field(default_factory=list)
    # HAPT: train subjects held out for validation (model selection). Six of the 21 train subjects:
    # three left validation accuracy at 97-99 % for every epoch, so epoch choice was noise.
    hapt_val_subjects: list[int] = field(default_factory=lambda: [5, 11, 16, 22, 27, 30])


@dataclass
class PadConfig:
    """Presentation-attack detection figures (ISO/IEC 30107-3), reported for binary bona fide / attack data."""

    # How the threshold is chosen on the validation split: eer | min-hter | bpcer<N> (the threshold where
    # APCER <= 1/N on validation) | a number (a fixed threshold on P(bona fide), "uncalibrated").
    criterion: str = "eer"
    # Also report the reference code's figures (argmax decision, its non-standard APCER*/NPCER*/ACER*).
    legacy: bool = False


@dataclass
class ModelConfig:
    width: int = 12  # base width: stem -> 2*width channels, trunk stages 4*width and 8*width
    blocks: int = 1  # residual blocks per stage (ResNet-18 has 2)
    se_reduction: int = 4  # squeeze-excitation reduction ratio in the fusion layer
    # small (MultimodalNet, any input kind; width/blocks apply) | resnet18 (torchvision ResNet-18 stems
    # conv1..layer2 per modality and trunk layer3/layer4, images only; models/resnet.py) | r3d18 | r2plus1d18
    # (torchvision's 3D video networks, the same split, clips (C, T, H, W) only, time kept; models/video.py) |
    # tmm-face (the authors' face network: one SE per stem after layer2, 3x3 conv1, dropout on the logits;
    # images only; models/tmm_face.py)
    backbone: str = "small"
    se: bool = False  # resnet18: squeeze-excitation (reduction 16) in every residual block (ResNet-18-SE)
    dropout: float = 0.0  # dropout before the head, in [0, 1) (every backbone; tmm-face: on the logits)
    # resnet18: a LOCAL torchvision resnet18 ImageNet state dict (e.g. resnet18-f37072fd.pth); nothing is
    # downloaded. Stems get conv1 (summed over RGB for 1 channel)..layer2, the trunk layer3/layer4; fc is not loaded.
    weights: str = ""
    weights_sha256: str = ""  # when set, the weights file's SHA-256 must equal it (checked before loading)
    pretrained_lr_mult: float = 1.0  # learning-rate multiplier of the parameters loaded from model.weights
    # r3d18/r2plus1d18: average f4 over time before the RAD region pyramid (the authors' choice: 4x4 + 2x2 + 1x1
    # = 21 regions); false: cubic regions over (T', H', W'), 4^3 + 2^3 + 1 = 73.
    region_pool_time: bool = True
    # The teacher over several modalities: early (one network, the modalities' stems fused into one trunk) | late
    # (one network of model.backbone per modality, logits averaged and f4 concatenated: the authors' action teachers).
    teacher_fusion: str = "early"
    # How the small network pools its last feature map into the embedding (and each RAD region into its vector):
    # mean | meanmax (mean and maximum concatenated) | auto (meanmax for sequences, mean for images and clips:
    # on HAPT's sequences meanmax lifted the gyroscope network by 5.8 points of validation accuracy, 10 seeds,
    # benchmarks/SCIENCE.md §10). Feature tables have no map to pool; other backbones pool the mean.
    pool: str = "auto"


@dataclass
class TrainConfig:
    epochs: int = 12
    # At least this many optimiser steps: a small train split gets more epochs, epochs = max(epochs,
    # ceil(min_steps / batches per epoch)) (engine.loop.planned_epochs); 0 = exactly train.epochs.
    min_steps: int = 0
    # Stop once the validation figure that selects the epoch (select_on) has not improved for this many epochs;
    # the best epoch is kept as always. 0 = train every planned epoch.
    patience: int = 0
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # adamw | sgd (SGD is Nesterov, momentum 0.9, as the reference)
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    # cosine (warm-up, then cosine decay to zero) | authors-face (the authors' face schedule, per epoch: 0, 0, 0.2,
    # 0.4, 0.6, 0.8 x lr, then lr to epoch 13, /10 from 14, /100 from 22, /1000 from 31; engine.loop.lr_schedule)
    schedule: str = "cosine"
    select_on: str = "val_loss"  # val_loss | val_acc: which validation figure picks the epoch
    # Exponential moving average of the weights (decay per step; 0 = off): validation, selection and the
    # saved model use the averaged weights (engine.loop.WeightAverage).
    ema: float = 0.0
    # torch intra-op threads per training process; 0 = automatic (engine.jobs.train_threads): 1 for small networks
    # (vectors, sequences), else the CPUs the process may use (affinity, cgroup quota) shared by its processes
    threads: int = 0
    # Compute the frozen teacher's outputs on the train split once and reuse them every epoch
    # (exact while inputs are not randomly augmented; skipped when the cache would exceed 2 GiB).
    cache_teacher: bool = True
    # How a training step runs (docs/scaling.md): "32" fp32 | "bf16" autocast bfloat16 (CPU or CUDA) |
    # "16" autocast float16 with loss scaling (CUDA only). Losses are computed in fp32 in every mode.
    precision: str = "32"
    channels_last: bool = False  # images + 2-D convolutions NHWC, clips + 3-D convolutions NDHWC (tensor cores, oneDNN)
    compile: bool = False  # torch.compile the network's forward; a compile failure is an error, not a fallback
    # How batches reach the device (docs/scaling.md): "memory" = every split held as tensors on the device
    # (fastest while the data fit) | "workers" = splits in host memory, a DataLoader with loader_workers
    # persistent processes gathers each batch (pinned memory on CUDA). The batches, and so results, are the same.
    loader: str = "memory"
    loader_workers: int = 4  # at most this many, and no more than the CPUs the process may use (utils.usable_cpus)


# The baseline distillation methods' own settings (``mmhal.distill.fitnet`` ... ``hallucination``; defaults are
# the published ones): each is a section of ``distill``, set as e.g. ``distill.fitnet.beta=50``.
@dataclass
class FitNetConfig:
    beta: float = 100.0  # weight of the hint loss MSE(R(f3_s), f3_t)
    regressor: str = "conv"  # conv: R = 1x1 conv + BatchNorm + ReLU (Romero et al.) | none: R = identity


@dataclass
class ATConfig:
    beta: float = 1000.0  # weight of the attention-transfer loss (summed over f3 and f4)
    p: float = 2.0  # attention map = mean over channels of |F|^p


@dataclass
class SPConfig:
    gamma: float = 3000.0  # weight of the similarity-preserving loss on f4


@dataclass
class PKTConfig:
    beta: float = 30000.0  # weight of the probabilistic knowledge transfer loss on the embedding


@dataclass
class RKDConfig:
    distance: float = 25.0  # weight of the distance-wise term
    angle: float = 50.0  # weight of the angle-wise term


@dataclass
class CRDConfig:
    beta: float = 0.8  # weight of the contrastive loss L_CRD (CE weight 1)
    dim: int = 128  # embedding size of both projections and of the memory banks
    k: int = 16384  # negatives per sample (capped at the smallest number of other-class train samples)
    tau: float = 0.07  # temperature of the scores
    momentum: float = 0.5  # memory update: row <- normalise(momentum * row + (1 - momentum) * v)


@dataclass
class DKDConfig:
    alpha: float = 1.0  # weight of the target-class term (TCKD)
    beta: float = 8.0  # weight of the non-target-class term (NCKD)
    warmup: int = 1  # epochs over which the DKD weight rises linearly: min(epoch / warmup, 1), epochs from 1


@dataclass
class MarsConfig:
    alpha: float = 50.0  # weight of MSE(embedding_s, embedding_t)


@dataclass
class HallucinationConfig:
    gamma: float = 100.0  # weight of the hallucination loss mean((sigmoid(f3_t) - sigmoid(f3_H))^2)


@dataclass
class DistillConfig:
    temperature: float = 2.0  # T for KD and RAD
    kd_alpha: float = 0.5  # KD: (1 - alpha) * CE + alpha * T^2 KL (0.5: the same 1:1 weight as RAD at lambda 1)
    rad_lambda: float = 1.0
    # uniform | attention | confidence | authors | authors-ucf101 (distill/rad.py); uniform: chosen for the default mmh on validation
    # over five settings (benchmarks/SCIENCE.md §8; confidence before)
    rad_weighting: str = "uniform"
    rad_levels: list[int] = field(default_factory=lambda: [4, 2, 1])  # pyramid grid sizes per axis
    # map | finest: coarse levels pooled from the feature map, or from the finest level's pooled map (the authors'
    # code: 2x2 and 1x1 from the 4x4 map; FAITHFULNESS_AUDIT 1.2-1.3)
    rad_pool: str = "map"
    # none | square: the authors' face code re-maps both networks' maps to F^2 / (||F^2|| over the grid + 1e-6) per
    # channel before the pyramid (FAITHFULNESS_AUDIT 1.2)
    rad_remap: str = "none"
    # true reproduces a DEFECT of the authors' face code: with rad_weighting=authors the region losses are detached
    # before the attention (their torch.tensor(loss_list)), so the student gets no RAD gradient, only W_q and W_k do
    rad_reproduce_detach_defect: bool = False
    # The default mmh's DAD (benchmarks/SCIENCE.md §8, chosen on validation over five settings): inter-sample
    # distances of the pooled feature, weight 25 (RKD's distance weight); the authors': similarity, trunk, 100.
    dad_lambda: float = 25.0
    dad_variant: str = "batch"  # batch | local
    dad_k: int = 8  # neighbours kept per sample by the local variant
    # weight of RKD's angle term on DAD's features, over the batch (distill/dad.py); 0 = off (the default mmh)
    dad_angle: float = 0.0
    # similarity (the authors': row-normalised Gram matrices, SP) | distance (pairwise distances over their mean,
    # Huber, as RKD's distance term) (distill/dad.py)
    dad_relation: str = "distance"
    # trunk (f3 and f4, the authors' face code) | embedding (the pooled f4, the authors' action code)
    dad_features: str = "embedding"
    # Under torchrun: DAD, and the batch-relational baselines SP, PKT and RKD, over the global batch (features
    # gathered from every rank) | false: per-rank shard | auto: true when the job has more than one process
    # (docs/scaling.md). No effect in one process.
    dad_global: str = "auto"
    # Cross-entropy label smoothing (every method's CE term; the teacher's too unless method_overrides.teacher
    # says otherwise). 0 = plain CE.
    label_smoothing: float = 0.0
    # Start a distilled student from the teacher's weights wherever names and shapes match (its own
    # modalities' stems, the trunk and the head; not the fusion layer, whose width differs). unimodal never is.
    init_from_teacher: bool = False
    # How a two-network ensemble (mmh-ensemble, unimodal-ensemble, hallucination-fusion) combines its members'
    # logits: sum (z1 + z2; the authors' face code) | mean ((z1 + z2) / 2; their NTU, UCF101 and HMDB51 code: the
    # same predictions, softer probabilities) | learned (z1 + w z2, w fitted per seed on the training split by
    # cross-entropy with weight decay 5e-4, the members frozen; their NW-UCLA code) (engine/results.py)
    ensemble_weight: str = "sum"
    fitnet: FitNetConfig = field(default_factory=FitNetConfig)
    at: ATConfig = field(default_factory=ATConfig)
    sp: SPConfig = field(default_factory=SPConfig)
    pkt: PKTConfig = field(default_factory=PKTConfig)
    rkd: RKDConfig = field(default_factory=RKDConfig)
    crd: CRDConfig = field(default_factory=CRDConfig)
    dkd: DKDConfig = field(default_factory=DKDConfig)
    mars: MarsConfig = field(default_factory=MarsConfig)
    hallucination: HallucinationConfig = field(default_factory=HallucinationConfig)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pad: PadConfig = field(default_factory=PadConfig)
    teacher: Optional[list[str]] = None  # teacher modalities; None = every modality in the data
    student: list[str] = field(default_factory=lambda: ["gyro"])
    # The default compares the baseline, classic KD, RKD (the method that pays off most often,
    # benchmarks/SCIENCE.md §8) and MMH on 5 independent seeds (t = 2.78 instead of 4.30 for 3); `--methods all`
    # adds every other method and the ensembles.
    methods: list[str] = field(default_factory=lambda: ["unimodal", "kd", "rkd", "mmh"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    # How the run picks the network to deploy, on validation only (engine.results.recommend): significant = the
    # best distilled single-network student whose validation gain over unimodal is significant (its 95 %
    # t-interval above 0), else unimodal | best = the highest mean validation accuracy, however small the gain
    recommend: str = "significant"
    # TensorBoard event files of every student in RUN/tensorboard/<method>-seed<s>/ (`tensorboard --logdir RUN`):
    # auto = when the tensorboard package is installed (pip install "mmhal[tensorboard]") | true (refused without
    # it) | false
    tensorboard: str = "auto"
    teacher_seed: int = 0
    # A trained teacher to distil instead of the cached one: the models/teacher.pt of an earlier run
    # (same data and modalities, same model settings). Empty: the cache (trained there when missing).
    teacher_path: str = ""
    out: str = ""  # run folder; empty = runs/<dataset>-<student>-<date-time>
    cache_dir: str = field(default_factory=default_cache_dir)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    # Student trainings run in parallel processes on CPU (1 thread each is faster than 2 threads for
    # small models); 0 = min(2, CPU count). On a GPU they run one after another.
    workers: int = 0
    # Where the student jobs train: local (this machine's worker processes) | ray (each a task on a Ray cluster at
    # ray_address, else Ray's RAY_ADDRESS, else a Ray instance started here; engine/rayjobs.py)
    executor: str = "local"
    ray_address: str = ""
    progress: bool = True
    # Per-method settings, e.g. {kd: {distill.kd_alpha: 0.7, train.lr: 0.002}}: a method's students train
    # with these train.* / distill.* values instead of the common ones (what `mmhal tune` writes). Members
    # of an ensemble use their own method's entry (mmh-ensemble: rad's and dad's).
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Standard learners fitted beside the networks on the student's and the teacher's modalities, as reference rows
    # (engine.learners): hgb | logreg | lgbm (where lightgbm is installed) | gd (generalized distillation); only
    # for vectors, sequences and small images held in memory. [] = none.
    learners: list[str] = field(default_factory=lambda: ["hgb", "logreg", "lgbm", "gd"])


METHOD_OVERRIDE_SECTIONS = ("train.", "distill.")

# Settings that name files or folders. A saved config.yaml holds them as absolute paths, so the run can be
# repeated from any folder (``absolute_paths``); data.name only where it is a path, not a dataset's name.
PATH_KEYS = ("data.name", "data.path", "teacher_path", "model.weights", "cache_dir")


# ----------------------------------------------------------------------------- values by declared type
# OmegaConf holds the configuration as a typed tree made from the dataclasses above: it converts every value
# to its field's declared type and refuses one that does not fit (1.5 or `abc` for an integer, [0, a] for a
# list of integers, a list for a text value, an unknown key), then turns the tree back into the dataclasses.
# What it does not know are the command line's conventions, applied here before a value reaches it (_normal):
# a list written as 0,1,2 or as one value, null words for Optional fields, text fields that keep the text as
# typed (out=01 stays "01", not 1), whole numbers written as 2.0 or 1e3, and no NaN or infinity.

_NONE_WORDS = ("", "null", "none", "~")  # what an Optional field reads as None
_KINDS = {bool: "true/false", int: "an integer", float: "a finite number", str: "a single text value"}
_YAML_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 1e-3: text to YAML 1.1, a number to users


class _Text(str):
    """The value of a ``key=value`` override as typed, before it is read as YAML: string fields keep it verbatim."""


@functools.cache
def _schema(cls: type) -> DictConfig:
    """The typed OmegaConf tree of dataclass ``cls`` at its defaults; built once (~0.1 s), callers copy it."""
    return OmegaConf.structured(cls)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@functools.cache
def _leaf_keys(cls: Optional[type] = None, prefix: str = "") -> tuple[str, ...]:
    """Every dotted key of a setting below dataclass ``cls`` (default RunConfig), for did-you-mean hints."""
    keys: list[str] = []
    for name, tp in _hints(cls or RunConfig).items():
        keys += _leaf_keys(tp, f"{prefix}{name}.") if dataclasses.is_dataclass(tp) else [prefix + name]
    return tuple(keys)


def _expects(tp: Any) -> str:
    """The declared type ``tp`` of a config field in words, as an error message names it."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        return f"{_expects(inner[0])} or null" if len(inner) == 1 else "a value"
    if origin is list:
        elem = args[0] if args else str
        words = {bool: "true/false values", int: "integers", float: "numbers", str: "names"}
        example = {int: "0,1,2 or [0, 1, 2]", float: "0.5,1 or [0.5, 1]", str: "acc,gyro or [acc, gyro]"}
        return f"a list of {words.get(elem, 'values')} (e.g. {example.get(elem, 'a,b or [a, b]')})"
    if origin is dict:
        return "a mapping"
    return _KINDS.get(tp, "a value")


def _shown(value: Any) -> str:
    return "null" if value is None else f"'{value}'" if isinstance(value, str) else str(value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a mapping that names a key twice is an error (PyYAML keeps the last one silently,
    so a recipe with ``train:`` twice would drop the first block without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' appears twice in one mapping (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice in one mapping (``_UniqueKeyLoader``)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _bad(key: str, tp: Any, got: Any) -> UserError:
    return UserError(f"config key '{key}' expects {_expects(tp)}, got {_shown(got)}")


def _parse(text: str, key: str = "") -> Any:
    """An override's text read as YAML (``""`` stays ``""``; text that is not valid YAML stays text, except an
    unclosed bracket, which is an error naming ``key``)."""
    if not text.strip():
        return ""
    try:
        value = load_yaml(text)
    except yaml.constructor.ConstructorError as exc:
        if "appears twice" in str(exc.problem):
            raise UserError(f"config key '{key}': {exc.problem}; give it once") from None
        return text
    except yaml.YAMLError:
        if text.count("[") + text.count("{") > text.count("]") + text.count("}"):
            raise UserError(f"config key '{key}' has an unclosed bracket in '{text}'; write the value without "
                            f"spaces (e.g. {key}=[2,1]) or quote it") from None
        return text
    return float(value) if isinstance(value, str) and _YAML_EXPONENT.fullmatch(value) else value


def _number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a number or text of one (never a bool); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("${") and value.strip().endswith("}")


def _normal(value: Any, tp: Any, key: str, got: Any) -> Any:
    """``value`` (from a YAML recipe, or a ``_Text`` override) for the field ``key`` of declared type ``tp``, in
    the command line's conventions made plain for OmegaConf (which then converts and checks it): a list from
    a comma-separated text or one value, None from a null word, text as typed, whole numbers, finite floats.
    ``got`` is the whole value, for errors about a list element."""
    if _is_interpolation(value):
        return value
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        return _normal(value, next(a for a in args if a is not type(None)), key, got)
    if origin is list:
        if isinstance(value, _Text):
            text = value.strip()
            if text.startswith("["):
                value = _parse(text, key)
            else:
                value = [_Text(v.strip()) for v in text.split(",") if v.strip()]
        elif isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif value is not None and not isinstance(value, (list, tuple, dict)):
            value = [value]  # one value: a list of one
        if isinstance(value, (list, tuple)):
            value = [_normal(v, args[0], key, got) for v in value]
        return value  # anything else OmegaConf refuses
    if origin is dict:
        return _method_overrides(value, key)
    if isinstance(value, _Text):
        parsed = _parse(value, key)
        if tp is str and not isinstance(parsed, (list, dict)):
            # YAML would turn `01` into 1 and `yes` into True; a text field keeps the text (quotes removed).
            return parsed if isinstance(parsed, str) else value.strip()
        value = parsed
    if tp is str and isinstance(value, bool):
        return "true" if value else "false"  # a recipe's `dad_global: true`
    number = _number(value) if tp in (int, float, bool) else None
    if number is not None and (not math.isfinite(number) or (tp is bool and number not in (0, 1))):
        raise _bad(key, tp, got)  # OmegaConf would take NaN and infinity as numbers, and 2 as true
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value  # exact: a float would round 2**53 + 1 (a seed) to another number
    if tp is int and isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    if tp is int and number is not None and number == int(number):
        if abs(number) >= 2**53:  # a float this large is not an exact whole number
            raise UserError(f"config key '{key}' expects an exact integer, got {_shown(got)} (write it without a "
                            "decimal point or exponent)")
        return int(number)  # a whole number written as 2.0 or 1e3
    return value


def _assign(conf: DictConfig, cls: type, key: str, value: Any, shown: Optional[str] = None) -> None:
    """Set the dotted ``key`` of ``conf`` (the typed tree of dataclass ``cls``) to ``value``: a ``_Text`` as typed
    on the command line or a value read from YAML; a mapping given for a section sets each key it names.
    ``shown`` is the key as errors name it. A UserError in one sentence for an unknown key or a value that
    does not fit the key's declared type."""
    shown = shown or key
    parts = key.split(".")
    tp: Any = cls
    for i, name in enumerate(parts):
        if get_origin(tp) is dict:  # method_overrides.<method>[.<train.*/distill.* key>]
            _assign_method_override(conf, ".".join(parts[:i]), name, ".".join(parts[i + 1:]), value, shown)
            return
        if not dataclasses.is_dataclass(tp):
            above = ".".join(parts[:i])
            raise UserError(f"config key '{shown}' goes below '{above}', which holds a value, not settings")
        if name not in _hints(tp):
            here = shown[: len(shown) - len(key)] + "".join(p + "." for p in parts[:i])
            raise _unknown_key(shown, here, name, ".".join(parts[i + 1:]), tp)
        tp = _hints(tp)[name]
    if dataclasses.is_dataclass(tp):  # a section: data={name: x.npz, split_seed: 3}
        mapping = _parse(value, shown) if isinstance(value, _Text) else value
        if not isinstance(mapping, dict):
            raise UserError(f"config key '{shown}' is a section of settings and expects a mapping such as "
                            f"{{key: value}}, got {_shown(value)}")
        for k, v in mapping.items():
            _assign(conf, cls, f"{key}.{k}", v, f"{shown}.{k}")
        return
    normal = _normal(value, tp, shown, value)
    try:
        OmegaConf.update(conf, key, normal, merge=False)
    except OmegaConfBaseException:
        raise _bad(shown, tp, value) from None


def _unknown_key(shown: str, here: str, name: str, rest: str, cls: type) -> UserError:
    """The error for the unknown ``name`` (after the dotted prefix ``here``, before ``rest``) in the key ``shown``,
    with a did-you-mean: a close name at that level, else the same name in another section."""
    known = sorted(_hints(cls))
    close = difflib.get_close_matches(name, known, n=1)
    elsewhere = [k for k in _leaf_keys() if k.rsplit(".", 1)[-1] == name] if not rest else []
    if close:
        hint = f"did you mean '{here}{close[0]}{'.' + rest if rest else ''}'?"
    elif elsewhere:
        hint = f"did you mean '{elsewhere[0]}'?"
    else:
        hint = f"known keys {'under ' + repr(here[:-1]) if here else 'at the top level'}: {', '.join(known)}"
    return UserError(f"unknown config key '{shown}'; {hint}")


def _method_overrides(value: Any, key: str) -> dict:
    """A ``method_overrides`` value checked and typed: {method: {train.*/distill.* key: value}}."""
    if isinstance(value, _Text):
        value = _parse(value, key)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
        raise UserError(f"config key '{key}' expects a mapping of method names to mappings of train.*/distill.* "
                        "keys, e.g. {kd: {distill.kd_alpha: 0.7}}")
    return {str(m): {k: _method_setting(str(m), k, v) for k, v in _flat_settings(s or {}).items()}
            for m, s in value.items()}


def _flat_settings(settings: dict) -> dict:
    """Dotted ``settings`` with a mapping given for a section (``distill.fitnet: {beta: 50}``) spread into one key
    per setting it names (``distill.fitnet.beta: 50``), so that the section's other settings keep their values."""
    out: dict = {}
    for key, value in settings.items():
        key = str(key)
        tp: Any = RunConfig
        for part in key.split("."):
            tp = _hints(tp).get(part) if dataclasses.is_dataclass(tp) else None
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            out.update(_flat_settings({f"{key}.{k}": v for k, v in value.items()}))
        else:
            out[key] = value
    return out


def _assign_method_override(conf: DictConfig, field_key: str, method: str, setting: str, value: Any,
                            shown: str) -> None:
    """``method_overrides.<method>=MAPPING`` (null: drop it) or ``method_overrides.<method>.<setting>=VALUE``."""
    current = OmegaConf.to_container(OmegaConf.select(conf, field_key))
    entry = _parse(value, shown) if isinstance(value, _Text) else value
    if setting:
        current[method] = {**current.get(method, {}), setting: entry}
    elif entry in (None, ""):
        current.pop(method, None)
    else:
        current[method] = entry
    OmegaConf.update(conf, field_key, _method_overrides(current, field_key), merge=False)


def _method_setting(method: str, key: str, value: Any) -> Any:
    """``value`` of the train.*/distill.* ``key`` in ``method_overrides.<method>``, converted to its declared type."""
    if not key.startswith(METHOD_OVERRIDE_SECTIONS):
        raise UserError(f"method_overrides.{method} sets '{key}'; a method may set only train.* and distill.* keys")
    section, _, rest = key.partition(".")
    cls = _hints(RunConfig)[section]
    conf = copy.deepcopy(_schema(cls))
    _assign(conf, cls, rest, value, f"method_overrides.{method}.{key}")
    node = OmegaConf.select(conf, rest)
    return OmegaConf.to_container(node) if isinstance(node, Container) else node


def _to_object(conf: DictConfig) -> Any:
    """The dataclasses of the typed tree ``conf`` (interpolations such as ``${data.name}`` resolved)."""
    try:
        return OmegaConf.to_object(conf)
    except OmegaConfBaseException as exc:
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        raise UserError(f"config key '{exc.full_key}' cannot be resolved ({reason})") from None


def _fresh() -> DictConfig:
    """The typed tree of the default RunConfig."""
    conf = copy.deepcopy(_schema(RunConfig))
    conf.cache_dir = default_cache_dir()  # read now: $MMHAL_CACHE may have changed since the schema was built
    return conf


# ----------------------------------------------------------------------------- the public functions
def method_config(cfg: "RunConfig", method: str, extra: Optional[dict] = None) -> "RunConfig":
    """The configuration method ``method``'s students train with: ``cfg`` with
    ``cfg.method_overrides[method]`` and then ``extra`` (dotted train.*/distill.* keys) applied; ``cfg``
    itself when there is nothing to apply. A UserError for a key outside train.* and distill.*."""
    overrides = {**_flat_settings(cfg.method_overrides.get(method, {})), **_flat_settings(extra or {})}
    if not overrides:
        return cfg
    out = copy.deepcopy(cfg)
    for key, value in overrides.items():
        key = str(key)
        _set_dotted(out, key, _method_setting(method, key, value))
    out.method_overrides = {}
    try:
        validate(out)
    except UserError as exc:
        raise UserError(f"method_overrides.{method}: {exc}") from None
    return out


def _set_dotted(obj: Any, key: str, value: Any) -> None:
    """Set the dotted ``key`` (``distill.fitnet.beta``) of the dataclass ``obj`` to a typed ``value``."""
    *path, name = key.split(".")
    for part in path:
        obj = getattr(obj, part)
    setattr(obj, name, value)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def join_overrides(items: list[str]) -> list[str]:
    """``key=value`` overrides as the shell passed them, with a value it split at spaces joined again: an
    unquoted ``distill.rad_levels=[2, 1]`` arrives as ``distill.rad_levels=[2,`` and ``1]``."""
    joined: list[str] = []
    for item in items:
        prev = joined[-1] if joined else ""
        opened = prev.partition("=")[2].lstrip().startswith(("[", "{"))  # a list or mapping value, not a file name
        if opened and prev.count("[") + prev.count("{") > prev.count("]") + prev.count("}"):
            joined[-1] = f"{prev} {item}"
        else:
            joined.append(item)
    return joined


def read_recipe(path: str) -> dict:
    """The mapping in the YAML file ``path``; a UserError in one sentence when it is missing or not one."""
    p = Path(path)
    why = not_a_file(p, "a YAML file")
    if why:
        raise UserError(f"config file '{path}' {why}")
    try:
        mapping = load_yaml(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config file '{path}' cannot be read ({type(exc).__name__})") from None
    except yaml.constructor.ConstructorError as exc:
        if "appears twice" not in str(exc.problem):
            raise UserError(f"config file '{path}' is not valid YAML ({str(exc).splitlines()[0]})") from None
        raise UserError(f"config file '{path}': {exc.problem}; give it once (only the last would count)") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file '{path}' is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(mapping, dict):
        raise UserError(f"config file '{path}' must hold a mapping of keys to values")
    return mapping


def apply_mapping(cfg: RunConfig, mapping: dict) -> RunConfig:
    """``cfg`` (changed in place, and returned) with the nested ``mapping`` of a recipe or config.yaml applied."""
    conf = OmegaConf.structured(cfg)
    for k, v in mapping.items():
        _assign(conf, RunConfig, str(k), v)
    new = _to_object(conf)
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, getattr(new, f.name))
    return cfg


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> RunConfig:
    """Defaults, then the YAML recipe at ``path``, then ``key=value`` overrides (dotted keys); validated.

    Relative paths, in a recipe as in an override, are relative to the current directory (as every path on
    the command line); ``save_config`` writes them as absolute paths.
    """
    conf = _fresh()
    recipe = read_recipe(path) if path else {}
    try:
        for k, v in recipe.items():
            _refuse_a_number_of_seeds(str(k), v)
            _assign(conf, RunConfig, str(k), v)
    except UserError as exc:
        raise UserError(f"config file '{path}': {exc}") from None
    for item in join_overrides(list(overrides or [])):
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value (e.g. train.lr=0.001)")
        key, _, value = item.partition("=")
        _refuse_a_number_of_seeds(key.strip(), value)
        _assign(conf, RunConfig, key.strip(), _Text(value))
    cfg = _to_object(conf)
    validate(cfg)
    return cfg


def has_tensorboard() -> bool:
    """Whether the tensorboard package (the optional extra ``mmhal[tensorboard]``) is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def writes_tensorboard(cfg) -> bool:
    """Whether a run writes TensorBoard event files (``tensorboard``: true, or auto with the package installed)."""
    return cfg.tensorboard == "true" or (cfg.tensorboard == "auto" and has_tensorboard())


def _refuse_a_number_of_seeds(key: str, value: Any) -> None:
    """``seeds`` given one whole number (``seeds=3`` in an override, ``seeds: 3`` in a recipe) could mean the seed
    numbered 3 or, as ``--seeds 3`` does, three seeds: refused, with both spellings that cannot be mistaken."""
    if key != "seeds":
        return
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():  # a negative one is refused as a seed out of range
        return
    n = int(text)
    three = ", ".join(str(i) for i in range(min(max(n, 1), 3))) + (", ..." if n > 3 else "")
    many = f"{n} seed" + ("s" if n != 1 else "")
    raise UserError(f"seeds={text} could mean the seed numbered {n} or {many}; write seeds=[{n}] for that one seed, "
                    f"or --seeds {n} (seeds=[{three}]) for {many}")


def _validate_cefa(c: CefaConfig) -> None:
    """The data.cefa.* filters: known ethnicities, PAI/device/session codes, [first, last] ID ranges."""
    for key in ("train_races", "test_races"):
        bad = [r for r in getattr(c, key) if str(r).upper() not in ("AF", "CA", "EA")]
        if bad:
            raise UserError(f"data.cefa.{key} holds '{bad[0]}'; the CeFA ethnicities are AF, CA and EA")
    for key, hi, what in (("train_pais", 4, "PAIs are 1 real, 2 print, 3 photo, 4 replay"),
                          ("test_pais", 4, "PAIs are 1 real, 2 print, 3 photo, 4 replay"),
                          ("devices", 4, "devices are 1 to 4"), ("sessions", 3, "sessions are 1 to 3")):
        bad = [v for v in getattr(c, key) if not 1 <= v <= hi]
        if bad:
            raise UserError(f"data.cefa.{key} holds {bad[0]}; the CeFA {what}")
    for key in ("train_ids", "dev_ids", "test_ids"):
        r = getattr(c, key)
        if r and (len(r) != 2 or r[0] < 0 or r[0] > r[1]):
            raise UserError(f"data.cefa.{key} must be a range [first, last] of subject IDs with 0 <= first <= last, got {r}")
    if c.frames_per_video < 0:
        raise UserError(f"data.cefa.frames_per_video must be 0 (every frame) or more, got {c.frames_per_video}")


def _validate_baselines(d: DistillConfig) -> None:
    """The baseline methods' sections: weights 0 or more, FitNet's regressor, AT's exponent, DKD's warm-up."""
    for key in ("fitnet.beta", "at.beta", "sp.gamma", "pkt.beta", "rkd.distance", "rkd.angle", "crd.beta", "dkd.alpha",
                "dkd.beta", "mars.alpha", "hallucination.gamma"):
        section, _, name = key.partition(".")
        value = getattr(getattr(d, section), name)
        if value < 0:
            raise UserError(f"distill.{key} is a loss weight and must be 0 or more, got {value}")
    if d.fitnet.regressor not in ("conv", "none"):
        raise UserError(f"distill.fitnet.regressor must be 'conv' (1x1 convolution + BatchNorm + ReLU) or 'none', "
                        f"got '{d.fitnet.regressor}'")
    if not d.at.p > 0:
        raise UserError(f"distill.at.p must be positive (the attention map is the channel mean of |F|^p), got {d.at.p}")
    if d.crd.dim < 1 or d.crd.k < 1:
        raise UserError(f"distill.crd.dim and distill.crd.k must be at least 1, got {d.crd.dim} and {d.crd.k}")
    if not d.crd.tau > 0:
        raise UserError(f"distill.crd.tau must be positive (scores are exp(<m, v> / tau)), got {d.crd.tau}")
    if not 0 <= d.crd.momentum < 1:
        raise UserError(f"distill.crd.momentum must be in [0, 1) (1 would never update the memory), got {d.crd.momentum}")
    if d.dkd.warmup < 1:
        raise UserError(f"distill.dkd.warmup must be at least 1 epoch (1: full weight from the first epoch), "
                        f"got {d.dkd.warmup}")


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def _check_finite(obj: Any, prefix: str = "") -> None:
    """Every float setting of the dataclass ``obj`` is a finite number (for configurations built in code)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"config key '{prefix}{f.name}' expects a finite number, got {value}")


def _check_modalities(names: Optional[list[str]], key: str) -> None:
    """Modality names: not empty, no dot (they are the keys ``x.<name>`` of data files), none twice."""
    for name in names or []:
        if not str(name).strip():
            raise UserError(f"{key} holds an empty modality name")
        if "." in str(name):
            raise UserError(f"{key} names the modality '{name}', but a modality name may not hold a dot "
                            f"(data files store modality NAME under the key x.NAME)")
        if names.count(name) > 1:
            raise UserError(f"{key} lists the modality '{name}' twice")


SEED_LIMIT = 2**63  # seeds are 0 .. 2**63 - 1: utils.derive_seed reads 64 bits of a seed, so larger ones would repeat


def _check_ignore_keys(names: list[str]) -> None:
    """data.ignore_keys: names of keys (columns), none empty, none twice, none a modality key ``x.<name>``."""
    for name in names:
        if not str(name).strip():
            raise UserError("data.ignore_keys holds an empty name; list the keys (or manifest columns) to keep unread")
        if str(name).startswith("x."):
            raise UserError(f"data.ignore_keys lists '{name}', a modality key, which mmhal always reads; choose the "
                            "modalities of a run with --teacher and --student instead")
        if names.count(name) > 1:
            raise UserError(f"data.ignore_keys lists '{name}' twice")


LEARNER_NAMES = ("hgb", "logreg", "lgbm", "gd")  # what the setting `learners` may list (engine.learners fits them)


def _check_learners(names) -> None:
    for name in names:
        if name not in LEARNER_NAMES:
            close = difflib.get_close_matches(str(name), LEARNER_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(f"learners holds '{name}', which is not a standard learner{hint}; choose from "
                            f"{', '.join(LEARNER_NAMES)}, or learners=[] for none")
    if len(set(names)) != len(names):
        raise UserError(f"learners names a learner twice ({', '.join(names)}); name each once")


def validate(cfg: RunConfig) -> None:
    """Check the settings' ranges and combinations; a UserError in one sentence naming the first bad one."""
    _check_finite(cfg)
    _check_learners(cfg.learners)
    aug = cfg.data.augment
    if not 0.0 < aug.crop <= 1.0:
        raise UserError(f"data.augment.crop must lie in (0, 1] (the crop's side as a fraction; 1 = off), got {aug.crop}")
    for key in ("rotate", "brightness", "contrast"):
        if getattr(aug, key) < 0:
            raise UserError(f"data.augment.{key} must be 0 or more, got {getattr(aug, key)}")
    if not 0.0 <= aug.brightness < 1.0 or not 0.0 <= aug.contrast < 1.0:
        raise UserError("data.augment.brightness and data.augment.contrast must lie in [0, 1)")
    if not 0.0 <= aug.erase <= 1.0:
        raise UserError(f"data.augment.erase is a probability in [0, 1], got {aug.erase}")
    _check_modalities(aug.photometric_modalities, "data.augment.photometric_modalities")
    if cfg.data.image_size and (len(cfg.data.image_size) not in (1, 2) or min(cfg.data.image_size) < 1):
        raise UserError(f"data.image_size must be one size or [height, width] of 1 or more, got {cfg.data.image_size}")
    crit = str(cfg.pad.criterion).strip().lower()
    if not (crit in ("eer", "min-hter") or re.fullmatch(r"(bpcer|apcer)[1-9][0-9]*", crit) or _is_fraction(crit)):
        raise UserError(f"pad.criterion must be eer, min-hter, bpcer<N>, apcer<N> (e.g. bpcer20) or a fixed threshold "
                        f"in [0, 1] on P(bona fide), got '{cfg.pad.criterion}'")
    if cfg.data.scoring not in ("auto", "sample", "video"):
        raise UserError(f"data.scoring must be auto, sample or video, got '{cfg.data.scoring}'")
    _validate_cefa(cfg.data.cefa)
    _check_ignore_keys(cfg.data.ignore_keys)
    dr = cfg.data.depth_range
    if dr and (len(dr) != 2 or not dr[0] < dr[1]):
        raise UserError(f"data.depth_range must be [lo, hi] with lo < hi (e.g. 500,4500 millimetres), got {list(dr)}")
    for key in ("width", "blocks", "se_reduction"):
        if getattr(cfg.model, key) < 1:
            raise UserError(f"model.{key} must be at least 1, got {getattr(cfg.model, key)}")
    if cfg.train.epochs < 1:
        raise UserError(f"train.epochs must be at least 1, got {cfg.train.epochs}")
    for key in ("min_steps", "patience"):
        if getattr(cfg.train, key) < 0:
            raise UserError(f"train.{key} must be 0 (off) or more, got {getattr(cfg.train, key)}")
    if cfg.train.batch_size < 2:
        raise UserError(f"train.batch_size must be at least 2 (DAD compares samples within a batch), "
                        f"got {cfg.train.batch_size}")
    if cfg.train.schedule not in ("cosine", "authors-face"):
        raise UserError(f"train.schedule must be cosine or authors-face, got '{cfg.train.schedule}'")
    if cfg.train.warmup_epochs < 0:
        raise UserError(f"train.warmup_epochs must be 0 or more, got {cfg.train.warmup_epochs}")
    if cfg.train.threads < 0 or cfg.workers < 0:
        raise UserError("train.threads and workers must be 0 (automatic) or more")
    if cfg.train.optimizer not in ("adamw", "sgd"):
        raise UserError(f"train.optimizer must be 'adamw' or 'sgd', got '{cfg.train.optimizer}'")
    if str(cfg.train.precision) not in ("32", "bf16", "16"):
        raise UserError(f"train.precision must be 32, bf16 or 16, got '{cfg.train.precision}'")
    if cfg.train.loader not in ("memory", "workers"):
        raise UserError(f"train.loader must be 'memory' or 'workers', got '{cfg.train.loader}'")
    if cfg.train.loader_workers < 0:
        raise UserError("train.loader_workers must be 0 or more (0: the DataLoader gathers batches in the training process)")
    if not 0.0 <= cfg.train.ema < 1.0:
        raise UserError(f"train.ema must lie in [0, 1) (0 = no weight averaging), got {cfg.train.ema}")
    if cfg.train.select_on not in ("val_loss", "val_acc"):
        raise UserError(f"train.select_on must be 'val_loss' or 'val_acc', got '{cfg.train.select_on}'")
    if cfg.distill.rad_weighting not in ("uniform", "attention", "confidence", "authors", "authors-ucf101"):
        raise UserError(
            "distill.rad_weighting must be uniform, attention, confidence, authors or authors-ucf101, "
            f"got '{cfg.distill.rad_weighting}'"
        )
    for key, allowed in (("dad_relation", ("similarity", "distance")), ("dad_features", ("trunk", "embedding"))):
        if getattr(cfg.distill, key) not in allowed:
            raise UserError(f"distill.{key} must be {' or '.join(allowed)}, got '{getattr(cfg.distill, key)}'")
    if cfg.tensorboard not in ("auto", "true", "false"):
        raise UserError(f"tensorboard must be auto, true or false, got '{cfg.tensorboard}'")
    if cfg.tensorboard == "true" and not has_tensorboard():
        raise UserError("tensorboard=true needs the tensorboard package, which is not installed: "
                        "pip install \"mmhal[tensorboard]\" (or tensorboard=false)")
    if cfg.executor not in ("local", "ray"):
        raise UserError(f"executor must be local or ray, got '{cfg.executor}'")
    if cfg.recommend not in ("significant", "best"):
        raise UserError(f"recommend must be significant or best, got '{cfg.recommend}'")
    if cfg.distill.ensemble_weight not in ("sum", "mean", "learned"):
        raise UserError(f"distill.ensemble_weight must be sum, mean or learned, got '{cfg.distill.ensemble_weight}'")
    if cfg.distill.dad_variant not in ("batch", "local"):
        raise UserError(f"distill.dad_variant must be 'batch' or 'local', got '{cfg.distill.dad_variant}'")
    dg = cfg.distill.dad_global
    dg = ("true" if dg else "false") if isinstance(dg, bool) else str(dg).lower()
    if dg not in ("auto", "true", "false"):
        raise UserError(f"distill.dad_global must be auto, true or false, got '{cfg.distill.dad_global}'")
    cfg.distill.dad_global = dg
    if not cfg.train.lr > 0:
        raise UserError(f"train.lr must be positive, got {cfg.train.lr}")
    if cfg.train.weight_decay < 0:
        raise UserError(f"train.weight_decay must be 0 or more, got {cfg.train.weight_decay}")
    if not cfg.distill.temperature > 0:
        raise UserError(f"distill.temperature must be positive, got {cfg.distill.temperature}")
    if not 0.0 <= cfg.distill.kd_alpha <= 1.0:
        raise UserError(f"distill.kd_alpha must lie in [0, 1] (the KL term's share of the loss), got {cfg.distill.kd_alpha}")
    if cfg.distill.rad_reproduce_detach_defect and cfg.distill.rad_weighting != "authors":
        raise UserError("distill.rad_reproduce_detach_defect=true reproduces a defect of the authors' attention "
                        "weighting; it needs distill.rad_weighting=authors")
    for key, allowed in (("rad_pool", ("map", "finest")), ("rad_remap", ("none", "square"))):
        if getattr(cfg.distill, key) not in allowed:
            raise UserError(f"distill.{key} must be {' or '.join(allowed)}, got '{getattr(cfg.distill, key)}'")
    if not cfg.distill.rad_levels:
        raise UserError("distill.rad_levels needs at least one pyramid level (grid size per axis), e.g. [4, 2, 1]")
    if min(cfg.distill.rad_levels) < 1:
        raise UserError(f"distill.rad_levels must be grid sizes of 1 or more, got {cfg.distill.rad_levels}")
    for key in ("rad_lambda", "dad_lambda", "dad_angle"):
        if not getattr(cfg.distill, key) >= 0:
            raise UserError(f"distill.{key} must be 0 or more, got {getattr(cfg.distill, key)}")
    if not 0.0 <= cfg.distill.label_smoothing < 1.0:
        raise UserError(f"distill.label_smoothing must lie in [0, 1), got {cfg.distill.label_smoothing}")
    if cfg.distill.dad_k < 1:
        raise UserError(f"distill.dad_k must be at least 1 (neighbours kept per sample), got {cfg.distill.dad_k}")
    _validate_baselines(cfg.distill)
    from .models.network import BACKBONES  # here: config stays importable without torch

    if cfg.model.pool not in ("auto", "mean", "meanmax"):
        raise UserError(f"model.pool must be auto, mean or meanmax, got '{cfg.model.pool}'")
    if cfg.model.pool == "meanmax" and cfg.model.backbone != "small":
        raise UserError(f"model.pool=meanmax applies only to model.backbone=small; {cfg.model.backbone} pools the mean")
    if cfg.model.teacher_fusion not in ("early", "late"):
        raise UserError(f"model.teacher_fusion must be early or late, got '{cfg.model.teacher_fusion}'")
    if cfg.model.backbone not in BACKBONES:
        raise UserError(f"model.backbone must be one of {', '.join(BACKBONES.names())}, got '{cfg.model.backbone}'")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise UserError(f"model.dropout must lie in [0, 1), got {cfg.model.dropout}")
    if not cfg.model.pretrained_lr_mult > 0:
        raise UserError(f"model.pretrained_lr_mult must be positive, got {cfg.model.pretrained_lr_mult}")
    sha = cfg.model.weights_sha256.strip().lower()
    if sha and (len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha)):
        raise UserError(f"model.weights_sha256 must be 64 hexadecimal digits, got '{cfg.model.weights_sha256}'")
    if sha and not cfg.model.weights:
        raise UserError("model.weights_sha256 is set but model.weights names no file to check")
    if not cfg.seeds:
        raise UserError("at least one seed is needed")
    for key, values in (("seeds", cfg.seeds), ("teacher_seed", [cfg.teacher_seed]), ("data.split_seed", [cfg.data.split_seed])):
        bad = next((v for v in values if not 0 <= v < SEED_LIMIT), None)
        if bad is not None:  # a negative seed and seed + 2**64 would draw the same streams (utils.derive_seed)
            raise UserError(f"{key} holds {bad}; a seed is a whole number from 0 to 2**63 - 1")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        dup = next(s for s in cfg.seeds if cfg.seeds.count(s) > 1)
        raise UserError(f"seeds lists the seed {dup} twice; each seed trains one student, so they must differ")
    if not cfg.student:
        raise UserError("the student needs at least one modality")
    _check_modalities(cfg.student, "student")
    _check_modalities(cfg.teacher, "teacher")
    for method in cfg.method_overrides:
        method_config(cfg, method)  # each method's own settings must be valid too


def _names_a_file(name: str) -> bool:
    """Whether data.name is a file's path (a dot or a slash, as ``data.base.load_dataset`` reads it) rather than
    a registered dataset's name (hapt, casia-surf, cefa)."""
    return "/" in name or os.sep in name or "." in name


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` whose path settings (``PATH_KEYS``) are absolute, resolved against the current directory
    (``~`` expanded; symbolic links kept as written)."""
    out = copy.deepcopy(cfg)
    for key in PATH_KEYS:
        section, _, name = key.rpartition(".")
        owner = getattr(out, section) if section else out
        value = getattr(owner, name)
        if value and (key != "data.name" or _names_a_file(value)):
            setattr(owner, name, os.path.abspath(os.path.expanduser(value)))
    return out


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write ``cfg`` as YAML to ``path`` (atomically), with absolute paths so it works from any folder."""
    from .utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(absolute_paths(cfg)), sort_keys=False))

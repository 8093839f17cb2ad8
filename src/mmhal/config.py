"""Typed configuration: dataclasses, filled from a YAML recipe and then ``key=value`` overrides.

The resolved configuration is written into every run folder (``config.yaml``) and a run can be
repeated from it with ``mmhal run --config RUN/config.yaml``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import UserError


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
    # label polarity); cefa: a preset (4@1, 4@2, 4@3, mmh-4@5) or custom (then data.cefa.* say everything).
    protocol: str = "auto"
    # How presentation-attack data are scored: sample (every image) | video (mean score of a video's frames)
    # | auto (video where the data name videos, e.g. cefa).
    scoring: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cefa: CefaConfig = field(default_factory=CefaConfig)  # CeFA protocol filters (see CefaConfig)
    # Splits made by the tool when the data has none (npz without `split`): fractions of groups/samples.
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    # An npz file's own `split` that puts samples of one `group` (person, video, session) in more than one of
    # train/val/test is an error (the test figures would be inflated); true: accept it, with a warning.
    allow_shared_groups: bool = False
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
    # conv1..layer2 per modality and trunk layer3/layer4, images only; models/resnet.py)
    backbone: str = "small"
    se: bool = False  # resnet18: squeeze-excitation (reduction 16) in every residual block (ResNet-18-SE)
    dropout: float = 0.0  # resnet18: dropout before the head, in [0, 1)
    # resnet18: a LOCAL torchvision resnet18 ImageNet state dict (e.g. resnet18-f37072fd.pth); nothing is
    # downloaded. Stems get conv1 (summed over RGB for 1 channel)..layer2, the trunk layer3/layer4; fc is not loaded.
    weights: str = ""
    weights_sha256: str = ""  # when set, the weights file's SHA-256 must equal it (checked before loading)
    pretrained_lr_mult: float = 1.0  # learning-rate multiplier of the parameters loaded from model.weights


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # adamw | sgd (SGD is Nesterov, momentum 0.9, as the reference)
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    select_on: str = "val_loss"  # val_loss | val_acc: which validation figure picks the epoch
    # Exponential moving average of the weights (decay per step; 0 = off): validation, selection and the
    # saved model use the averaged weights (engine.loop.WeightAverage).
    ema: float = 0.0
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    # Compute the frozen teacher's outputs on the train split once and reuse them every epoch
    # (exact while inputs are not randomly augmented; skipped when the cache would exceed 2 GiB).
    cache_teacher: bool = True
    # How a training step runs (docs/scaling.md): "32" fp32 | "bf16" autocast bfloat16 (CPU or CUDA) |
    # "16" autocast float16 with loss scaling (CUDA only). Losses are computed in fp32 in every mode.
    precision: str = "32"
    channels_last: bool = False  # image inputs and 2-D convolutions in NHWC layout (GPU tensor cores)
    compile: bool = False  # torch.compile the network's forward; a compile failure is an error, not a fallback
    # How batches reach the device (docs/scaling.md): "memory" = every split held as tensors on the device
    # (fastest while the data fit) | "workers" = splits in host memory, a DataLoader with loader_workers
    # persistent processes gathers each batch (pinned memory on CUDA). The batches, and so results, are the same.
    loader: str = "memory"
    loader_workers: int = 4


@dataclass
class DistillConfig:
    temperature: float = 2.0  # T for KD and RAD
    kd_alpha: float = 0.5  # KD: (1 - alpha) * CE + alpha * T^2 KL (0.5: the same 1:1 weight as RAD at lambda 1)
    rad_lambda: float = 1.0
    rad_weighting: str = "confidence"  # uniform | attention | confidence
    rad_levels: list[int] = field(default_factory=lambda: [4, 2, 1])  # pyramid grid sizes per axis
    dad_lambda: float = 100.0
    dad_variant: str = "batch"  # batch | local
    dad_k: int = 8  # neighbours kept per sample by the local variant
    # Under torchrun: DAD over the global batch (features gathered from every rank) | false: per-rank
    # shard | auto: true when the job has more than one process (docs/scaling.md). No effect in one process.
    dad_global: str = "auto"
    # Cross-entropy label smoothing (every method's CE term; the teacher's too unless method_overrides.teacher
    # says otherwise). 0 = plain CE.
    label_smoothing: float = 0.0
    # Start a distilled student from the teacher's weights wherever names and shapes match (its own
    # modalities' stems, the trunk and the head; not the fusion layer, whose width differs). unimodal never is.
    init_from_teacher: bool = False


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pad: PadConfig = field(default_factory=PadConfig)
    teacher: Optional[list[str]] = None  # teacher modalities; None = every modality in the data
    student: list[str] = field(default_factory=lambda: ["gyro"])
    # The default compares the baseline, classic KD and MMH on 5 independent seeds (t = 2.78 instead of 4.30
    # for 3); `--methods all` adds RAD, DAD and both ensembles.
    methods: list[str] = field(default_factory=lambda: ["unimodal", "kd", "mmh"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
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
    progress: bool = True
    # Per-method settings, e.g. {kd: {distill.kd_alpha: 0.7, train.lr: 0.002}}: a method's students train
    # with these train.* / distill.* values instead of the common ones (what `mmhal tune` writes). Members
    # of an ensemble use their own method's entry (mmh-ensemble: rad's and dad's).
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


METHOD_OVERRIDE_SECTIONS = ("train.", "distill.")


def method_config(cfg: "RunConfig", method: str, extra: Optional[dict] = None) -> "RunConfig":
    """The configuration method ``method``'s students train with: ``cfg`` with
    ``cfg.method_overrides[method]`` and then ``extra`` (dotted train.*/distill.* keys) applied; ``cfg``
    itself when there is nothing to apply. A UserError for a key outside train.* and distill.*."""
    overrides = {**cfg.method_overrides.get(method, {}), **(extra or {})}
    if not overrides:
        return cfg
    out = copy.deepcopy(cfg)
    for key, value in overrides.items():
        key = str(key)
        if not key.startswith(METHOD_OVERRIDE_SECTIONS):
            raise UserError(f"method_overrides.{method} sets '{key}'; a method may set only train.* and distill.* keys")
        _set(out, key, value, f"method_overrides.{method}.{key}")
    out.method_overrides = {}
    try:
        validate(out)
    except UserError as exc:
        raise UserError(f"method_overrides.{method}: {exc}") from None
    return out


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


class _Text(str):
    """The value of a ``key=value`` override as typed, before it is read as YAML: string fields keep it verbatim."""


_NONE_WORDS = ("", "null", "none", "~")  # what an Optional field reads as None
_KINDS = {bool: "true/false", int: "an integer", float: "a number", str: "a single text value"}


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


def _parse(text: str) -> Any:
    """An override's text read as YAML (``""`` stays ``""``; text that is not valid YAML stays text)."""
    if not text.strip():
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(value: Any, tp: Any, key: str, want: Optional[str] = None, got: Any = None) -> Any:
    """``value`` (from a YAML recipe, or a ``_Text`` override) converted to the field's declared type ``tp``.

    Handles bool, int, float, str, ``Optional[X]`` (null/none/empty give None) and ``list[X]`` (a YAML list,
    a comma-separated string or one value); anything else is a UserError naming ``key`` and the type.
    ``want`` and ``got`` are the whole field's type in words and the whole value, for errors about a list element.
    """
    if want is None:
        want, got = _expects(tp), value

    def bad() -> UserError:
        shown = "null" if got is None else f"'{got}'" if isinstance(got, str) else str(got)
        return UserError(f"config key '{key}' expects {want}, got {shown}")

    origin, args = get_origin(tp), get_args(tp)
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        return _coerce(value, inner[0], key, want, got) if len(inner) == 1 else value
    if origin is list:
        elem = args[0] if args else str
        if isinstance(value, _Text) and value.strip().startswith("["):
            value = _parse(value)
        if isinstance(value, str):
            value = [_Text(v.strip()) if isinstance(value, _Text) else v.strip() for v in value.split(",") if v.strip()]
        elif value is None or isinstance(value, dict):
            raise bad()
        elif not isinstance(value, (list, tuple)):
            value = [value]  # one value: a list of one
        return [_coerce(v, elem, key, want, got) for v in value]

    if origin is dict:  # method_overrides: {method: {dotted key: value}}, checked by method_config in validate
        if isinstance(value, _Text):
            value = _parse(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise UserError(f"config key '{key}' expects a mapping of method names to mappings of "
                            "train.*/distill.* keys, e.g. {kd: {distill.kd_alpha: 0.7}}")
        return {str(k): {str(kk): vv for kk, vv in v.items()} for k, v in value.items()}
    if isinstance(value, _Text):
        parsed = _parse(value)
        if tp is str and not isinstance(parsed, (list, dict)):
            # YAML would turn `01` into 1 and `yes` into True; a string field keeps the text (quotes removed).
            return parsed if isinstance(parsed, str) else value.strip()
        value = parsed
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    value = float(value.strip())
                except ValueError:
                    raise bad() from None
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return int(value)  # a whole number written as 2.0 or 1e3
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise bad() from None
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None or isinstance(value, (list, tuple, dict)):
            raise bad()
        return str(value)
    return value


def _set(obj: Any, dotted: str, value: Any, full: str) -> None:
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise UserError(f"unknown config key '{full}'; known at this level: {', '.join(sorted(names))}")
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise UserError(f"config key '{full}' goes below '{head}', which is a value")
        _set(current, rest, value, full)
    elif dataclasses.is_dataclass(current):
        if isinstance(value, _Text):
            value = _parse(value)
        if not isinstance(value, dict):
            raise UserError(f"config key '{full}' expects a mapping")
        for k, v in value.items():
            _set(current, str(k), v, f"{full}.{k}")
    else:
        setattr(obj, head, _coerce(value, get_type_hints(type(obj))[head], full))


def apply_mapping(cfg: RunConfig, mapping: dict) -> RunConfig:
    for k, v in mapping.items():
        _set(cfg, str(k), v, str(k))
    return cfg


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> RunConfig:
    """Defaults, then the YAML recipe at ``path``, then ``key=value`` overrides (dotted keys)."""
    cfg = RunConfig()
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file '{path}' does not exist")
        try:
            mapping = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"config file '{path}' is not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(mapping, dict):
            raise UserError(f"config file '{path}' must hold a mapping of keys to values")
        apply_mapping(cfg, mapping)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value")
        key, _, value = item.partition("=")
        _set(cfg, key.strip(), _Text(value), key.strip())
    validate(cfg)
    return cfg


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


def _is_fraction(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def validate(cfg: RunConfig) -> None:
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
    if cfg.data.image_size and (len(cfg.data.image_size) not in (1, 2) or min(cfg.data.image_size) < 1):
        raise UserError(f"data.image_size must be one size or [height, width] of 1 or more, got {cfg.data.image_size}")
    crit = str(cfg.pad.criterion).strip().lower()
    if not (crit in ("eer", "min-hter") or re.fullmatch(r"(bpcer|apcer)[1-9][0-9]*", crit) or _is_fraction(crit)):
        raise UserError(f"pad.criterion must be eer, min-hter, bpcer<N>, apcer<N> (e.g. bpcer20) or a fixed threshold "
                        f"in [0, 1] on P(bona fide), got '{cfg.pad.criterion}'")
    if cfg.data.scoring not in ("auto", "sample", "video"):
        raise UserError(f"data.scoring must be auto, sample or video, got '{cfg.data.scoring}'")
    _validate_cefa(cfg.data.cefa)
    if cfg.train.epochs < 1:
        raise UserError("train.epochs must be at least 1")
    if cfg.train.batch_size < 2:
        raise UserError("train.batch_size must be at least 2 (DAD compares samples within a batch)")
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
    if cfg.distill.rad_weighting not in ("uniform", "attention", "confidence"):
        raise UserError(
            f"distill.rad_weighting must be uniform, attention or confidence, got '{cfg.distill.rad_weighting}'"
        )
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
    if cfg.distill.temperature <= 0:
        raise UserError("distill.temperature must be positive")
    if not 0.0 <= cfg.distill.kd_alpha <= 1.0:
        raise UserError(f"distill.kd_alpha must lie in [0, 1] (the KL term's share of the loss), got {cfg.distill.kd_alpha}")
    if not cfg.distill.rad_levels:
        raise UserError("distill.rad_levels needs at least one pyramid level (grid size per axis), e.g. [4, 2, 1]")
    if min(cfg.distill.rad_levels) < 1:
        raise UserError(f"distill.rad_levels must be grid sizes of 1 or more, got {cfg.distill.rad_levels}")
    for key in ("rad_lambda", "dad_lambda"):
        if getattr(cfg.distill, key) < 0:
            raise UserError(f"distill.{key} must be 0 or more, got {getattr(cfg.distill, key)}")
    if not 0.0 <= cfg.distill.label_smoothing < 1.0:
        raise UserError(f"distill.label_smoothing must lie in [0, 1), got {cfg.distill.label_smoothing}")
    if cfg.distill.dad_k < 1:
        raise UserError(f"distill.dad_k must be at least 1 (neighbours kept per sample), got {cfg.distill.dad_k}")
    from .models.network import BACKBONES  # here: config stays importable without torch

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
    if len(set(cfg.seeds)) != len(cfg.seeds):
        dup = next(s for s in cfg.seeds if cfg.seeds.count(s) > 1)
        raise UserError(f"seeds lists the seed {dup} twice; each seed trains one student, so they must differ")
    if not cfg.student:
        raise UserError("the student needs at least one modality")
    for method in cfg.method_overrides:
        method_config(cfg, method)  # each method's own settings must be valid too


def save_config(cfg: RunConfig, path: Path) -> None:
    from .utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

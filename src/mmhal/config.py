"""Typed configuration: dataclasses, filled from a YAML recipe and then ``key=value`` overrides.

The resolved configuration is written into every run folder (``config.yaml``) and a run can be
repeated from it with ``mmhal run --config RUN/config.yaml``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import UserError


def default_cache_dir() -> str:
    """Where converted datasets and trained teachers are cached (``$MMHAL_CACHE`` or ``~/.cache/mmhal``)."""
    return os.environ.get("MMHAL_CACHE") or str(Path.home() / ".cache" / "mmhal")


@dataclass
class DataConfig:
    name: str = "hapt"  # a registered dataset name, or a path to a .npz file
    path: Optional[str] = None  # root folder / file for datasets that need one
    # Splits made by the tool when the data has none (npz without `split`): fractions of groups/samples.
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    # HAPT: train subjects held out for validation (model selection). Six of the 21 train subjects:
    # three left validation accuracy at 97-99 % for every epoch, so epoch choice was noise.
    hapt_val_subjects: list[int] = field(default_factory=lambda: [5, 11, 16, 22, 27, 30])


@dataclass
class ModelConfig:
    width: int = 12  # base width: stem -> 2*width channels, trunk stages 4*width and 8*width
    blocks: int = 1  # residual blocks per stage (ResNet-18 has 2)
    se_reduction: int = 4  # squeeze-excitation reduction ratio in the fusion layer


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # adamw | sgd (SGD is Nesterov, momentum 0.9, as the reference)
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    select_on: str = "val_loss"  # val_loss | val_acc: which validation figure picks the epoch
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


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: Optional[list[str]] = None  # teacher modalities; None = every modality in the data
    student: list[str] = field(default_factory=lambda: ["gyro"])
    methods: list[str] = field(
        default_factory=lambda: ["unimodal", "kd", "rad", "dad", "mmh", "mmh-ensemble"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
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


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, example: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the type of the dataclass field's current value."""
    if isinstance(example, bool):
        if isinstance(value, str):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise UserError(f"config key '{key}' expects true/false, got '{value}'")
        return bool(value)
    if isinstance(example, int) and not isinstance(example, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}' expects an integer, got '{value}'") from None
    if isinstance(example, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}' expects a number, got '{value}'") from None
    if isinstance(example, list) or (example is None and isinstance(value, (list, str))):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if example:
            value = [_coerce(v, example[0], key) for v in value]
        return list(value)
    if isinstance(value, (list, dict)) and isinstance(example, str):
        raise UserError(f"config key '{key}' expects a single value, got '{value}'")
    return value if value is None else (str(value) if isinstance(example, str) else value)


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
        if not isinstance(value, dict):
            raise UserError(f"config key '{full}' expects a mapping")
        for k, v in value.items():
            _set(current, str(k), v, f"{full}.{k}")
    else:
        setattr(obj, head, _coerce(value, current, full))


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
        _set(cfg, key.strip(), yaml.safe_load(value) if value.strip() else "", key.strip())
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
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
    if cfg.distill.temperature <= 0:
        raise UserError("distill.temperature must be positive")
    if not cfg.seeds:
        raise UserError("at least one seed is needed")
    if not cfg.student:
        raise UserError("the student needs at least one modality")


def save_config(cfg: RunConfig, path: Path) -> None:
    from .utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

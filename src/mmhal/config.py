"""Typed configuration: dataclasses, filled from a YAML recipe and then ``key=value`` overrides.

The resolved configuration is written into every run folder (``config.yaml``) and a run can be
repeated from it with ``mmhal run --config RUN/config.yaml``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

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
    # An npz file's own `split` that puts samples of one `group` (person, video, session) in more than one of
    # train/val/test is an error (the test figures would be inflated); true: accept it, with a warning.
    allow_shared_groups: bool = False
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

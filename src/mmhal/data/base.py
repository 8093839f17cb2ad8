"""The data model: a dataset is a sequence of samples ``{modality name: tensor}`` plus a label.

Every dataset carries, per sample, integer labels 0..K-1, a ``split`` (``train``/``val``/``test``) and
optionally a ``group`` (subject, video), and for presentation-attack data a ``bona_fide`` flag (True =
bona fide, whatever the release's label polarity), an attack ``species`` and a scoring ``video``.
There are three implementations of how the samples themselves are held:

* :class:`MultimodalData` (``in_memory``): one float32 array per modality, all with first dimension N;
* ``data.files.FileData``: one file path per sample and modality, decoded on demand (in DataLoader
  workers), so nothing requires the whole dataset in memory;
* ``data.frames.ClipData``: action clips, one folder of frames per sample and modality, decoded on demand;
  which frames and crops a sample gives depends on the split (``sample(i, modalities, mode, seed, epoch)``).

Both give ``read(i, modalities)`` (one sample as tensors) and ``shapes``; shapes per sample decide the
input kind: (D,) vector, (C, L) sequence, (C, H, W) image, (C, T, H, W) clip.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import DataError
from ..registry import Registry

SPLITS = ("train", "val", "test")
KINDS = {1: "vector", 2: "sequence", 3: "image", 4: "clip"}

#: name -> loader(cfg: DataConfig) -> MultimodalData
DATASETS: Registry[Callable[..., "MultimodalData"]] = Registry("dataset")
register_dataset = DATASETS.register

#: Registered datasets read from a release's folder of files: they need that folder (``--root DIR``, data.path).
FOLDER_DATASETS = ("casia-surf", "cefa", "nw-ucla", "ntu60", "ucf101", "hmdb51")
#: Registered names that are formats rather than datasets (``--data`` takes a file path for them).
FORMAT_NAMES = ("npz", "manifest")


@functools.lru_cache(maxsize=1)
def _reserved_names() -> frozenset[str]:
    """Names a modality may not take: the attributes of ``torch.nn.ModuleDict``, which holds the per-modality
    stems and norms of every network (``nn.ModuleDict(...)["type"] = stem`` raises a KeyError)."""
    import torch

    return frozenset(dir(torch.nn.ModuleDict()))


def modality_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot name a modality, as the end of a sentence (None when it can): modality names become
    module names in the networks, so they may not be empty, hold a dot, or be a ``torch.nn.ModuleDict`` attribute."""
    if not name:
        return "is empty"
    if "." in name:
        return "holds a dot, not allowed in a modality name (it becomes a module name in the network)"
    if name in _reserved_names():
        return "is taken by an attribute of the network's module dictionaries (torch.nn.ModuleDict)"
    return None


def input_kind(sample_shape: tuple[int, ...]) -> str:
    """The input kind of one sample's shape: vector, sequence, image or clip."""
    if len(sample_shape) not in KINDS:
        raise DataError(
            f"a modality with per-sample shape {tuple(sample_shape)} is not a vector, sequence, image or clip"
        )
    return KINDS[len(sample_shape)]


@dataclass
class MultimodalData:
    name: str
    modalities: dict[str, np.ndarray]  # name -> float32 (N, ...)
    labels: np.ndarray  # int64 (N,)
    split: np.ndarray  # str (N,), each one of SPLITS
    class_names: list[str]
    groups: Optional[np.ndarray] = None  # e.g. subject id per sample
    info: dict = field(default_factory=dict)  # provenance, e.g. how the split was made
    bona_fide: Optional[np.ndarray] = None  # bool (N,): presentation-attack data (labels = bona_fide, 1 = bona fide)
    species: Optional[np.ndarray] = None  # str (N,): attack species ("" for bona fide); None when unknown
    video: Optional[np.ndarray] = None  # str (N,): the scoring unit (frames of one video are scored together)

    in_memory = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {m: tuple(a.shape[1:]) for m, a in self.modalities.items()}

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def read(self, i: int, modalities) -> dict:
        """Sample ``i`` as ``{modality: float32 tensor}`` (a view of the arrays, no copy)."""
        import torch

        return {m: torch.from_numpy(self.modalities[m][i]) for m in modalities}

    def fingerprint(self) -> str:
        """A content hash (labels, split, every modality's bytes): identifies the data a teacher saw."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update("|".join(map(str, self.split.tolist())).encode())
        for m in sorted(self.modalities):
            a = np.ascontiguousarray(self.modalities[m])
            h.update(m.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def check(self) -> None:
        """Validate the invariants every loader must deliver; raises DataError with one sentence."""
        n = len(self.labels)
        for m, a in self.modalities.items():
            if a.shape[0] != n:
                raise DataError(f"modality '{m}' has {a.shape[0]} samples but there are {n} labels")
            input_kind(a.shape[1:])
        check_common(self)


def check_common(data) -> None:
    """The invariants of the per-sample fields every dataset implementation shares (DataError, one sentence)."""
    n = len(data.labels)
    for m in data.shapes:
        problem = modality_name_problem(m)
        if problem:
            raise DataError(f"the modality name '{m}' {problem}; rename it, e.g. '{suggest_modality_name(m)}'")
    for name in ("split", "groups", "bona_fide", "species", "video"):
        a = getattr(data, name)
        if a is not None and len(a) != n:
            raise DataError(f"the data has {n} labels but {len(a)} '{name}' entries")
    for s in SPLITS[:2]:
        if not (data.split == s).any():
            raise DataError(f"the '{s}' split is empty")
    train_classes = set(np.unique(data.labels[data.split == "train"]).tolist())
    missing = [data.class_names[k] for k in range(data.num_classes) if k not in train_classes]
    if missing:
        raise DataError(f"class {missing[0]!r} has no sample in the train split")
    if data.bona_fide is not None and not np.array_equal(data.labels, data.bona_fide.astype(np.int64)):
        raise DataError("presentation-attack data must have labels equal to the bona fide flag (1 = bona fide)")


def suggest_modality_name(name: str) -> str:
    """A usable modality name close to ``name`` (dots become underscores; a reserved name gets a trailing one)."""
    out = name.replace(".", "_") or "m"
    return out if modality_name_problem(out) is None else out + "_"


PAD_CLASSES = ["attack", "bona_fide"]  # class names of presentation-attack data: label 1 = bona fide


def load_dataset(cfg, progress: Optional[bool] = None):
    """Load the dataset named by ``cfg.name``: a registered name, a path to a ``.npz`` file, or a path to
    a ``manifest.csv`` (files on disk, decoded on demand). ``progress``: show a bar while a loader lists many
    folders (None: when stderr is a terminal; loaders without such a step ignore it)."""
    import inspect

    from . import actions, casia_surf, cefa, hapt, manifest, npz  # noqa: F401  (register the built-in loaders)

    name = cfg.name
    if name in FOLDER_DATASETS and not cfg.path:
        raise DataError(f"dataset '{name}' is read from files: give its folder with --root DIR (or data.path)")
    def call(loader, **kw):
        if "progress" in inspect.signature(loader).parameters:
            kw["progress"] = progress
        return loader(cfg, **kw)

    if name.endswith(".csv"):
        data = call(DATASETS.get("manifest"), path=name)
    elif name.endswith(".npz") or (name not in DATASETS and ("/" in name or "." in name)):
        data = call(DATASETS.get("npz"), path=name)
    else:
        data = call(DATASETS.get(name))
    data.check()
    return data

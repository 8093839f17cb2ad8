"""The data model: a sample is ``{modality name: tensor}`` plus a label.

A loaded dataset is a :class:`MultimodalData`: one float32 array per modality, all with the same
first dimension N, integer labels 0..K-1 and a ``split`` array (``train``/``val``/``test``).
Shapes per sample decide the input kind: (D,) vector, (C, L) sequence, (C, H, W) image,
(C, T, H, W) clip.
"""
from __future__ import annotations

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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {m: tuple(a.shape[1:]) for m, a in self.modalities.items()}

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

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
        for s in SPLITS[:2]:
            if not (self.split == s).any():
                raise DataError(f"the '{s}' split is empty")
        train_classes = set(np.unique(self.labels[self.split == "train"]).tolist())
        missing = [self.class_names[k] for k in range(self.num_classes) if k not in train_classes]
        if missing:
            raise DataError(f"class {missing[0]!r} has no sample in the train split")


def load_dataset(cfg) -> MultimodalData:
    """Load the dataset named by ``cfg.name`` (a registered name, or a path to a ``.npz`` file)."""
    from . import hapt, npz  # noqa: F401  (register the built-in loaders)

    name = cfg.name
    if name.endswith(".npz") or (name not in DATASETS and ("/" in name or "." in name)):
        data = DATASETS.get("npz")(cfg, path=name)
    else:
        data = DATASETS.get(name)(cfg)
    data.check()
    return data

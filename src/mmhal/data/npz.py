"""Bring-your-own data: one ``.npz`` file.

Keys: ``label`` int (N,) class indices 0..K-1; ``x.<modality>`` float (N, ...) per modality with a
per-sample shape of (D,), (C, L), (C, H, W) or (C, T, H, W); optional ``split`` str (N,) of
train/val/test; optional ``group`` (N,) (e.g. subject id); optional ``class_names`` str (K,).
A ``group`` stays whole in every split mmhal makes, and a file's own ``split`` must not cut one
(unless ``data.allow_shared_groups``); a ``group`` with missing values (NaN, '' or 'nan') is refused. Labels
are checked for at least 2 classes, every class present, and no value beyond the number of samples (a label
near 2**40 is named, not counted up to). Notes for the user go to ``info["warnings"]`` (a list of sentences),
among them the classes that have no sample in the validation or test split.
Files are read with ``allow_pickle=False``; every problem is reported as a DataError naming the key.

Any other key goes through ``data.keys.check_unread`` (``check_keys``): one that looks like a key mmhal reads
(``splits``, ``Label``, ``target``, ``X.rgb``, a bare (N, C, H, W) array) is a DataError with a did-you-mean;
the others are named in one warning; ``data.ignore_keys`` keeps keys on purpose, silently. Every unread key
is listed in ``info["ignored_keys"]``.

Arrays are channels-first: an image sample is (C, H, W) and a clip (C, T, H, W). The format has no layout
key, so a sample that looks channels-last ((H, W, C) or (T, H, W, C) with C in 1, 3, 4, the spatial sizes
above 4 and a first axis above 4) is refused with the ``np.transpose`` that fixes it, never reordered
silently. A modality name (the part after ``x.``) may not hold a dot or be an attribute name of
``torch.nn.ModuleDict`` (``type``, ``keys``, ...): it becomes a module name in the networks.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..config import DataConfig
from ..errors import DataError, not_a_file
from ..utils import atomic_savez
from . import keys
from .base import SPLITS, MultimodalData, modality_name_problem, register_dataset, suggest_modality_name
from .split import make_split

MODALITY_PREFIX = "x."
KNOWN_KEYS = tuple(keys.NPZ.read)  # label, split, group, class_names (and the x.<modality> keys)


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # what every .npz (a zip archive) starts with; np.load checks the same
NPY_MAGIC = b"\x93NUMPY"
NPZ_HOWTO = "write one with numpy.savez(path, label=y, **{'x.<name>': x}) or mmhal.data.npz.save_npz"


def _not_npz_reason(head: bytes) -> str:
    """What a file starting with ``head`` (not a zip archive) is, as the middle of a sentence."""
    if head.startswith(NPY_MAGIC):
        return "holds a single array (a .npy file from numpy.save), not a .npz archive of named arrays"
    if head[:1] == b"\x80":
        return "is a Python pickle, not a .npz archive (mmhal never unpickles data files)"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "holds text, not a .npz archive (a manifest of files must end in .csv)"
    return "is not a .npz archive (not a zip file of numpy arrays)"


def check_npz_file(path: Path) -> None:
    """A DataError in one sentence unless ``path`` is a regular file that starts as a zip archive (what every
    ``.npz`` is), saying what it is instead: missing, a folder or a device, empty, text, a pickle, a ``.npy``."""
    why = not_a_file(path, "a .npz file")
    if why:
        raise DataError(f"data file '{path}' {why}")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise DataError(f"data file '{path}' cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not head:
        raise DataError(f"data file '{path}' is empty (0 bytes), not a .npz archive; {NPZ_HOWTO}")
    if not head.startswith(ZIP_MAGIC):
        raise DataError(f"data file '{path}' {_not_npz_reason(head)}; {NPZ_HOWTO}")


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every array stored in the ``.npz`` file at ``path``, read without unpickling anything, and the names of
    its other zip members (not ``.npy`` arrays: not read, but named in the warning on unread keys).

    A file that is not a zip archive of arrays is a DataError saying what it is instead (a folder, an empty
    file, text, a pickle, a single ``.npy`` array).
    """
    check_npz_file(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise DataError(
            f"data file '{path}' is a damaged or truncated zip archive, not a readable .npz file"
        ) from None
    arrays: dict[str, np.ndarray] = {}
    others: list[str] = []
    with archive:
        for key in archive.files:
            try:
                value = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise DataError(
                        f"key '{key}' in '{path}' holds pickled Python objects; store plain numeric or string arrays"
                    ) from None
                raise DataError(f"key '{key}' in '{path}' is a damaged .npy array") from None
            except (OSError, EOFError, zipfile.BadZipFile):
                raise DataError(f"key '{key}' in '{path}' cannot be read: the archive is damaged") from None
            if isinstance(value, np.ndarray):  # other zip members come back as raw bytes
                arrays[key] = value
            else:
                others.append(key)
    if not arrays:
        raise DataError(
            f"data file '{path}' is a zip archive that holds no numpy arrays (.npy members); {NPZ_HOWTO}"
        )
    return arrays, others


def _as_strings(a: np.ndarray, key: str) -> np.ndarray:
    """A 1-D str array from a str or bytes array stored under ``key``."""
    if a.ndim != 1:
        raise DataError(f"'{key}' must be a 1-D array of strings, got shape {a.shape}")
    if a.dtype.kind == "S":
        try:
            return np.char.decode(a, "utf-8").astype(str)
        except UnicodeDecodeError:
            raise DataError(f"'{key}' holds bytes that are not UTF-8 text") from None
    if a.dtype.kind != "U":
        raise DataError(f"'{key}' must hold strings, got dtype {a.dtype}")
    return a.astype(str)


def _read_labels(a: np.ndarray) -> np.ndarray:
    """The ``label`` array as int64, after checking it is a non-empty 1-D array of whole numbers >= 0."""
    if a.ndim == 2 and a.shape[1] > 1 and a.dtype.kind in "iufb" and np.isin(a, (0, 1)).all() \
            and (a.sum(axis=1) == 1).all():
        raise DataError(
            f"'label' is one-hot encoded (shape {a.shape}); store the class index per sample instead, "
            "label = y.argmax(axis=1)"
        )
    if a.ndim != 1:
        raise DataError(f"'label' must be a 1-D array with one class index per sample, got shape {a.shape}")
    if len(a) == 0:
        raise DataError("'label' is empty: the file holds no samples")
    if a.dtype.kind in "US":
        raise DataError(
            f"'label' holds strings (dtype {a.dtype}); store class indices 0..K-1 under 'label' and the "
            "names under 'class_names'"
        )
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"'label' holds {a[i].item()!r} (sample {i}), which is not a whole number; labels must be class "
                "indices 0..K-1"
            )
    elif a.dtype.kind not in "iub":
        raise DataError(f"'label' has dtype {a.dtype}, not integers; labels must be class indices 0..K-1")
    huge = np.flatnonzero(a >= 2**62)  # not an int64 (a float's or a uint64's): astype would wrap it around
    if len(huge):
        i = int(huge[0])
        raise DataError(f"'label' holds {a[i].item()!r} (sample {i}), far too large for a class index; labels must "
                        "be class indices 0..K-1")
    labels = a.astype(np.int64)
    if (labels < 0).any():
        i = int(np.flatnonzero(labels < 0)[0])
        raise DataError(
            f"'label' holds the negative value {labels[i]} (sample {i}); labels must be class indices 0..K-1"
        )
    return labels


def _values_phrase(labels: np.ndarray, mask: np.ndarray, where: Callable[[int], str], verb: str, unit: str) -> str:
    """E.g. "label 7 (1 sample, first at sample 5) is": the distinct label values where ``mask`` holds (at most
    three shown), how many ``unit``s hold them, ``where`` the first one is, and ``verb`` ("is"/"lies") agreeing."""
    values = np.unique(labels[mask])
    shown = ", ".join(str(int(v)) for v in values[:3]) + (", ..." if len(values) > 3 else "")
    n = int(mask.sum())
    plural = {"is": "are", "lies": "lie"}[verb] if len(values) > 1 else verb
    return (f"label{'s' if len(values) > 1 else ''} {shown} ({n} {unit}{'s' if n != 1 else ''}, "
            f"first at {where(int(np.flatnonzero(mask)[0]))}) {plural}")


def _ranges(values: np.ndarray) -> str:
    """Sorted distinct integers as runs, e.g. "3..6" or "1, 4..5" (at most three runs shown)."""
    runs = np.split(values, np.flatnonzero(np.diff(values) != 1) + 1)
    text = [f"{r[0]}" if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs[:3]]
    return ", ".join(text) + (", ..." if len(runs) > 3 else "")


def check_label_values(
    labels: np.ndarray, class_names: Optional[list[str]] = None,
    where: Callable[[int], str] = lambda i: f"sample {i}", unit: str = "sample",
) -> int:
    """The number of classes K, after checking the labels (ints >= 0) are class indices 0..K-1 that all occur.

    With ``class_names`` K is its length and a larger label is out of range; without, K is the largest label
    + 1, and a class index without samples below it means stray labels or labels not numbered from 0.
    ``where(i)`` says where sample ``i`` is and ``unit`` what a sample is ("sample"; a manifest's "row").
    Each problem is a DataError in one sentence that names the offending values.
    """
    n = len(labels)
    if class_names is not None:
        k = len(class_names)
        if int(labels.max()) >= k:
            raise DataError(
                f"{_values_phrase(labels, labels >= k, where, 'is', unit)} outside the {k} classes (0..{k - 1}) "
                "named by 'class_names'"
            )
        missing = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        if len(missing):
            c = int(missing[0])
            raise DataError(f"class {class_names[c]!r} (label {c}) has no {unit} at all")
        return _at_least_two(k, class_names[0])
    lo, hi = int(labels.min()), int(labels.max())
    if hi >= n:  # more classes than samples: some class has none (and np.bincount would need hi + 1 counters)
        shifted = np.unique(labels - lo)
        if lo > 0 and shifted[-1] == len(shifted) - 1:
            raise DataError(f"the labels start at {lo}, but they are class indices from 0 (class 0 has no {unit}): "
                            f"subtract {lo}")
        raise DataError(
            f"{_values_phrase(labels, labels >= n, where, 'is', unit)} larger than {n} {unit}s allow: labels are "
            f"class indices 0..K-1 with every class present, so no label exceeds {n - 1}; renumber the classes"
        )
    present = np.bincount(labels)
    missing = np.flatnonzero(present == 0)
    if len(missing) == 0:
        return _at_least_two(len(present), "0")
    if lo > 0 and missing.tolist() == list(range(lo)):
        raise DataError(f"the labels start at {lo}, but they are class indices from 0 (class 0 has no {unit}): "
                        f"subtract {lo}")
    absent = (f"classes {_ranges(missing)} have" if len(missing) > 1
              else f"class '{missing[0]}' (label {missing[0]}) has")
    stray = _values_phrase(labels, labels > missing[0], where, "lies", unit)
    raise DataError(
        f"{absent} no {unit}, but {stray} above {'them' if len(missing) > 1 else 'it'}: labels must be class "
        "indices 0..K-1 with every class present (fix a stray label, or renumber the classes)"
    )


def _at_least_two(k: int, name: str) -> int:
    """``k``, the number of classes, after checking there are at least two: with one class (``name``) every
    prediction is right by construction and every figure is 100 %."""
    if k < 2:
        raise DataError(f"every label is 0, so the data has a single class ({name!r}), but classification needs at "
                        "least 2 classes; check the 'label' values")
    return k


def class_coverage_warning(labels: np.ndarray, split: np.ndarray, class_names: Sequence[str]) -> Optional[str]:
    """A warning naming the classes that have no sample in the validation split or (where there is one) the test
    split, e.g. a class with a single sample, which lies in train: validation (which chooses each student's
    epoch) and the test figures then never see it; None when every class is in every split."""
    splits = [s for s in ("val", "test") if (split == s).any()]
    absent: dict[tuple[str, ...], list[int]] = {}
    for k in range(len(class_names)):
        lacking = tuple(s for s in splits if not (labels[split == s] == k).any())
        if lacking:
            absent.setdefault(lacking, []).append(k)
    if not absent:
        return None
    lacking, classes = max(absent.items(), key=lambda item: len(item[1]))
    counts = np.bincount(labels, minlength=len(class_names))
    shown = ", ".join(f"{class_names[k]!r} ({counts[k]} sample{'s' if counts[k] != 1 else ''} in all)"
                      for k in classes[:3]) + (", ..." if len(classes) > 3 else "")
    more = sum(len(c) for c in absent.values()) - len(classes)
    also = f" ({more} more class{'es' if more != 1 else ''} lack other splits)" if more else ""
    figures = {("val",): "validation, which chooses each student's epoch, never sees "
                         f"{'it' if len(classes) == 1 else 'them'}",
               ("test",): f"the test figures say nothing about {'it' if len(classes) == 1 else 'them'}"}.get(
        lacking, f"neither validation nor the test figures ever see {'it' if len(classes) == 1 else 'them'}")
    return (f"class{'es' if len(classes) > 1 else ''} {shown} {'have' if len(classes) > 1 else 'has'} no sample in "
            f"the {' and '.join(lacking)} split{'s' if len(lacking) > 1 else ''}{also}, so {figures}; give "
            f"{'each' if len(classes) > 1 else 'it'} more samples, or a 'split' that puts some in every split")


def _read_modality(name: str, a: np.ndarray, n: int) -> np.ndarray:
    """The modality array as float32, after checking dtype, sample count, per-sample rank and finiteness."""
    key = MODALITY_PREFIX + name
    if a.dtype.kind not in "fiub":
        raise DataError(f"modality '{name}' (key '{key}') must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[0] != n:
        count = a.shape[0] if a.ndim else 0
        raise DataError(f"modality '{name}' (key '{key}') has {count} samples but 'label' has {n}")
    if not 1 <= a.ndim - 1 <= 4:
        raise DataError(
            f"modality '{name}' (key '{key}') has per-sample shape {a.shape[1:]}, but a sample must have 1 to 4 "
            "dimensions: (D,) vector, (C, L) sequence, (C, H, W) image or (C, T, H, W) clip"
        )
    if 0 in a.shape[1:]:
        raise DataError(f"modality '{name}' (key '{key}') has an empty per-sample shape {a.shape[1:]}")
    order = _channels_last_fix(a.shape[1:])
    if order is not None:
        kind, first, last = (("an image", "(H, W, C)", "(C, H, W)") if a.ndim == 4
                             else ("a clip", "(T, H, W, C)", "(C, T, H, W)"))
        raise DataError(
            f"modality '{name}' (key '{key}') has per-sample shape {a.shape[1:]}, which looks like {kind} stored "
            f"channels-last {first}, but mmhal reads {kind.split()[1]}s channels-first {last}: store "
            f"np.transpose(x, {order}) under '{key}'"
        )
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a.reshape(n, -1)).all(axis=1))[0])
        raise DataError(f"modality '{name}' (key '{key}') contains NaN or Inf values (first in sample {bad})")
    with np.errstate(over="ignore"):
        out = a.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise DataError(f"modality '{name}' (key '{key}') has values too large for float32")
    return out


Layout = tuple[tuple[int, ...], np.dtype]  # an array's shape and dtype


def array_layout(archive: np.lib.npyio.NpzFile, key: str) -> Optional[Layout]:
    """The shape and dtype of the array ``key`` of an open ``.npz`` archive, read from its header alone (nothing
    else is loaded), or None for a member that is not a readable array."""
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with archive.zip.open(key + ".npy") as f:
            header = read.get(np.lib.format.read_magic(f))
            if header is None:
                return None
            shape, _, dtype = header(f)
    except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return tuple(shape), dtype


def _modality_like(layout: Optional[Layout], n: Optional[int]) -> Optional[str]:
    """Why an array of ``layout`` under a key mmhal does not read looks like a modality (numbers, one row per
    sample and 2 or more dimensions per sample: a sequence, an image, a clip), or None. A (N, D) array is not
    taken for one: per-sample vectors are as often other things (boxes, scores, one-hot labels)."""
    if layout is None or n is None:
        return None
    shape, dtype = layout
    if dtype.kind not in "fiu" or len(shape) < 3 or shape[0] != n:
        return None
    return f"it holds a {tuple(shape[1:])} array of numbers per sample"


def check_keys(layout: Mapping[str, Optional[Layout]], n: Optional[int], source: str, ignore: Sequence[str],
               info: dict[str, Any], warnings: list[str], refuse: bool = True) -> None:
    """The keys of a ``.npz`` file mmhal does not read, judged by ``keys.check_unread`` (a lookalike of a key it
    reads is a DataError; the others are named in a warning appended to ``warnings``). ``layout`` maps every key
    of the file to its array's shape and dtype (None: a zip member that is not an array); ``n``: the number of
    samples (None: not known); ``ignore``: ``data.ignore_keys``; ``refuse=False``: a lookalike is a warning too
    (``mmhal predict``)."""
    keys.check_unread(
        [k for k in layout if k not in KNOWN_KEYS and not k.startswith(MODALITY_PREFIX)], keys.NPZ, source, ignore,
        info, warnings,
        per_sample=lambda k: layout.get(k) is not None and len(layout[k][0]) >= 1 and layout[k][0][0] == n,
        modality_like=lambda k: _modality_like(layout.get(k), n), present=[k for k in KNOWN_KEYS if k in layout],
        refuse=refuse,
    )


IMAGE_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA (or RGB-D): the channel counts of a channels-last image


def _channels_last_fix(sample_shape: tuple[int, ...]) -> Optional[tuple[int, ...]]:
    """The axis order that makes a channels-last image (H, W, C) or clip (T, H, W, C) channels-first, or None.

    A sample is taken for channels-last when its last axis has 1, 3 or 4 entries, its spatial axes more than
    4, and its first axis is not itself a plausible channel count (1 to 4): (32, 32, 3) is, (3, 32, 32) and
    (2, 3, 3) are not. The .npz format has no layout key: such data is refused, never transposed silently.
    """
    if len(sample_shape) not in (3, 4) or sample_shape[-1] not in IMAGE_CHANNELS:
        return None
    if sample_shape[0] <= 4 or min(sample_shape[-3:-1]) <= 4:
        return None
    return (0, 3, 1, 2) if len(sample_shape) == 3 else (0, 4, 1, 2, 3)


def _describe_split(split: np.ndarray) -> str:
    return ", ".join(f"{s} {int((split == s).sum())}" for s in SPLITS)


def _groups_across_splits(groups: np.ndarray, split: np.ndarray) -> list[tuple[Any, list[str]]]:
    """The groups with samples in more than one of train/val/test, each with the splits it spans (sorted by group)."""
    uniq, index = np.unique(groups, return_inverse=True)
    index = index.reshape(-1)
    present = np.zeros((len(uniq), len(SPLITS)), dtype=bool)
    for j, s in enumerate(SPLITS):
        present[index[split == s], j] = True
    return [
        (uniq[g].item(), [s for j, s in enumerate(SPLITS) if present[g, j]])
        for g in np.flatnonzero(present.sum(axis=1) > 1)
    ]


def _shared_groups_message(shared: list[tuple[Any, list[str]]], n_groups: int, accepted: bool) -> str:
    """One sentence on the groups that the file's ``split`` puts in more than one split, naming the first.

    ``accepted``: the sentence is a warning (``data.allow_shared_groups`` is true), not an error.
    """
    group, spans = shared[0]
    count = f"{len(shared)} of the {n_groups} groups span several splits"
    fix = (
        "kept as given because data.allow_shared_groups is true"
        if accepted
        else "fix the file's 'split' or set data.allow_shared_groups=true to accept it"
    )
    return (
        f"the file's 'split' puts samples of group {group!r} in {' and '.join(spans)} ({count}), so one source "
        f"(person, video, session) is on both sides and validation/test figures are inflated; {fix}"
    )


MISSING_GROUPS = ("", "nan", "none", "null")  # what a missing value becomes in a str array (pandas' astype(str): 'nan')


def check_group_values(groups: np.ndarray, key: str = "'group'") -> None:
    """A DataError when ``groups`` (the ``group`` of every sample) has missing values: NaN in a float array, or an
    empty, 'nan' or 'None' string. mmhal would pool every such sample into one group (NaN sorts as one value),
    which decides the split without a word."""
    if groups.dtype.kind == "f":
        missing = np.isnan(groups)
        what = "NaN"
    elif groups.dtype.kind == "U":
        missing = np.isin(np.char.lower(np.char.strip(groups)), MISSING_GROUPS)
        what = "missing values ('', 'nan', 'None' or 'null')"
    else:
        return
    if missing.any():
        n, first = int(missing.sum()), int(np.flatnonzero(missing)[0])
        everything = "every sample" if n == len(groups) else f"{n} of {len(groups)} samples, first sample {first}"
        raise DataError(f"{key} holds {what} ({everything}), but every sample needs its group (subject, session) "
                        "to keep each group whole in one split; fill them in, or leave 'group' out to split per sample")


def _empty_val(cfg: DataConfig, groups: Optional[np.ndarray], group_key: str) -> DataError:
    """Why the validation split came out empty: too few groups for every split (``group_key`` names where they
    come from), or ``data.val_fraction`` too small."""
    uniq = np.unique(groups) if groups is not None else []
    if 0 < len(uniq) <= len(SPLITS) and cfg.val_fraction > 0:
        one = f"a single group ({uniq[0].item()!r})" if len(uniq) == 1 else f"only {len(uniq)} groups"
        return DataError(
            f"the 'val' split is empty because {group_key} holds {one} and mmhal keeps each group whole in one split, "
            "so there are too few groups for train, val and test; give finer groups (e.g. the subject or session of "
            "each sample), a 'split' of your own, or no groups (a split per sample)"
        )
    return DataError(
        f"the 'val' split is empty (data.val_fraction={cfg.val_fraction}); validation needs at least one "
        "sample (and group)"
    )


PER_SAMPLE_WARNING = (
    "the data has no 'group' key, so mmhal split it per sample: samples from one source (person, video, "
    "session) may land on both sides of the split and inflate the {figures}; store a 'group' key (e.g. the "
    "subject or video id per sample) to keep each source in one split"
)


def make_or_check_split(
    cfg: DataConfig, labels: np.ndarray, groups: Optional[np.ndarray], given: Optional[np.ndarray],
    info: dict[str, Any], warnings: list[str], per_sample_warning: str = PER_SAMPLE_WARNING,
    no_train: str = "'split' marks no sample as 'train'", group_key: str = "the 'group' key",
    class_names: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """The split as ``.npz`` files (and manifests) get it: ``given`` (checked not to cut a group, completed with a val share of
    train when it has no val) or, when None, a seeded stratified split made by mmhal (whole groups per split).
    Fills ``info`` (how the split was made) and ``warnings``: with ``class_names``, one naming the classes that
    have no sample in val or test (``class_coverage_warning``). ``group_key`` names where ``groups`` come from, for
    the error when too few groups leave the validation split empty."""
    fractions = {"split_seed": cfg.split_seed, "val_fraction": cfg.val_fraction}
    how = "group-aware (whole groups per split), stratified" if groups is not None else "stratified"
    if given is not None:
        split = given.astype("<U5")
        if not (split == "train").any():
            raise DataError(no_train)
        if groups is not None:
            shared = _groups_across_splits(groups, split)
            if shared and not cfg.allow_shared_groups:
                raise DataError(_shared_groups_message(shared, len(np.unique(groups)), accepted=False))
            if shared:
                warnings.append(_shared_groups_message(shared, len(np.unique(groups)), accepted=True))
        if (split == "val").any():
            info["split"] = "from the file"
        else:
            train = np.flatnonzero(split == "train")
            sub = make_split(
                labels[train], None if groups is None else groups[train], cfg.val_fraction, 0.0, cfg.split_seed
            )
            split[train[sub == "val"]] = "val"
            info["split"] = (
                f"from the file, which has no 'val': made by mmhal, a {how} seeded share of train "
                f"(val_fraction={cfg.val_fraction} of train, seed={cfg.split_seed})"
            )
            info.update(fractions)
            if groups is None:
                warnings.append(per_sample_warning.format(figures="validation figures that pick the epoch"))
    else:
        split = make_split(labels, groups, cfg.val_fraction, cfg.test_fraction, cfg.split_seed).astype("<U5")
        info["split"] = (
            f"made by mmhal: {how} seeded split (val_fraction={cfg.val_fraction}, "
            f"test_fraction={cfg.test_fraction}, seed={cfg.split_seed})"
        )
        info.update(fractions, test_fraction=cfg.test_fraction)
        if groups is None:
            warnings.append(per_sample_warning.format(figures="test figures"))
    if not (split == "test").any():
        info["test"] = "the data has no 'test' samples, so there are no test figures"
    if not (split == "val").any():
        raise _empty_val(cfg, groups, group_key)
    if not (split == "train").any():
        raise DataError("the 'train' split is empty")
    info["split_sizes"] = _describe_split(split)
    if class_names is not None:
        coverage = class_coverage_warning(labels, split, class_names)
        if coverage:
            warnings.append(coverage)
    return split


def channels_last_warning(modality: str, shape) -> Optional[str]:
    """A warning when a sequence modality (per sample (C, L)) looks stored as (L, C): more channels than steps, and
    few steps. mmhal reads sequences channels-first, so such data would train on a transposed signal."""
    if len(shape) != 2:
        return None
    c, length = int(shape[0]), int(shape[1])
    if c > length and length <= 16:
        return (f"'x.{modality}' is ({c}, {length}) per sample, which mmhal reads as {c} channels of {length} steps; "
                f"if it is {c} steps of {length} channels, store it channels-first, as (N, {length}, {c}) "
                "(e.g. np.transpose(x, (0, 2, 1)))")
    return None


@register_dataset("npz")
def load_npz(cfg: DataConfig, path: Optional[str] = None) -> MultimodalData:
    """The dataset in the ``.npz`` file at ``path`` (default ``cfg.path``), with a split made if it has none."""
    file = path if path is not None else cfg.path
    if not file:
        raise DataError("no .npz file given; set data.name (or data.path) to the file's path")
    source = Path(file).expanduser()
    arrays, others = _read_arrays(source)

    if "label" not in arrays:
        alias = next((k for k in sorted(arrays) if k not in cfg.ignore_keys
                      and "label" in (keys.lookalike(k, keys.NPZ) or ([], ""))[0]), None)
        hint = (f": rename '{alias}' to 'label'" if alias
                else ": store the class index 0..K-1 of each sample under 'label'")
        raise DataError(f"'{source}' has no 'label' key (it has: {', '.join(sorted(arrays))}){hint}")
    labels = _read_labels(arrays["label"])
    n = len(labels)

    info: dict[str, Any] = {"source": str(source)}
    warnings: list[str] = []  # info["warnings"]: one sentence each, for the user to see (`mmhal run` prints them)
    layout: dict[str, Optional[Layout]] = {k: (a.shape, a.dtype) for k, a in arrays.items()}
    check_keys({**layout, **{k: None for k in others}}, n, str(source), cfg.ignore_keys, info, warnings)

    names = [k[len(MODALITY_PREFIX) :] for k in sorted(arrays) if k.startswith(MODALITY_PREFIX)]
    if not names:
        bare = [k for k in sorted(arrays) if k not in KNOWN_KEYS]
        hint = f" (e.g. '{bare[0]}' as '{MODALITY_PREFIX}{bare[0]}')" if bare else ""
        raise DataError(f"'{source}' has no modality: store each one under a key 'x.<name>', e.g. 'x.rgb'{hint}")
    if "" in names:
        raise DataError("key 'x.' names no modality; use 'x.<name>', e.g. 'x.rgb'")
    for m in names:
        problem = modality_name_problem(m)
        if problem:
            raise DataError(
                f"key '{MODALITY_PREFIX + m}' names the modality '{m}', which {problem}; rename the key, "
                f"e.g. '{MODALITY_PREFIX}{suggest_modality_name(m)}'"
            )
    counts = {m: len(arrays[MODALITY_PREFIX + m]) if arrays[MODALITY_PREFIX + m].ndim else 0 for m in names}
    if len(names) > 1 and len(set(counts.values())) == 1 and n not in counts.values():
        raise DataError(
            f"'label' has {n} entries but every modality has {counts[names[0]]} samples: 'label' needs one class "
            "index per sample"
        )
    modalities = {m: _read_modality(m, arrays[MODALITY_PREFIX + m], n) for m in names}

    class_names: Optional[list[str]] = None
    if "class_names" in arrays:
        class_names = _as_strings(arrays["class_names"], "class_names").tolist()
        if len(set(class_names)) != len(class_names):
            dup = next(c for c in class_names if class_names.count(c) > 1)
            raise DataError(f"'class_names' lists the name {dup!r} twice")
    num_classes = check_label_values(labels, class_names)
    if class_names is None:
        class_names = [str(k) for k in range(num_classes)]

    groups: Optional[np.ndarray] = None
    if "group" in arrays:
        groups = arrays["group"]
        if groups.ndim != 1 or len(groups) != n:
            raise DataError(f"'group' must have one value per sample ({n}), got shape {groups.shape}")
        if groups.dtype.kind == "S":
            groups = _as_strings(groups, "group")
        check_group_values(groups)

    info["modalities"] = {m: list(a.shape[1:]) for m, a in modalities.items()}
    for m, a in modalities.items():
        said = channels_last_warning(m, a.shape[1:])
        if said:
            warnings.append(said)

    given = None
    if "split" in arrays:
        given = _as_strings(arrays["split"], "split")
        if len(given) != n:
            raise DataError(f"'split' has {len(given)} entries but 'label' has {n}")
        unknown = sorted(set(np.unique(given).tolist()) - set(SPLITS))
        if unknown:
            raise DataError(f"'split' holds the value {unknown[0]!r}; each entry must be train, val or test")
    split = make_or_check_split(cfg, labels, groups, given, info, warnings, class_names=class_names)
    info["warnings"] = warnings

    in_train = np.bincount(labels[split == "train"], minlength=num_classes)
    for k in range(num_classes):
        if in_train[k] == 0:
            raise DataError(f"class {class_names[k]!r} (label {k}) has no sample in the train split")

    return MultimodalData(
        name=source.stem,
        modalities=modalities,
        labels=labels,
        split=split,
        class_names=class_names,
        groups=groups,
        info=info,
    )


def save_npz(
    path: str | Path,
    modalities: Mapping[str, np.ndarray],
    labels: np.ndarray,
    split: Optional[Sequence[str] | np.ndarray] = None,
    groups: Optional[Sequence[Any] | np.ndarray] = None,
    class_names: Optional[Sequence[str]] = None,
) -> None:
    """Write a dataset in mmhal's ``.npz`` format (``label``, ``x.<modality>``, optional keys) atomically.

    Arrays are stored as given (no checks beyond being storable without pickle); ``load_npz`` validates.
    """
    if not modalities:
        raise DataError("save_npz needs at least one modality")
    arrays: dict[str, np.ndarray] = {"label": np.asarray(labels)}
    for name, a in modalities.items():
        if not name:
            raise DataError("save_npz got a modality with an empty name")
        arrays[MODALITY_PREFIX + name] = np.asarray(a)
    if split is not None:
        arrays["split"] = np.asarray(split, dtype=str)
    if groups is not None:
        g = np.asarray(groups)
        arrays["group"] = g.astype(str) if g.dtype == object else g
    if class_names is not None:
        arrays["class_names"] = np.asarray(list(class_names), dtype=str)
    for key, a in arrays.items():
        if a.dtype == object:
            raise DataError(f"save_npz cannot store '{key}': it holds Python objects, not numbers or strings")
    atomic_savez(Path(path), **arrays)

"""A user's own image files: ``manifest.csv`` (one row per sample, one image file per modality).

The CSV has a header row. Columns (any order):

* ``label``: the class index 0..K-1, **or** ``bona_fide``: 1 (bona fide) / 0 (attack) for presentation-attack
  data (then labels = bona_fide and the classes are ``attack``, ``bona_fide``); never both;
* ``x.<modality>``: per modality, the path of the sample's image file, relative to the CSV's folder or
  absolute (``<modality>`` is a Python-style name without dots, e.g. ``x.rgb``, ``x.depth``);
* optional ``split`` (train / val / test), ``group`` (subject, session: stays whole in every split mmhal
  makes), ``video`` (the scoring unit of presentation-attack data: a video's frames are scored together),
  ``species`` (attack type; empty for bona fide rows; only with ``bona_fide``) and ``class_name`` (the
  name of the row's class; only with ``label``; one name per class).

Channels per modality come from the first sample's file (grey = 1, else 3); every image is resized to
``data.image_size`` (default: the first sample's image size). Without a ``split`` column mmhal makes one
as for ``.npz`` files (whole groups per split; by ``video`` when there is no ``group``). Every file is
checked to exist when the manifest is loaded; each problem is one sentence naming the line and column
(a cell naming a folder or a device is said to be one). The file is comma-separated: a header that ';', a
tab or '|' would split into columns mmhal reads is refused as such. Rows that repeat an earlier row exactly,
in a manifest that mmhal splits per row (no ``group``, ``video`` or ``split`` column), are counted in a
warning: their copies may land in train and in test.

Any other column goes through ``data.keys.check_unread`` (``check_columns``), the rule of ``.npz`` keys: one
that looks like a column mmhal reads (``splits``, ``Label``, ``subject``, ``is_real``, ``X.rgb``, a column of
image or video files) is a DataError with a did-you-mean; the others are named in one warning (their cells
may be empty); ``data.ignore_keys`` keeps columns on purpose, silently. ``info["ignored_columns"]`` lists
every unread column.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import DataConfig
from ..errors import DataError, not_a_file
from . import keys
from .base import PAD_CLASSES, SPLITS, modality_name_problem, register_dataset, suggest_modality_name
from .files import IMAGE_SUFFIXES, FileData, image_header, image_channels_of_mode, resolve_image_size
from .npz import check_group_values, check_label_values, make_or_check_split
from .video import VIDEO_SUFFIXES, is_video_name

MODALITY_PREFIX = "x."

PER_SAMPLE_WARNING = (
    "the manifest has no 'group' (or 'video') column, so mmhal split it per sample: samples from one source "
    "(person, video, session) may land on both sides of the split and inflate the {figures}; add a 'group' "
    "column (e.g. the subject id per row) to keep each source in one split"
)


# ----------------------------------------------------------------------------- helpers shared by the face loaders
#: image headers read per column to find its channels and sizes (evenly spread over the rows, the first included)
SURVEY_FILES = 256


def survey_images(modality: str, paths, full, lines, here: str, size_given: bool) -> tuple[int, list[str]]:
    """(channels, warnings) of a manifest's image column ``x.<modality>``: 3 when any surveyed file is in colour,
    else 1 (up to ``SURVEY_FILES`` headers, evenly spread, the first included; no pixel decoded). Warnings when the
    column mixes grey and colour files (the grey ones are read as colour, their value copied to every channel) and,
    without ``data.image_size``, when its files differ in size (all are resized to the first's)."""
    n = len(paths)
    picks = sorted(set(np.linspace(0, n - 1, min(n, SURVEY_FILES)).round().astype(int).tolist()))
    heads = []
    for i in picks:
        try:
            heads.append((i, image_header(full(paths[i]))))
        except DataError as exc:  # a damaged file met before anything trains, named by its line
            raise DataError(f"{exc} (line {lines[i]} of {here}, column 'x.{modality}')") from None
    grey = [i for i, (mode, _) in heads if image_channels_of_mode(mode) == 1]
    colour = [i for i, (mode, _) in heads if image_channels_of_mode(mode) == 3]
    warnings = []
    checked = "" if len(picks) == n else f" (of {len(picks)} of its {n} files checked)"
    if grey and colour:
        warnings.append(f"column 'x.{modality}' of {here} mixes grey and colour images{checked} (line {lines[grey[0]]} "
                        f"is grey, line {lines[colour[0]]} in colour): every image of it is read with 3 channels, a "
                        "grey one's value copied to each")
    sizes = {}
    for i, (_, size) in heads:
        sizes.setdefault(size, i)
    if len(sizes) > 1 and not size_given:
        (first, i0), (other, i1) = list(sizes.items())[:2]
        warnings.append(f"the images of column 'x.{modality}' of {here} differ in size{checked} (line {lines[i0]}: "
                        f"{first[0]}x{first[1]}, line {lines[i1]}: {other[0]}x{other[1]}): every image is resized to the "
                        f"first's, {first[0]}x{first[1]} (H x W); set data.image_size to choose the size")
    return (3 if colour else 1), warnings


def resolve_scoring(cfg: DataConfig, has_video: bool, default: str, what: str) -> str:
    """``data.scoring`` resolved to ``sample`` or ``video``: ``auto`` gives ``default`` (``video`` only where the
    data name videos); ``video`` for data without videos is a DataError naming ``what``."""
    scoring = cfg.scoring
    if scoring == "auto":
        return "video" if (default == "video" and has_video) else "sample"
    if scoring not in ("sample", "video"):
        raise DataError(f"data.scoring must be auto, sample or video, got '{scoring}'")
    if scoring == "video" and not has_video:
        raise DataError(f"data.scoring=video needs videos, but {what} names none; use data.scoring=sample")
    return scoring


def check_files_exist(files: dict[str, list[str]], root: str, where) -> None:
    """A DataError for the first listed file that does not exist; ``where(m, i)`` says where it was listed."""
    for m, paths in files.items():
        for i, rel in enumerate(paths):
            p = os.path.join(root, rel) if root else rel
            if not os.path.isfile(p):
                raise DataError(f"image file '{p}' ({where(m, i)}) {not_a_file(p, 'an image file')}")


# ----------------------------------------------------------------------------- the CSV
def _read_rows(source: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped names) and the data rows with their line numbers (blank lines skipped)."""
    why = not_a_file(source, "a manifest .csv file")
    if why:
        raise DataError(f"manifest '{source}' {why}")
    try:
        with open(source, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header: Optional[list[str]] = None
            rows: list[tuple[int, list[str]]] = []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    continue
                rows.append((reader.line_num, [c.strip() for c in row]))
    except UnicodeDecodeError:
        raise DataError(f"manifest '{source}' is not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(f"manifest '{source}' is not a readable CSV file ({exc})") from None
    if header is None:
        raise DataError(f"manifest '{source}' is empty; it needs a header row (e.g. label,x.rgb) and one row per sample")
    _check_separator(header, source)
    if not rows:
        raise DataError(f"manifest '{source}' has a header but no rows: it holds no samples")
    return header, rows


OTHER_SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}


def _check_separator(header: list[str], source: Path) -> None:
    """A DataError when the header is one column that another separator (';', a tab, '|') would split into
    columns mmhal reads: a CSV written in a locale whose list separator is ';', or a TSV file."""
    if len(header) != 1:
        return
    for sep, name in OTHER_SEPARATORS.items():
        parts = [c.strip() for c in header[0].split(sep)]
        if len(parts) > 1 and any(c in keys.MANIFEST.read or c.startswith(MODALITY_PREFIX) for c in parts):
            raise DataError(
                f"manifest '{source}' seems separated by {name} (its header '{_short(header[0])}' splits into "
                f"{', '.join(parts[:4])}{', ...' if len(parts) > 4 else ''}), but mmhal reads comma-separated CSV; "
                "write it with commas (e.g. pandas' to_csv(path, index=False))"
            )


def _short(text: str, size: int = 60) -> str:
    return text if len(text) <= size else text[:size - 3] + "..."


def _check_header(header: list[str], rows: list[tuple[int, list[str]]], source: Path, ignore: list[str],
                  info: dict[str, Any], warnings: list[str]) -> list[str]:
    """The modality names of the ``x.<name>`` columns, after checking every column name; the columns mmhal does
    not read go through ``keys.check_unread`` (a lookalike of a column it reads is refused, others warned of)."""
    seen: set[str] = set()
    modalities: list[str] = []
    for col in header:
        if not col:
            raise DataError(f"manifest '{source}' has a column without a name in its header row")
        if col in seen:
            raise DataError(f"manifest '{source}' has the column '{col}' twice")
        seen.add(col)
        if col.startswith(MODALITY_PREFIX):
            name = col[len(MODALITY_PREFIX):]
            if not name:
                raise DataError("column 'x.' names no modality; use 'x.<name>', e.g. 'x.rgb'")
            if not name.isidentifier():
                raise DataError(
                    f"column '{col}' names the modality '{name}', which is not a plain name (letters, digits and "
                    "underscores, no dots or spaces; e.g. 'x.rgb')"
                )
            problem = modality_name_problem(name)
            if problem:
                raise DataError(
                    f"column '{col}' names the modality '{name}', which {problem}; rename the column, e.g. "
                    f"'x.{suggest_modality_name(name)}'"
                )
            modalities.append(name)
    check_columns(header, rows, source, ignore, info, warnings)
    if "label" in seen and "bona_fide" in seen:
        raise DataError(f"manifest '{source}' has both a 'label' and a 'bona_fide' column; keep one")
    if "label" not in seen and "bona_fide" not in seen:
        raise DataError(
            f"manifest '{source}' has no 'label' column (class index 0..K-1) and no 'bona_fide' column (1/0)"
        )
    if not modalities:
        raise DataError(f"manifest '{source}' has no modality column: name each one 'x.<modality>', e.g. 'x.rgb'")
    if "species" in seen and "bona_fide" not in seen:
        raise DataError("the 'species' column (attack type) needs a 'bona_fide' column instead of 'label'")
    if "class_name" in seen and "label" not in seen:
        raise DataError("the 'class_name' column needs a 'label' column (bona_fide data has fixed class names)")
    return modalities


def check_columns(header: list[str], rows: list[tuple[int, list[str]]], source: Path, ignore: Sequence[str],
                  info: dict[str, Any], warnings: list[str], refuse: bool = True) -> None:
    """The columns of a manifest mmhal does not read, judged by ``keys.check_unread`` (a lookalike of a column it
    reads is a DataError; the others are named in a warning appended to ``warnings``); ``ignore``:
    ``data.ignore_keys``. Every column holds one value per row, so a name with a read column's word in it is a
    lookalike; so is a column whose cells name image or video files or folders (a modality's). ``refuse=False``:
    a lookalike is a warning too (``mmhal predict``)."""
    index = {name: j for j, name in enumerate(header)}
    keys.check_unread(
        [c for c in header if c not in keys.MANIFEST.read and not c.startswith(MODALITY_PREFIX)], keys.MANIFEST,
        str(source), ignore, info, warnings, per_sample=lambda c: True,
        modality_like=lambda c: _files_like([row[index[c]] for _, row in rows if index[c] < len(row)], source.parent),
        present=[c for c in header if c in keys.MANIFEST.read], refuse=refuse,
    )


def _files_like(cells: list[str], root: Path) -> Optional[str]:
    """Why a column with these cells looks like a modality's (its cells name image or video files, or its first
    cell an existing folder: of frames), or None."""
    given = [c for c in cells if c]
    if not given:
        return None
    suffixes = {os.path.splitext(c)[1].lower() for c in given}
    if suffixes <= set(IMAGE_SUFFIXES):
        return "its cells name image files"
    if suffixes <= set(VIDEO_SUFFIXES):
        return "its cells name video files"
    if os.path.isdir(root / given[0]):
        return "its cells name folders"
    return None


def duplicate_rows_warning(rows: list[tuple[int, list[str]]]) -> Optional[str]:
    """A warning when rows repeat an earlier row exactly (every cell; ``rows`` with their line numbers), for a
    manifest split per row by mmhal: without a group to keep them together, the copies of one sample may land in
    train and in test (the test figures then score samples the student trained on); None when no row repeats
    another."""
    first: dict[tuple[str, ...], int] = {}
    repeats: list[tuple[int, int]] = []
    for line, row in rows:
        seen = first.setdefault(tuple(row), line)
        if seen != line:
            repeats.append((line, seen))
    if not repeats:
        return None
    line, seen = repeats[0]
    return (f"{len(repeats)} of the {len(rows)} rows repeat an earlier row exactly (first: line {line} repeats line "
            f"{seen}) and no 'group' column keeps copies together, so the split mmhal makes per row may put copies "
            "of one sample in train and in test, which inflates the test figures; remove the duplicate rows, or "
            "give each source a 'group'")


@register_dataset("manifest")
def load_manifest(cfg: DataConfig, path: Optional[str] = None, progress: Optional[bool] = None):
    """The samples listed in the manifest CSV at ``path`` (default ``cfg.path``); see the module docstring."""
    file = path if path is not None else cfg.path
    if not file:
        raise DataError("no manifest given; pass the path of a .csv file as --data")
    source = Path(file).expanduser()
    header, rows = _read_rows(source)
    info: dict[str, Any] = {"source": str(source), "format": "manifest"}
    warnings: list[str] = []
    modalities = _check_header(header, rows, source, cfg.ignore_keys, info, warnings)
    col = {name: j for j, name in enumerate(header) if name in keys.MANIFEST.read or name.startswith(MODALITY_PREFIX)}
    here = f"'{source.name}'"

    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"line {line} of {here} has {len(row)} cells but the header has {len(header)} columns"
            )
        for name, j in col.items():
            if not row[j] and name != "species":
                raise DataError(f"line {line} of {here} has an empty '{name}' cell")

    lines = [line for line, _ in rows]
    pad = "bona_fide" in col
    labels = np.zeros(len(rows), dtype=np.int64)
    key = "bona_fide" if pad else "label"
    for i, (line, row) in enumerate(rows):
        text = row[col[key]]
        try:
            value = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = float("nan")
            if not (np.isfinite(f) and f == int(f)):
                what = "1 (bona fide) or 0 (attack)" if pad else "an integer class index 0..K-1"
                raise DataError(f"line {line} of {here} has '{key}' = '{text}', which is not {what}") from None
            value = int(f)
        if value >= 2**62:  # beyond an int64 (and any number of classes)
            raise DataError(f"line {line} of {here} has '{key}' = '{text}', far too large for a class index 0..K-1")
        if pad and value not in (0, 1):
            raise DataError(f"line {line} of {here} has 'bona_fide' = '{text}'; it must be 1 (bona fide) or 0 (attack)")
        if value < 0:
            raise DataError(f"line {line} of {here} has 'label' = {value}; labels are class indices 0..K-1")
        labels[i] = value

    def column(name: str) -> Optional[np.ndarray]:
        return np.array([row[col[name]] for _, row in rows], dtype=str) if name in col else None

    bona_fide = labels.astype(bool) if pad else None
    species = column("species")
    if species is not None:
        for i, line in enumerate(lines):
            if bona_fide[i] and species[i]:
                raise DataError(
                    f"line {line} of {here} is bona fide but names the attack species '{species[i]}'; leave "
                    "'species' empty on bona fide rows"
                )
            if not bona_fide[i] and not species[i]:
                raise DataError(f"line {line} of {here} is an attack with an empty 'species' cell")

    if pad:
        class_names = list(PAD_CLASSES)
    else:
        num_classes = check_label_values(labels, None, lambda i: f"line {lines[i]} of {here}", "row")
        class_names = [str(k) for k in range(num_classes)]
        names = column("class_name")
        if names is not None:
            given: dict[int, str] = {}
            for i, line in enumerate(lines):
                k, nm = int(labels[i]), str(names[i])
                if given.setdefault(k, nm) != nm:
                    raise DataError(
                        f"line {line} of {here} names class {k} '{nm}', but an earlier row named it '{given[k]}'"
                    )
            owner: dict[str, int] = {}
            for k, nm in sorted(given.items()):
                if owner.setdefault(nm, k) != k:
                    raise DataError(f"the 'class_name' '{nm}' is given to both label {owner[nm]} and label {k}")
            class_names = [given.get(k, str(k)) for k in range(num_classes)]
    present = np.bincount(labels, minlength=len(class_names))
    for k in range(len(class_names)):
        if present[k] == 0:
            raise DataError(f"class {class_names[k]!r} (label {k}) has no row in {here}")

    split_given = column("split")
    if split_given is not None:
        for i, line in enumerate(lines):
            if split_given[i] not in SPLITS:
                raise DataError(
                    f"line {line} of {here} has 'split' = '{split_given[i]}'; each row's split must be train, val or test"
                )

    root = str(source.parent)
    files = {m: [row[col[MODALITY_PREFIX + m]] for _, row in rows] for m in modalities}
    first = os.path.join(root, files[modalities[0]][0])
    clips = os.path.isdir(first) or is_video_name(first)  # action clips: folders of frames (or video files)
    if not clips:
        check_files_exist(files, root, lambda m, i: f"line {lines[i]} of {here}, column 'x.{m}'")

    video = column("video")
    groups = column("group")
    group_key = "the 'group' column"
    if groups is not None:
        check_group_values(groups, f"the 'group' column of {here}")
    elif video is not None:
        groups, group_key = video, "the 'video' column (the manifest has no 'group' column)"
        info["groups"] = group_key
    split = make_or_check_split(cfg, labels, groups, split_given, info, warnings, PER_SAMPLE_WARNING,
                                "the 'split' column marks no row as 'train'", group_key, class_names)
    if groups is None and split_given is None:  # the file's own split keeps a row's copies in its split
        repeated = duplicate_rows_warning(rows)
        if repeated:
            warnings.append(repeated)
    info["warnings"] = warnings
    if pad:
        info["polarity"] = "bona_fide column: 1 = bona fide, 0 = attack"
    info["scoring"] = resolve_scoring(cfg, video is not None, "video", f"manifest {here} (no 'video' column)")

    if clips:
        return _clip_data(cfg, source, root, files, lines, labels, split, class_names, groups, info, bona_fide,
                          species, video, progress)

    def full(p: str) -> str:
        return os.path.join(root, p)

    channels = {}
    for m in modalities:  # a grey first file must not make a colour column grey, nor go unsaid
        channels[m], said = survey_images(m, files[m], full, lines, here, bool(cfg.image_size))
        warnings.extend(said)
    image_size = resolve_image_size(cfg.image_size, full(files[modalities[0]][0]))
    info["modalities"] = {m: [channels[m], *image_size] for m in modalities}
    return FileData(
        name=source.stem,
        files={m: np.array(p, dtype=str) for m, p in files.items()},
        labels=labels,
        split=split,
        class_names=class_names,
        channels=channels,
        image_size=image_size,
        root=root,
        groups=groups,
        info=info,
        bona_fide=bona_fide,
        species=species,
        video=video,
        listing=source.name,
        lines=np.asarray(lines, dtype=np.int64),
    )


def _clip_data(cfg: DataConfig, source: Path, root: str, files: dict, lines: list, labels, split, class_names,
               groups, info, bona_fide, species, video, progress: Optional[bool] = None):
    """The manifest's samples as action clips read from their frame folders or video files
    (``data.frames.ClipData``)."""
    from .frames import manifest_clip_data

    info["format"] = "manifest (clips: frame folders or video files)"
    return manifest_clip_data(cfg, source.stem, root, files, labels, split, class_names,
                              lambda m, i: f"line {lines[i]} of '{source.name}', column 'x.{m}'",
                              lambda i: f"the sample on line {lines[i]} of '{source.name}'", progress, info=info,
                              groups=groups, bona_fide=bona_fide, species=species, video=video)

"""CASIA-SURF (face anti-spoofing; RGB + depth + IR face crops from an Intel RealSense SR300).

``mmhal run --data casia-surf --root DIR``. Modalities ``rgb`` (3 channels), ``depth`` and ``ir`` (1 channel
each); images are resized to ``data.image_size`` (default 112 x 112). Two releases, chosen by
``data.protocol`` (``auto``: the challenge lists when ``train_list.txt`` is under the root, else the
re-release protocol files):

* ``challenge`` (ChaLearn CVPR-2019 release): ``train_list.txt``, ``val_private_list.txt`` (the labelled dev
  list, also distributed as ``val_label.txt``, read when the former is absent) and ``test_private_list.txt``
  under the root; each line ``<rgb> <depth> <ir> <label>`` relative to the root with **1 = bona fide**.
  Train paths look like ``Training/fake_part/CLKJ_AS0005/04_en_b.rssdk/color/31.jpg`` (unpadded frame
  numbers); val/test are anonymised (``Val/0000/000000-color.jpg``), so the attack type of val/test images
  is unknown and ``species`` is None for the whole dataset: no per-species APCER from this release.
  Groups: the subject folder (``CLKJ_AS0005``) in train, the 4-digit folder (``Val/0000``) in val/test.
  The ``*_public_list.txt`` files have no labels and cannot be used.
* ``rerelease`` (the dataset authors' re-release, ``CASIA_SURF/protocol/CASIA_SURF@p1_image_{train,dev,test}.txt``):
  lines ``<colour image path> <label>`` with **0 = bona fide (live), 1 = attack (fake)**; the depth and IR
  images are found by replacing the ``color`` folder with ``depth`` and ``ir``. Every split keeps the attack
  folder ``NN_<cuts>_<shape>.rssdk``, so ``species`` is the two-digit attack type (``"01"`` .. ``"06"``);
  groups = subject folder; ``video`` = the ``.rssdk`` folder. The root may be the folder holding
  ``protocol/`` or the one above it; list paths are resolved against either.

Modalities are paired by key, never by list position: the three paths of a line must name the same frame
(the same stem in ``color``/``depth``/``ir`` folders, or the same ``######-`` prefix), each in its own
modality's place (a line with the depth and IR columns swapped is an error). Every listed file is checked to
exist when the data are loaded. Labels are converted to ``bona_fide`` in the parser (``info["polarity"]``
says which label meant bona fide in the files); a line whose ``real_part``/``fake_part`` folder contradicts
its label is an error (usually the wrong release chosen). Scoring is per image (``data.scoring=video`` works
for the re-release only, whose images name their video).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from .base import PAD_CLASSES, register_dataset
from .files import FileData, resolve_image_size
from .manifest import check_files_exist, resolve_scoring

MODALITIES = ("rgb", "depth", "ir")
CHANNELS = {"rgb": 3, "depth": 1, "ir": 1}
FOLDER = {"rgb": "color", "depth": "depth", "ir": "ir"}  # each modality's folder / file-name marker
DEFAULT_SIZE = [112]
CHALLENGE_LISTS = {"train": "train_list.txt", "val": "val_private_list.txt", "test": "test_private_list.txt"}
VAL_ALIAS = "val_label.txt"
PUBLIC_LISTS = {"val": "val_public_list.txt", "test": "test_public_list.txt"}
RERELEASE_LISTS = {"train": "CASIA_SURF@p1_image_train.txt", "val": "CASIA_SURF@p1_image_dev.txt",
                   "test": "CASIA_SURF@p1_image_test.txt"}
PROTOCOLS = ("auto", "challenge", "rerelease")
_ATTACK_FOLDER = re.compile(r"^(\d+)(?:_|$)")
_MARKED_STEM = re.compile(r"^(.*)-(color|depth|ir)$")


def frame_key(path: str) -> tuple[Optional[str], str]:
    """(modality marker, frame key) of a CASIA-SURF image path: ``.../real.rssdk/depth/31.jpg`` ->
    (``depth``, ``.../real.rssdk/31``); ``Val/0000/000000-ir.jpg`` -> (``ir``, ``Val/0000/000000``); a path
    in neither form -> (None, its file stem)."""
    parts = path.replace("\\", "/").split("/")
    stem = os.path.splitext(parts[-1])[0]
    if len(parts) >= 2 and parts[-2] in FOLDER.values():
        return parts[-2], "/".join(parts[:-2] + [stem])
    m = _MARKED_STEM.match(stem)
    if m:
        return m.group(2), "/".join(parts[:-1] + [m.group(1)])
    return None, stem


def _check_pairing(paths: dict[str, str], where: str) -> None:
    """The three paths of one line name the same frame, each in its own modality's place."""
    keys = {m: frame_key(p) for m, p in paths.items()}
    for m, (marker, _) in keys.items():
        if marker is not None and marker != FOLDER[m]:
            raise DataError(
                f"{where} puts '{paths[m]}' (a '{marker}' image) in the {m} column; the columns are rgb, depth, ir"
            )
    if len({k for _, k in keys.values()}) > 1:
        raise DataError(
            f"{where} pairs images of different frames ({', '.join(paths.values())}); the rgb, depth and ir paths "
            "of a line must name the same frame"
        )


def _rssdk(parts: list[str]) -> int:
    """The index of the ``*.rssdk`` folder in a path's parts, -1 when there is none."""
    return next((j for j, p in enumerate(parts) if p.endswith(".rssdk")), -1)


def _subject(path: str) -> str:
    """The group of an image: the subject folder (the one above ``*.rssdk``), else the 4-digit folder of the
    anonymised val/test images (``Val/0000``), else the image's folder."""
    parts = path.replace("\\", "/").split("/")
    j = _rssdk(parts)
    if j >= 1:
        return parts[j - 1]
    return "/".join(parts[:-1]) or "."


def _species(path: str) -> Optional[str]:
    """The attack type from an ``NN_<cuts>_<shape>.rssdk`` folder (``"04"``; ``""`` for ``real.rssdk``), None
    when the path has no such folder."""
    parts = path.replace("\\", "/").split("/")
    j = _rssdk(parts)
    if j < 0:
        return None
    name = parts[j][: -len(".rssdk")]
    if name.lower().startswith("real"):
        return ""
    m = _ATTACK_FOLDER.match(name)
    return m.group(1) if m else None


def _check_folder_vs_label(path: str, bona: bool, where: str, meaning: str) -> None:
    """A line whose real_part / fake_part folder contradicts its label (usually the wrong release's polarity)."""
    parts = path.replace("\\", "/").split("/")
    if "real_part" in parts and not bona:
        raise DataError(f"{where} labels the real_part image '{path}' as an attack ({meaning}); check data.protocol")
    if "fake_part" in parts and bona:
        raise DataError(f"{where} labels the fake_part image '{path}' as bona fide ({meaning}); check data.protocol")


def _read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank lines of a list file as (line number, fields)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"list file '{path}' is not UTF-8 text") from None
    out = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not out:
        raise DataError(f"list file '{path}' lists no image")
    return out


# ----------------------------------------------------------------------------- the two releases
def _find_protocol_dir(root: Path) -> Optional[Path]:
    for d in (root / "protocol", root / "CASIA_SURF" / "protocol"):
        if (d / RERELEASE_LISTS["train"]).is_file():
            return d
    return None


def _challenge_lists(root: Path, info: dict, warnings: list[str]) -> dict[str, Path]:
    lists = {"train": root / CHALLENGE_LISTS["train"]}
    if not lists["train"].is_file():
        raise DataError(f"'{lists['train']}' does not exist; the CASIA-SURF challenge release needs train_list.txt")
    val = root / CHALLENGE_LISTS["val"]
    if not val.is_file() and (root / VAL_ALIAS).is_file():
        val = root / VAL_ALIAS
    if not val.is_file():
        if (root / PUBLIC_LISTS["val"]).is_file():
            raise DataError(
                f"'{root / PUBLIC_LISTS['val']}' cannot be used because it has no labels; the labelled dev list "
                f"val_private_list.txt (or val_label.txt) is needed under '{root}'"
            )
        raise DataError(f"'{root / CHALLENGE_LISTS['val']}' does not exist; the labelled dev list is needed for validation")
    lists["val"] = val
    test = root / CHALLENGE_LISTS["test"]
    if test.is_file():
        lists["test"] = test
    elif (root / PUBLIC_LISTS["test"]).is_file():
        warnings.append(
            f"'{root / PUBLIC_LISTS['test']}' has no labels, so it cannot be used and there are no test figures; "
            "test_private_list.txt is the labelled test list"
        )
    else:
        info["test"] = f"'{test}' does not exist, so there are no test figures"
    return lists


def _parse_challenge(lists: dict[str, Path]) -> dict[str, list]:
    rows: dict[str, list] = {k: [] for k in ("split", "rgb", "depth", "ir", "bona", "group", "where")}
    for split, file in lists.items():
        for n, fields in _read_lines(file):
            where = f"line {n} of '{file.name}'"
            if len(fields) == 3:
                raise DataError(
                    f"{where} has no label: '{file.name}' looks like a public list, which cannot be used (it has no "
                    "labels); use the private (labelled) list"
                )
            if len(fields) != 4:
                raise DataError(f"{where} has {len(fields)} fields; a line is '<rgb> <depth> <ir> <label>'")
            if fields[3] not in ("0", "1"):
                raise DataError(f"{where} has the label '{fields[3]}'; labels are 1 (bona fide) or 0 (attack)")
            paths = dict(zip(MODALITIES, fields[:3]))
            _check_pairing(paths, where)
            bona = fields[3] == "1"
            _check_folder_vs_label(paths["rgb"], bona, where, "in the challenge lists 1 = bona fide")
            rows["split"].append(split)
            rows["where"].append(where)
            for m in MODALITIES:
                rows[m].append(paths[m])
            rows["bona"].append(bona)
            rows["group"].append(_subject(paths["rgb"]))
    return rows


def _swap_folder(path: str, new: str) -> Optional[str]:
    """``path`` with its ``color`` folder replaced by ``new``; None when it has no ``color`` folder."""
    parts = path.replace("\\", "/").split("/")
    idx = [j for j, p in enumerate(parts[:-1]) if p == "color"]
    if not idx:
        return None
    parts[idx[-1]] = new
    return "/".join(parts)


def _parse_rerelease(lists: dict[str, Path], warnings: list[str]) -> dict[str, list]:
    keys = ("split", "rgb", "depth", "ir", "bona", "group", "species", "video", "where")
    rows: dict[str, list] = {k: [] for k in keys}
    unknown = 0
    for split, file in lists.items():
        for n, fields in _read_lines(file):
            where = f"line {n} of '{file.name}'"
            if len(fields) == 1:
                raise DataError(f"{where} has no label; a line is '<colour image path> <label>' (0 = live, 1 = fake)")
            if len(fields) != 2:
                raise DataError(f"{where} has {len(fields)} fields; a line is '<colour image path> <label>'")
            if fields[1] not in ("0", "1"):
                raise DataError(f"{where} has the label '{fields[1]}'; labels are 0 (live) or 1 (fake) in this release")
            rgb = fields[0]
            depth, ir = _swap_folder(rgb, "depth"), _swap_folder(rgb, "ir")
            if depth is None or ir is None:
                raise DataError(
                    f"{where} names '{rgb}', which is not in a 'color' folder, so its depth and IR images cannot be found"
                )
            bona = fields[1] == "0"
            _check_folder_vs_label(rgb, bona, where, "in the re-release 0 = live, 1 = fake")
            species = "" if bona else _species(rgb)
            if species is None or (not bona and species == ""):
                species, unknown = "unknown", unknown + 1
            parts = rgb.replace("\\", "/").split("/")
            j = _rssdk(parts)
            rows["split"].append(split)
            rows["where"].append(where)
            rows["rgb"].append(rgb)
            rows["depth"].append(depth)
            rows["ir"].append(ir)
            rows["bona"].append(bona)
            rows["group"].append(_subject(rgb))
            rows["species"].append(species)
            rows["video"].append("/".join(parts[: j + 1]) if j >= 0 else "/".join(parts[:-2]))
    if unknown:
        warnings.append(
            f"{unknown} attack images are not in an 'NN_..._.rssdk' folder, so their attack type is recorded as 'unknown'"
        )
    return rows


def _rerelease_base(root: Path, protocol_dir: Path, first: str) -> Path:
    """The folder the re-release's list paths start from (the root, or a folder above it)."""
    for base in dict.fromkeys((root, root.parent, protocol_dir.parent, protocol_dir.parent.parent)):
        if (base / first).is_file():
            return base
    raise DataError(
        f"the first image of the re-release lists, '{first}', is neither under '{root}' nor under '{root.parent}'"
    )


@register_dataset("casia-surf")
def load_casia_surf(cfg: DataConfig, path: Optional[str] = None) -> FileData:
    """CASIA-SURF from the release under ``path`` (default ``cfg.path``, the CLI's ``--root``)."""
    folder = path if path is not None else cfg.path
    if not folder:
        raise DataError("casia-surf needs the dataset's folder: pass --root DIR (or set data.path)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"the CASIA-SURF folder '{root}' does not exist")
    protocol = cfg.protocol
    if protocol not in PROTOCOLS:
        raise DataError(f"data.protocol for casia-surf must be auto, challenge or rerelease, got '{protocol}'")
    protocol_dir = _find_protocol_dir(root)
    if protocol == "auto":
        if (root / CHALLENGE_LISTS["train"]).is_file():
            protocol = "challenge"
        elif protocol_dir is not None:
            protocol = "rerelease"
        else:
            raise DataError(
                f"'{root}' holds neither the challenge lists (train_list.txt, val_private_list.txt, "
                f"test_private_list.txt) nor the re-release protocol files (protocol/{RERELEASE_LISTS['train']} and "
                "its dev and test lists)"
            )

    info: dict[str, Any] = {"source": str(root), "format": "casia-surf", "release": protocol}
    warnings: list[str] = []
    if protocol == "challenge":
        lists = _challenge_lists(root, info, warnings)
        rows = _parse_challenge(lists)
        base = root
        info["polarity"] = "label 1 = bona fide, 0 = attack (challenge lists)"
        info["species"] = (
            "unavailable: the challenge release anonymises val/test images, so their attack type (and per-species "
            "APCER) is unknown"
        )
        species = video = None
    else:
        if protocol_dir is None:
            raise DataError(
                f"the re-release protocol file {RERELEASE_LISTS['train']} is neither in '{root / 'protocol'}' nor in "
                f"'{root / 'CASIA_SURF' / 'protocol'}'"
            )
        lists = {"train": protocol_dir / RERELEASE_LISTS["train"]}
        for split in ("val", "test"):
            f = protocol_dir / RERELEASE_LISTS[split]
            if f.is_file():
                lists[split] = f
            elif split == "val":
                raise DataError(f"'{f}' does not exist; the dev list is needed for validation")
            else:
                info["test"] = f"'{f}' does not exist, so there are no test figures"
        rows = _parse_rerelease(lists, warnings)
        base = _rerelease_base(root, protocol_dir, rows["rgb"][0])
        info["polarity"] = "label 0 = bona fide (live), 1 = attack (fake) (re-release protocol files)"
        species = np.array(rows["species"], dtype=str)
        video = np.array(rows["video"], dtype=str)
    info["lists"] = {s: str(f) for s, f in lists.items()}

    files = {m: rows[m] for m in MODALITIES}
    check_files_exist(files, str(base), lambda m, i: f"the {m} image of {rows['where'][i]}")

    bona_fide = np.array(rows["bona"], dtype=bool)
    split = np.array(rows["split"], dtype="<U5")
    info["split"] = "from the release's lists (val = the dev list)"
    info["split_sizes"] = ", ".join(f"{s} {int((split == s).sum())}" for s in ("train", "val", "test"))
    info["scoring"] = resolve_scoring(cfg, video is not None, "sample", f"the CASIA-SURF {protocol} release")
    info["warnings"] = warnings
    image_size = resolve_image_size(cfg.image_size or DEFAULT_SIZE, "")
    return FileData(
        name="casia-surf",
        files={m: np.array(p, dtype=str) for m, p in files.items()},
        labels=bona_fide.astype(np.int64),
        split=split,
        class_names=list(PAD_CLASSES),
        channels=dict(CHANNELS),
        image_size=image_size,
        root=str(base),
        groups=np.array(rows["group"], dtype=str),
        info=info,
        bona_fide=bona_fide,
        species=species,
        video=video,
    )

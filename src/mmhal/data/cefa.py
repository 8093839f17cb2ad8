"""CASIA-SURF CeFA (face anti-spoofing across ethnicities; RGB + depth + IR frames of RealSense videos).

``mmhal run --data cefa --root DIR``. Layout (the 2D subset)::

    <root>/{AF,CA,EA}/<RACE>-<ID>[-<IdCard>]/<race>_<ID>_<device>_<session>_<PAI>/{profile|color,depth,ir}/NNNN.jpg

(``<root>/Ethnicity/{AF,CA,EA}`` is accepted too). race 1 AF, 2 CA, 3 EA; device 1..4; session 1..3;
PAI 1 real (bona fide), 2 print (cloth), 3 photo, 4 replay (screen). Every frame of a selected video is one
sample (``data.cefa.frames_per_video`` = k > 0 keeps k evenly spaced frames), frames sorted by the integer
in their file name; modalities are paired by file name (a frame missing in one modality is an error naming
the video and frame). ``video`` = the video folder name (the scoring unit: ``data.scoring=auto`` scores the
mean of a video's frames), ``groups`` = the subject (``AF-000``), ``species`` = ``print``/``photo``/``replay``
for attacks and ``""`` for bona fide. The bona fide flag comes from the PAI in the folder name, so no label
polarity is involved. Modalities ``rgb`` (3 channels), ``depth`` and ``ir`` (1 channel); images resized to
``data.image_size`` (default 112 x 112). The 3D-mask and silicone-mask subsets are not read.

Protocols are explicit filters (``mmhal.config.CefaConfig``): races, PAIs, devices, sessions and subject-ID
ranges of train, dev (the val split) and test. ``data.protocol`` picks a preset (see :data:`PRESETS`);
fields of ``data.cefa`` that are set (non-empty) replace the preset's; ``custom`` uses ``data.cefa`` alone
(empty = no filter; empty ID ranges = the standard 0-199 / 200-299 / 300-499).

Preset notes (what is uncertain):

* ``4@1``/``4@2``/``4@3``: challenge protocol 4 (cross-ethnicity and cross-PAI; WACV 2021 Table 4, CVPR-2020
  challenge): train and dev one ethnicity (AF/CA/EA) with real + replay, test the other two ethnicities
  with real + print; IDs 0-199 train, 200-299 dev, 300-499 test. The presets filter no device or session:
  the dataset authors' p4.1 counts (one real video per subject, device 1 session 1; replay device 3
  session 1; print device 3 sessions 1-2) suggest the 2D subset holds nothing else, but the exact
  device/session lists of the challenge are not published. Whether the challenge test lists contained
  3D masks is unknown; these presets, reading the 2D subset only, have none.
* ``mmh-4@5``: the MMH authors' ``race_prot_rdi_4@5`` (the default of their code): train/dev EA, test AF,
  devices {1, 3}, sessions {1, 2}, PAIs train {1, 4}, test {1, 2}, the same ID ranges.
* ``auto`` = ``4@1``, the first official sub-protocol (choose ``mmh-4@5`` to compare with the MMH code).
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
from .files import IMAGE_SUFFIXES, FileData, resolve_image_size
from .manifest import resolve_scoring

MODALITIES = ("rgb", "depth", "ir")
CHANNELS = {"rgb": 3, "depth": 1, "ir": 1}
RGB_FOLDERS = ("profile", "color")  # the challenge data / the re-release
RACES = {1: "AF", 2: "CA", 3: "EA"}
SPECIES = {1: "", 2: "print", 3: "photo", 4: "replay"}  # PAI code -> attack species ("" = bona fide)
DEFAULT_SIZE = [112]
STANDARD_IDS = {"train_ids": [0, 199], "dev_ids": [200, 299], "test_ids": [300, 499]}
FILTER_KEYS = ("train_races", "test_races", "train_pais", "test_pais", "devices", "sessions",
               "train_ids", "dev_ids", "test_ids")


def _p4(train: str) -> dict[str, list]:
    return {"train_races": [train], "test_races": [r for r in ("AF", "CA", "EA") if r != train],
            "train_pais": [1, 4], "test_pais": [1, 2], "devices": [], "sessions": [], **STANDARD_IDS}


#: protocol name -> filters (empty list = no filter)
PRESETS: dict[str, dict[str, list]] = {
    "4@1": _p4("AF"),
    "4@2": _p4("CA"),
    "4@3": _p4("EA"),
    "mmh-4@5": {"train_races": ["EA"], "test_races": ["AF"], "train_pais": [1, 4], "test_pais": [1, 2],
                "devices": [1, 3], "sessions": [1, 2], **STANDARD_IDS},
    "custom": {"train_races": [], "test_races": [], "train_pais": [], "test_pais": [], "devices": [],
               "sessions": [], **STANDARD_IDS},
}
AUTO = "4@1"

_SUBJECT = re.compile(r"^(AF|CA|EA)-(\d+)(?:-.*)?$")
_VIDEO = re.compile(r"^(\d)_(\d+)_(\d)_(\d)_(\d)$")
_NUMBER = re.compile(r"\d+")


def protocol_filters(cfg: DataConfig) -> tuple[str, dict[str, list]]:
    """(protocol name, filters): ``data.protocol``'s preset with every non-empty ``data.cefa`` field put in."""
    name = AUTO if cfg.protocol == "auto" else cfg.protocol
    if name not in PRESETS:
        raise DataError(
            f"data.protocol for cefa must be auto, {', '.join(PRESETS)}, got '{cfg.protocol}'"
        )
    filters = {k: list(v) for k, v in PRESETS[name].items()}
    cefa = getattr(cfg, "cefa", None)
    for key in FILTER_KEYS:
        value = list(getattr(cefa, key, []) or [])
        if value:
            filters[key] = [str(v).upper() for v in value] if key.endswith("races") else [int(v) for v in value]
    for key in ("train_ids", "dev_ids", "test_ids"):
        r = filters[key]
        if len(r) != 2 or r[0] > r[1]:
            raise DataError(f"data.cefa.{key} must be a range [first, last] of subject IDs, got {r}")
    return name, filters


def _describe(filters: dict[str, list], side: str) -> str:
    races = filters["train_races" if side != "test" else "test_races"] or ["every race"]
    pais = filters["train_pais" if side != "test" else "test_pais"]
    ids = filters[{"train": "train_ids", "val": "dev_ids", "test": "test_ids"}[side]]
    pai_words = ", ".join(SPECIES[p] or "real" for p in pais) if pais else "every PAI"
    return f"races {', '.join(races)}, IDs {ids[0]}-{ids[1]}, PAIs {pai_words}"


def _assign(filters: dict[str, list], race: str, sid: int, device: int, session: int, pai: int, video: str) -> Optional[str]:
    """The split of one video under the filters (None = not in the protocol)."""
    if filters["devices"] and device not in filters["devices"]:
        return None
    if filters["sessions"] and session not in filters["sessions"]:
        return None

    def inside(r: list) -> bool:
        return r[0] <= sid <= r[1]

    train_side = (not filters["train_races"] or race in filters["train_races"]) and (
        not filters["train_pais"] or pai in filters["train_pais"])
    test_side = (not filters["test_races"] or race in filters["test_races"]) and (
        not filters["test_pais"] or pai in filters["test_pais"])
    hits = [s for s, ok in (("train", train_side and inside(filters["train_ids"])),
                            ("val", train_side and inside(filters["dev_ids"])),
                            ("test", test_side and inside(filters["test_ids"]))) if ok]
    if len(hits) > 1:
        raise DataError(
            f"video '{video}' matches the filters of both {hits[0]} and {hits[1]}; make the data.cefa ID ranges "
            "(or races / PAIs) of the splits disjoint"
        )
    return hits[0] if hits else None


def _frame_order(stem: str) -> tuple:
    nums = _NUMBER.findall(stem)
    return (0, int(nums[-1]), stem) if nums else (1, 0, stem)


def _frames(folder: Path, video: str, modality_folder: str) -> dict[str, str]:
    """Frame stem -> file name of the images in one modality folder of a video."""
    out: dict[str, str] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise DataError(f"video '{video}' has no '{modality_folder}' folder") from None
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_SUFFIXES:
            continue
        if stem in out:
            raise DataError(f"video '{video}' has two '{modality_folder}' images for frame '{stem}' ({out[stem]}, {name})")
        out[stem] = name
    if not out:
        raise DataError(f"video '{video}' has no image in its '{modality_folder}' folder")
    return out


def _video_frames(vdir: Path, video: str) -> list[dict[str, str]]:
    """The frames of one video: per frame, modality -> file path relative to the video folder, sorted by the
    integer in the frame's name; paired by file name across modalities."""
    rgb = [f for f in RGB_FOLDERS if (vdir / f).is_dir()]
    if not rgb:
        raise DataError(f"video '{video}' has neither a 'profile' nor a 'color' folder for its RGB frames")
    if len(rgb) > 1:
        raise DataError(f"video '{video}' has both a 'profile' and a 'color' folder; keep one RGB folder")
    folders = {"rgb": rgb[0], "depth": "depth", "ir": "ir"}
    frames = {m: _frames(vdir / f, video, f) for m, f in folders.items()}
    ref = frames["rgb"]
    for m in ("depth", "ir"):
        missing = sorted(set(ref) - set(frames[m]), key=_frame_order)
        if missing:
            raise DataError(
                f"video '{video}' has frame '{ref[missing[0]]}' in '{folders['rgb']}' but not in '{folders[m]}' "
                f"({len(ref)} vs {len(frames[m])} frames)"
            )
        extra = sorted(set(frames[m]) - set(ref), key=_frame_order)
        if extra:
            raise DataError(
                f"video '{video}' has frame '{frames[m][extra[0]]}' in '{folders[m]}' but not in '{folders['rgb']}' "
                f"({len(frames[m])} vs {len(ref)} frames)"
            )
    return [{m: f"{folders[m]}/{frames[m][stem]}" for m in MODALITIES} for stem in sorted(ref, key=_frame_order)]


def pick_frames(n: int, k: int) -> np.ndarray:
    """Indices of ``k`` evenly spaced frames of ``n`` (the middle of k equal segments); all when k is 0 or >= n."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


def _race_base(root: Path) -> Path:
    for base in (root, root / "Ethnicity"):
        if any((base / r).is_dir() for r in RACES.values()):
            return base
    raise DataError(
        f"'{root}' holds no AF, CA or EA folder; the CeFA layout is <root>/{{AF,CA,EA}}/<RACE>-<ID>/"
        "<race>_<ID>_<device>_<session>_<PAI>/{profile,depth,ir}/NNNN.jpg"
    )


@register_dataset("cefa")
def load_cefa(cfg: DataConfig, path: Optional[str] = None) -> FileData:
    """CeFA's 2D subset under ``path`` (default ``cfg.path``, the CLI's ``--root``), filtered by the protocol."""
    folder = path if path is not None else cfg.path
    if not folder:
        raise DataError("cefa needs the dataset's folder: pass --root DIR (or set data.path)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"the CeFA folder '{root}' does not exist")
    name, filters = protocol_filters(cfg)
    base = _race_base(root)
    k = int(getattr(getattr(cfg, "cefa", None), "frames_per_video", 0) or 0)

    wanted = sorted(set(filters["train_races"]) | set(filters["test_races"])) if (
        filters["train_races"] and filters["test_races"]) else sorted(RACES.values())
    rows: dict[str, list] = {k_: [] for k_ in ("split", "rgb", "depth", "ir", "bona", "group", "species", "video")}
    videos = {"train": 0, "val": 0, "test": 0}
    for race in wanted:
        rdir = base / race
        if not rdir.is_dir():
            if filters["train_races"] and filters["test_races"]:
                raise DataError(f"protocol {name} needs the '{race}' folder under '{base}', which does not exist")
            continue
        for subject in sorted(os.listdir(rdir)):
            sdir = rdir / subject
            if not sdir.is_dir():
                continue
            m = _SUBJECT.match(subject)
            if not m or m.group(1) != race:
                raise DataError(
                    f"folder '{race}/{subject}' is not a CeFA subject folder named {race}-<ID> (e.g. {race}-000)"
                )
            sid = int(m.group(2))
            for vname in sorted(os.listdir(sdir)):
                vdir = sdir / vname
                if not vdir.is_dir():
                    continue
                rel = f"{race}/{subject}/{vname}"
                v = _VIDEO.match(vname)
                if not v:
                    raise DataError(
                        f"folder '{rel}' is not a CeFA video folder named <race>_<ID>_<device>_<session>_<PAI> "
                        "(e.g. 1_000_1_1_1)"
                    )
                r, vid, device, session, pai = (int(x) for x in v.groups())
                if RACES.get(r) != race or vid != sid:
                    raise DataError(
                        f"video folder '{rel}' names race {r} and subject {v.group(2)}, which do not match its "
                        f"folder '{race}/{subject}'"
                    )
                if pai not in SPECIES:
                    raise DataError(f"video folder '{rel}' names the PAI {pai}; CeFA's PAIs are 1 to 4")
                split = _assign(filters, race, sid, device, session, pai, rel)
                if split is None:
                    continue
                frames = _video_frames(vdir, rel)
                frames = [frames[i] for i in pick_frames(len(frames), k)]
                videos[split] += 1
                for fr in frames:
                    for mod in MODALITIES:
                        rows[mod].append(f"{rel}/{fr[mod]}")
                    rows["split"].append(split)
                    rows["bona"].append(pai == 1)
                    rows["group"].append(f"{race}-{m.group(2)}")
                    rows["species"].append(SPECIES[pai])
                    rows["video"].append(vname)

    for split in ("train", "val"):
        if not videos[split]:
            raise DataError(
                f"no CeFA video under '{base}' matches the {'dev' if split == 'val' else split} filters of protocol "
                f"{name} ({_describe(filters, split)})"
            )
    warnings: list[str] = []
    info: dict[str, Any] = {"source": str(base), "format": "cefa", "protocol": name, "filters": filters,
                            "frames_per_video": k, "videos": dict(videos)}
    if not videos["test"]:
        warnings.append(
            f"no CeFA video matches the test filters of protocol {name} ({_describe(filters, 'test')}), so there "
            "are no test figures"
        )
        info["test"] = "no video matches the test filters, so there are no test figures"
    split = np.array(rows["split"], dtype="<U5")
    bona_fide = np.array(rows["bona"], dtype=bool)
    info["split"] = f"by the protocol's filters (protocol {name}; val = dev)"
    info["split_sizes"] = ", ".join(f"{s} {int((split == s).sum())}" for s in ("train", "val", "test"))
    info["polarity"] = "from the folder names: PAI 1 (real) = bona fide"
    info["scoring"] = resolve_scoring(cfg, True, "video", "cefa")
    info["warnings"] = warnings
    return FileData(
        name="cefa",
        files={mod: np.array(rows[mod], dtype=str) for mod in MODALITIES},
        labels=bona_fide.astype(np.int64),
        split=split,
        class_names=list(PAD_CLASSES),
        channels=dict(CHANNELS),
        image_size=resolve_image_size(cfg.image_size or DEFAULT_SIZE, ""),
        root=str(base),
        groups=np.array(rows["group"], dtype=str),
        info=info,
        bona_fide=bona_fide,
        species=np.array(rows["species"], dtype=str),
        video=np.array(rows["video"], dtype=str),
    )

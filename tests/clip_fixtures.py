"""Tiny synthetic action clips as folders of frames, in the layouts the clip loaders read.

Not a test module: functions that WRITE fixtures (used by the clip data tests, end-to-end tests and the clip
loading benchmark). A clip's content depends on its class, so a network can learn something in seconds: a
bright square moves right (class 0), left (class 1), down (class 2) or stays (class 3+), with noise seeded by
the sample's key; depth is the square's distance (a 16-bit PNG in millimetres, or 8-bit), flow the square's
motion encoded as denseflow JPEGs (p = 255 (v + 20) / 40).

* :func:`write_frames`: one sample's frames of one modality into a folder, with a file-name template;
* :func:`write_clip_manifest`: a ``manifest.csv`` naming one folder of frames per modality and sample.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

SIZE = (20, 24)  # (H, W) of fixture frames
MOTION = {0: (0, 1), 1: (0, -1), 2: (1, 0)}  # class -> (dy, dx) per frame; others: still


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))


def frame_pixels(key: str, label: int, modality: str, t: int, size: tuple[int, int] = SIZE,
                 depth_noise: float = 50.0) -> np.ndarray:
    """Frame ``t`` of a sample: uint8 (H, W, 3) RGB, uint16 (H, W) depth in mm (per-pixel Gaussian noise of
    ``depth_noise`` mm), or uint8 (H, W) flow x / y."""
    h, w = size
    dy, dx = MOTION.get(label % 4, (0, 0))
    rng = _rng(f"{key}|{modality}|{t}")
    y0, x0 = h // 3 + dy * (t % 5), w // 3 + dx * (t % 5)
    yy, xx = np.mgrid[0:h, 0:w]
    square = ((yy >= y0) & (yy < y0 + h // 3) & (xx >= x0) & (xx < x0 + w // 3)).astype(float)
    if modality == "rgb":
        img = 60 + 140 * square[..., None] + np.array([10.0, 0.0, -10.0]) + rng.normal(0, 15, (h, w, 3))
        return np.clip(img, 0, 255).astype(np.uint8)
    if modality == "depth":
        mm = 3000 - 1500 * square + rng.normal(0, depth_noise, (h, w))
        return np.clip(mm, 0, 65535).astype(np.uint16)
    if modality in ("flow_x", "flow_y"):
        v = (dx if modality == "flow_x" else dy) * 4.0 * square + rng.normal(0, 0.5, (h, w))
        return np.clip(np.round(255 * (v + 20) / 40), 0, 255).astype(np.uint8)
    raise ValueError(modality)


def save(path: Path, px: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(px)  # uint16 (H, W) -> a 16-bit PNG ("I;16")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=90)
    else:
        img.save(path)


def write_frames(folder: Path, key: str, label: int, modality: str, numbers: Sequence[int], template: str,
                 size: tuple[int, int] = SIZE, depth_noise: float = 50.0) -> None:
    """Frames ``numbers`` of one sample's ``modality`` as ``folder / template.format(n)`` (e.g. ``img_{:05d}.jpg``)."""
    for n in numbers:
        save(Path(folder) / template.format(n), frame_pixels(key, label, modality, int(n), size, depth_noise))


def sample_keys(classes: int, n_per_class: int):
    """(sample index, label, key) of the fixtures' samples, class by class: keys ``c<label>-<j>``."""
    for label in range(classes):
        for j in range(n_per_class):
            yield label * n_per_class + j, label, f"c{label}-{j}"


def write_clip_manifest(root: Path, n_per_class: int = 6, classes: int = 3, frames: int = 10,
                        modalities: Sequence[str] = ("rgb", "depth"), split: bool = True, flow_layout: str = "prefix",
                        short: Optional[dict[int, int]] = None, size: tuple[int, int] = SIZE) -> Path:
    """``root/manifest.csv`` over ``classes * n_per_class`` samples with a ``split`` column (train, val, test
    by sample position) and a ``group`` per sample; each modality one folder per sample: ``rgb`` JPEGs
    ``img_00001.jpg``..., ``depth`` 16-bit PNGs ``depth_1.png``... (unpadded), ``flow`` one frame fewer than RGB as
    ``flow_x_00001.jpg`` / ``flow_y_...`` (``flow_layout`` prefix) or ``x/00001.jpg`` / ``y/...`` (subfolders).
    ``short``: sample index -> its frame count instead of ``frames``."""
    root = Path(root)
    rows = []
    for i, label, key in sample_keys(classes, n_per_class):
        j = i - label * n_per_class
        n = (short or {}).get(i, frames)
        row = {"label": label, "group": key}
        if split:
            row["split"] = ("train", "train", "train", "val", "test", "test")[j % 6]
        for m in modalities:
            folder = root / m / key
            if m == "rgb":
                write_frames(folder, key, label, "rgb", range(1, n + 1), "img_{:05d}.jpg", size)
            elif m == "depth":
                write_frames(folder, key, label, "depth", range(1, n + 1), "depth_{}.png", size)
            elif m == "flow":
                nums = range(1, max(n, 2))
                if flow_layout == "prefix":
                    write_frames(folder, key, label, "flow_x", nums, "flow_x_{:05d}.jpg", size)
                    write_frames(folder, key, label, "flow_y", nums, "flow_y_{:05d}.jpg", size)
                else:
                    write_frames(folder / "x", key, label, "flow_x", nums, "{:05d}.jpg", size)
                    write_frames(folder / "y", key, label, "flow_y", nums, "{:05d}.jpg", size)
            else:
                raise ValueError(m)
            row[f"x.{m}"] = f"{m}/{key}"
        rows.append(row)
    header = ["label"] + (["split"] if split else []) + ["group"] + [f"x.{m}" for m in modalities]
    return write_rows(root, rows, header)


def write_rows(root: Path, rows: list[dict], header: Optional[Sequence[str]] = None) -> Path:
    """``root/manifest.csv`` holding ``rows`` (columns ``header``, default the first row's keys)."""
    path = Path(root) / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header or rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


# ----------------------------------------------------------------------------- the action datasets' own layouts
UCLA_CODES = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)  # NW-UCLA's action codes, labels 0-9 in this order


def ucla_timestamps(n: int) -> tuple[int, int]:
    """(RGB, depth) timestamps of NW-UCLA fixture frame ``n``: different, as in the release."""
    return 90467319 + 33 * n, 90467351 + 33 * n


def write_nw_ucla(root: Path, samples: Optional[Sequence[tuple[int, int, int, int]]] = None, frames: int = 3,
                  long: Optional[dict[tuple[int, int, int, int], int]] = None, size: tuple[int, int] = SIZE) -> Path:
    """NW-UCLA's layout under ``root``: ``multiview_action/view_<v>/a<AA>_s<SS>_e<EE>/frame_<n>_tc_<t>_rgb.jpg``
    and ``..._depth.png`` (16-bit mm; other timestamps than RGB), unpadded ``n`` from 1, plus the files a loader
    must skip (``_depth_vis.jpg``, ``skeletons.txt``, a stray folder). ``samples``: (view, action code, subject,
    execution); default: every action by subjects 1-3 in views 1 and 2, by subject 1 in view 3. ``long``: a sample
    -> its frame count instead of ``frames``. Returns ``root``."""
    root = Path(root)
    if samples is None:
        samples = [(v, a, s, 0) for v in (1, 2) for a in UCLA_CODES for s in (1, 2, 3)]
        samples += [(3, a, 1, 0) for a in UCLA_CODES]
    for v, a, s, e in samples:
        folder = root / "multiview_action" / f"view_{v}" / f"a{a:02d}_s{s:02d}_e{e:02d}"
        label = UCLA_CODES.index(a)
        key = f"view_{v}/{folder.name}"
        for n in range(1, (long or {}).get((v, a, s, e), frames) + 1):
            t_rgb, t_depth = ucla_timestamps(n)
            write_frames(folder, key, label, "rgb", [n], f"frame_{{}}_tc_{t_rgb}_rgb.jpg", size)
            write_frames(folder, key, label, "depth", [n], f"frame_{{}}_tc_{t_depth}_depth.png", size)
            if n == 1:  # the 8-bit view of depth: not a depth frame
                save(folder / f"frame_{n}_tc_{t_depth}_depth_vis.jpg", frame_pixels(key, label, "rgb", n, size))
        (folder / "skeletons.txt").write_text("0\n")
    (root / "multiview_action" / "view_1" / "readme").mkdir(parents=True, exist_ok=True)
    return root


def ntu_name(setup: int, camera: int, performer: int, replication: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}"


def write_ntu(root: Path, names: Optional[Sequence[str]] = None, frames: int = 2, depth_folder: str = "depth",
              size: tuple[int, int] = SIZE) -> Path:
    """NTU RGB+D's frames under ``root``: ``rgb/<name>/img_00001.jpg`` (1-based) and
    ``<depth_folder>/<name>/MDepth-00000001.png`` (16-bit mm). ``names``: default every action by performers 1
    (camera 2), 2 (camera 3) and 4 (camera 2), actions 1-3 by performer 3 (camera 1), action 1 by performer 1 on
    camera 1, and one NTU RGB+D 120 sample (setup 18). Returns ``root``."""
    root = Path(root)
    if names is None:
        names = [ntu_name(1, c, p, 1, a) for p, c in ((1, 2), (2, 3), (4, 2)) for a in range(1, 61)]
        names += [ntu_name(1, 1, 3, 1, a) for a in (1, 2, 3)] + [ntu_name(1, 1, 1, 2, 1), ntu_name(18, 1, 1, 1, 61)]
    for name in names:
        label = int(name[17:20]) - 1
        write_frames(root / "rgb" / name, name, label, "rgb", range(1, frames + 1), "img_{:05d}.jpg", size)
        write_frames(root / depth_folder / name, name, label, "depth", range(1, frames + 1), "MDepth-{:08d}.png", size)
    return root


def _video_frames(folder: Path, key: str, label: int, frames: int, size: tuple[int, int]) -> None:
    """mmaction2 rawframes: ``img_%05d.jpg`` 1..frames and one fewer ``flow_x_`` / ``flow_y_`` frame."""
    write_frames(folder, key, label, "rgb", range(1, frames + 1), "img_{:05d}.jpg", size)
    write_frames(folder, key, label, "flow_x", range(1, frames), "flow_x_{:05d}.jpg", size)
    write_frames(folder, key, label, "flow_y", range(1, frames), "flow_y_{:05d}.jpg", size)


UCF_CLASSES = ("ApplyEyeMakeup", "Archery", "HandstandPushups")
UCF_FILE_CLASS = {"HandstandPushups": "HandStandPushups"}  # the release's own spelling in file names
UCF_TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}


def ucf_video(cls: str, group: int, clip: int) -> str:
    return f"v_{UCF_FILE_CLASS.get(cls, cls)}_g{group:02d}_c{clip:02d}"


def write_ucf101(root: Path, classes: Sequence[str] = UCF_CLASSES, groups: Sequence[int] = (1, 2, 8, 9, 10, 15, 22),
                 clips: int = 1, frames: int = 5, splits: Sequence[int] = (1, 2), size: tuple[int, int] = SIZE) -> Path:
    """UCF101's layout under ``root``: ``ucfTrainTestlist/classInd.txt`` (1-based), ``trainlist0k.txt`` (with
    labels) and ``testlist0k.txt`` (without) for ``splits`` (test groups as the official splits), and
    ``rawframes/<Class>/<video>/`` frames (one flow frame fewer than RGB). Returns ``root``."""
    root = Path(root)
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{k + 1} {c}\r\n" for k, c in enumerate(classes)))
    for k in splits:
        train, test = [], []
        for label, cls in enumerate(classes):
            for g in groups:
                for c in range(1, clips + 1):
                    path = f"{cls}/{ucf_video(cls, g, c)}.avi"
                    (test.append(path) if g in UCF_TEST_GROUPS[k] else train.append(f"{path} {label + 1}"))
        (lists / f"trainlist0{k}.txt").write_text("\r\n".join(train) + "\r\n")
        (lists / f"testlist0{k}.txt").write_text("\r\n".join(test) + "\r\n")
    for label, cls in enumerate(classes):
        for g in groups:
            for c in range(1, clips + 1):
                video = ucf_video(cls, g, c)
                _video_frames(root / "rawframes" / cls / video, video, label, frames, size)
    return root


HMDB_CLASSES = ("catch", "brush_hair", "cartwheel")  # written in this order; the loader sorts them


def hmdb_video(source: int, cls: str, clip: int) -> str:
    return f"Movie_{source}_(take)!_&_{cls}_u_nm_np1_ba_goo_{clip}"


def write_hmdb51(root: Path, classes: Sequence[str] = HMDB_CLASSES, sources: int = 4, clips: int = 2, frames: int = 5,
                 size: tuple[int, int] = SIZE) -> Path:
    """HMDB51's layout under ``root``: ``testTrainMulti_7030_splits/<class>_test_split{1,2}.txt`` and
    ``rawframes/<class>/<video>/`` frames (one flow frame fewer than RGB). ``sources`` source movies x ``clips``
    clips per class; split k: source k - 1 is test, the others train; one more line per file is unused (id 0,
    no frames). Video names hold ``( ) ! &``. Returns ``root``."""
    root = Path(root)
    lists = root / "testTrainMulti_7030_splits"
    lists.mkdir(parents=True, exist_ok=True)
    for cls in classes:
        label = sorted(classes).index(cls)
        for k in (1, 2):
            lines = [f"{hmdb_video(s, cls, c)}.avi {2 if s == k - 1 else 1} " for s in range(sources)
                     for c in range(clips)]
            lines.append(f"Unused_clip_{cls}_f_cm_np2_le_bad_0.avi 0 ")
            (lists / f"{cls}_test_split{k}.txt").write_text("\n".join(lines) + "\n")
        for s in range(sources):
            for c in range(clips):
                video = hmdb_video(s, cls, c)
                _video_frames(root / "rawframes" / cls / video, video, label, frames, size)
    return root

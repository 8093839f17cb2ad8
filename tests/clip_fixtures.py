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


def frame_pixels(key: str, label: int, modality: str, t: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frame ``t`` of a sample: uint8 (H, W, 3) RGB, uint16 (H, W) depth in mm, or uint8 (H, W) flow x / y."""
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
        mm = 3000 - 1500 * square + rng.normal(0, 50, (h, w))
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
                 size: tuple[int, int] = SIZE) -> None:
    """Frames ``numbers`` of one sample's ``modality`` as ``folder / template.format(n)`` (e.g. ``img_{:05d}.jpg``)."""
    for n in numbers:
        save(Path(folder) / template.format(n), frame_pixels(key, label, modality, int(n), size))


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
    i = 0
    for label in range(classes):
        for j in range(n_per_class):
            key = f"c{label}-{j}"
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
            i += 1
    header = ["label"] + (["split"] if split else []) + ["group"] + [f"x.{m}" for m in modalities]
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path

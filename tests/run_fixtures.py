"""Finished runs on tiny synthetic data, made once per test session, for the commands that read a run folder
back (predict, export, report). Tests must not modify them (copy the folder first)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmhal.cli import main
from mmhal.data.npz import save_npz

RUN_METHODS = ["unimodal", "kd", "rad", "mmh", "mmh-ensemble"]


def tiny_npz(path: Path, n: int = 180, seed: int = 0) -> Path:
    """3 classes, a weak series modality ``weak`` (2, 16) and a strong vector modality ``strong`` (5,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    weak = rng.normal(size=(n, 2, 16)).astype(np.float32)
    weak[:, 0] += 0.5 * y[:, None]
    strong = rng.normal(size=(n, 5)).astype(np.float32)
    strong[np.arange(n), y] += 3.0
    save_npz(path, {"weak": weak, "strong": strong}, y, groups=np.arange(n) // 6, class_names=["a", "b", "c"])
    return path


def tiny_pad_manifest(folder: Path, n: int = 96) -> Path:
    """Binary anti-spoofing images as a manifest.csv (``bona_fide`` and ``species`` columns, split, groups):
    modalities ``rgb`` (3 channels) and ``depth``, ``ir`` (grey), 24x20 PNG files."""
    from face_fixtures import write_manifest

    return write_manifest(folder, n=n)


def make_run(folder: Path, data: Path, student: str, methods=RUN_METHODS, seeds: int = 2, epochs: int = 2) -> Path:
    out = folder / "run"
    rc = main(["run", "--data", str(data), "--student", student, "--methods", ",".join(methods),
               "--seeds", str(seeds), "--epochs", str(epochs), "--out", str(out), "--no-progress",
               "model.width=4", "train.batch_size=32", "workers=1", "train.loader_workers=0"])
    assert rc == 0, "the fixture run failed"
    return out

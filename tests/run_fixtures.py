"""Finished runs on tiny synthetic data, made once per test session, for the commands that read a run folder
back (predict, export, report). Tests must not modify them (copy the folder first)."""
from __future__ import annotations

from pathlib import Path


from mmhal.cli import main

RUN_METHODS = ["unimodal", "kd", "rad", "mmh", "mmh-ensemble"]


def tiny_npz(path: Path) -> Path:
    """3 classes, a weak series modality ``weak`` (2, 16) and a strong vector modality ``strong`` (5,): the tiny
    .npz of the CLI tests (``test_cli_run._tiny``)."""
    from test_cli_run import _tiny

    return _tiny(path)


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

"""Validation and test accuracy per method for one or more `mmhal run` folders.

    python benchmarks/summarize_runs.py runs/a runs/b ...

Validation figures are those of each student's selected epoch (mean over seeds), read from the
checkpoints in RUN/models/; test figures come from RUN/results.json. Hyperparameters are chosen on the
validation columns; the test column is reported, never used to choose.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def summarize(run: Path) -> list[tuple[str, float, float, float]]:
    report = json.loads((run / "results.json").read_text())
    rows = []
    for method, r in report["results"].items():
        files = sorted((run / "models").glob(f"{method}-seed*.pt"))
        if not files:
            continue
        val_acc, val_loss = [], []
        for f in files:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
            best = ckpt["history"][ckpt["best_epoch"] - 1]
            val_acc.append(best["val_acc"])
            val_loss.append(best["val_loss"])
        rows.append((method, float(np.mean(val_acc)), float(np.mean(val_loss)), r["accuracy"]["mean"]))
    return rows


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print(f"{'run':<14} {'method':<10} {'val acc %':>9} {'val loss':>9} {'test acc %':>10}")
    for arg in argv:
        for method, va, vl, te in summarize(Path(arg)):
            print(f"{Path(arg).name:<14} {method:<10} {100 * va:9.2f} {vl:9.4f} {100 * te:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

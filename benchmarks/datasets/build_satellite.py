"""Statlog Landsat Satellite (4 spectral bands x 3x3 pixels, 6 soil/crop classes) -> mmhal .npz.

Source: ``Satellite.rda`` of the R package mlbench as Debian ships it (``r-cran-mlbench`` 2.1-3-1).
Either install it (``apt-get install r-cran-mlbench``: the file is then at
/usr/lib/R/site-library/mlbench/data/Satellite.rda, the default here) or only fetch the .deb
(``apt-get download r-cran-mlbench``) and pass ``--deb r-cran-mlbench_*.deb``: the file is read from
the .deb's data archive in memory. The .rda is R's own serialisation format, read with the pure-Python
``rdata`` package (``pip install rdata==1.1.0``): no R, no pickle.

Each sample is the 3x3 neighbourhood of a Landsat MSS pixel in 4 bands (0-255); mlbench's columns
x.1..x.36 are pixel-major (top-left pixel's 4 bands, then top-middle, ...; rows left-to-right,
top-to-bottom), so they reshape to (3, 3, 4) and are transposed to channels-first.
Modalities (images, raw 0-255 values; mmhal standardises each channel with train statistics):
  visible (2, 3, 3)  bands 1-2: green 0.5-0.6 um, red 0.6-0.7 um
  nir     (2, 3, 3)  bands 3-4: near infrared 0.7-0.8 um and 0.8-1.1 um
Split: mlbench keeps the UCI order, rows 1-4435 = the original training file sat.trn and rows
4436-6435 = the test file sat.tst (the per-class counts are checked). 'val' is a seeded (--seed),
class-stratified 20 % of the training rows. There is no group id (all pixels come from one scene).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_rda_arguments, parser, rda_bytes, read_r_data, stratified_holdout, write_npz  # noqa: E402


RDA_IN_DEB = "usr/lib/R/site-library/mlbench/data/Satellite.rda"
N_TRAIN = 4435
# class counts of the original sat.trn / sat.tst, in mlbench's level order
LEVELS = ["red soil", "cotton crop", "grey soil", "damp grey soil", "vegetation stubble", "very damp grey soil"]
TRAIN_COUNTS = [1072, 479, 961, 415, 470, 1038]
TEST_COUNTS = [461, 224, 397, 211, 237, 470]


def main() -> None:
    p = parser(__doc__.splitlines()[0], "data/satellite.npz")
    add_rda_arguments(p, RDA_IN_DEB, "r-cran-mlbench")
    args = p.parse_args()
    df = read_r_data(rda_bytes(args, RDA_IN_DEB, "r-cran-mlbench"), "Satellite")
    levels = [str(c) for c in df["classes"].cat.categories]
    if levels != LEVELS:
        raise SystemExit(f"unexpected class levels {levels}")
    labels = df["classes"].cat.codes.to_numpy().astype(np.int64)
    x = df[[f"x.{i}" for i in range(1, 37)]].to_numpy(dtype=np.float32)
    if len(labels) != 6435:
        raise SystemExit(f"expected 6435 rows, got {len(labels)}")
    tr, te = np.bincount(labels[:N_TRAIN], minlength=6), np.bincount(labels[N_TRAIN:], minlength=6)
    if tr.tolist() != TRAIN_COUNTS or te.tolist() != TEST_COUNTS:
        raise SystemExit("rows are not in the original sat.trn + sat.tst order; cannot recover the standard split")
    img = x.reshape(-1, 3, 3, 4).transpose(0, 3, 1, 2)  # (N, band, row, col)
    modalities = {"visible": np.ascontiguousarray(img[:, :2]), "nir": np.ascontiguousarray(img[:, 2:])}
    split = np.array(["train"] * N_TRAIN + ["test"] * (len(labels) - N_TRAIN), dtype="<U5")
    split[stratified_holdout(labels, np.arange(N_TRAIN), 0.2, args.seed)] = "val"
    write_npz(args.out, modalities, labels, LEVELS, split=split)


if __name__ == "__main__":
    main()

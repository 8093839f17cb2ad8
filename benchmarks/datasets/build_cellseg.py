"""High-content-screening cell segmentation (Hill et al. 2007; 4 fluorescence channels) -> mmhal .npz.

Source: ``segmentationData.RData`` of the R package caret as Debian ships it (``r-cran-caret``
6.0-93+dfsg-1). Either install it (``apt-get install r-cran-caret``; the file is then at
/usr/lib/R/site-library/caret/data/segmentationData.RData, the default here) or only fetch the .deb
(``apt-get download r-cran-caret``) and pass ``--deb r-cran-caret_*.deb``: the file is read from the
.deb's data archive in memory, with the pure-Python ``rdata`` package (``pip install rdata==1.1.0``).

2019 SK-BR-3 cells imaged on a Cellomics ArrayScan in four fluorescence channels; 58 image features
were measured per cell, each from one channel; the label says whether the automatic segmentation of the
cell was good (WS, well segmented) or poor (PS). Channels (Kuhn & Johnson, Applied Predictive
Modeling, ch. 3): 1 = cell body, 2 = cell nucleus, 3 = actin filaments, 4 = tubulin.
Modalities (vectors, raw values; mmhal standardises each feature with train statistics):
  body    the Ch1 features (shape, size, intensity and texture of the cell-body stain)
  nucleus the Ch2 features (average and total intensity)
  actin   the Ch3 features (intensity, texture, fibres)
  tubulin the Ch4 features (intensity, texture, fibres)
XCentroid / YCentroid (position in the field) and the cell id are left out.
Split: the data's own 'Case' column (Train 1009 / Test 1010, as the original study split it);
'val' is a seeded (--seed), class-stratified 20 % of Train. No plate/well id is given, so no 'group'.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_rda_arguments, parser, rda_bytes, read_r_data, stratified_holdout, write_npz  # noqa: E402


RDA_IN_DEB = "usr/lib/R/site-library/caret/data/segmentationData.RData"
CHANNELS = {"body": "Ch1", "nucleus": "Ch2", "actin": "Ch3", "tubulin": "Ch4"}
CLASSES = ["PS", "WS"]


def main() -> None:
    p = parser(__doc__.splitlines()[0], "data/cellseg.npz")
    add_rda_arguments(p, RDA_IN_DEB, "r-cran-caret")
    args = p.parse_args()
    df = read_r_data(rda_bytes(args, RDA_IN_DEB, "r-cran-caret"), "segmentationData")
    if len(df) != 2019:
        raise SystemExit(f"expected 2019 cells, got {len(df)}")
    cols = [str(c) for c in df.columns]
    modalities: dict[str, np.ndarray] = {}
    used = []
    for name, ch in CHANNELS.items():
        mine = [c for c in cols if re.search(rf"{ch}$", c)]
        modalities[name] = df[mine].to_numpy(dtype=np.float32)
        used += mine
    leftover = sorted(set(cols) - set(used) - {"Cell", "Case", "Class", "XCentroid", "YCentroid"})
    if leftover:
        raise SystemExit(f"columns not assigned to a channel: {leftover}")
    labels = np.array([CLASSES.index(str(c)) for c in df["Class"]], dtype=np.int64)
    case = np.array([str(c) for c in df["Case"]])
    split = np.where(case == "Train", "train", "test").astype("<U5")
    split[stratified_holdout(labels, np.flatnonzero(case == "Train"), 0.2, args.seed)] = "val"
    write_npz(args.out, modalities, labels, CLASSES, split=split)


if __name__ == "__main__":
    main()

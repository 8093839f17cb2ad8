"""Bring-your-own image files: manifest.csv loading, the split it gets, and one clear error per bad input."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from face_fixtures import write_manifest
from mmhal.config import DataConfig
from mmhal.data.base import PAD_CLASSES, load_dataset
from mmhal.data.files import FileData
from mmhal.data.manifest import load_manifest
from mmhal.errors import DataError


def load(path, **cfg) -> FileData:
    return load_manifest(DataConfig(**cfg), path=str(path))


def rewrite(path: Path, edit) -> Path:
    """Apply ``edit(header, rows)`` (lists of str, edited in place) to the CSV at ``path``."""
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    header, rows = table[0], table[1:]
    edit(header, rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    return path


def error(path, **cfg) -> str:
    with pytest.raises(DataError) as exc:
        load(path, **cfg)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- loading
def test_pad_manifest_gives_bona_fide_labels_species_groups_and_the_files_split(tmp_path):
    path = write_manifest(tmp_path, n=24)
    data = load_dataset(DataConfig(name=str(path)))  # *.csv routes to the manifest loader
    assert isinstance(data, FileData)
    assert data.class_names == PAD_CLASSES
    assert data.labels.tolist() == [(i + 1) % 2 for i in range(24)]
    assert np.array_equal(data.labels, data.bona_fide.astype(np.int64))
    assert data.species[:4].tolist() == ["", "print", "", "replay"]
    assert data.groups[:5].tolist() == ["s0"] * 4 + ["s1"]
    assert [int((data.split == s).sum()) for s in ("train", "val", "test")] == [16, 4, 4]
    assert data.channels == {"rgb": 3, "depth": 1, "ir": 1}
    assert data.image_size == (24, 20)  # the first image's size
    assert data.info["format"] == "manifest" and data.info["source"] == str(path)
    assert data.info["scoring"] == "sample" and data.video is None
    x = data.read(3, ["rgb", "depth"])
    assert tuple(x["rgb"].shape) == (3, 24, 20) and tuple(x["depth"].shape) == (1, 24, 20)
    assert len(data.fingerprint()) == 16


def test_label_manifest_with_class_names_and_image_size(tmp_path):
    path = write_manifest(tmp_path, n=12, pad=False, num_classes=3, modalities=("rgb",))
    names = {0: "cat", 1: "dog", 2: "owl"}
    rewrite(path, lambda h, rows: (h.append("class_name"), [r.append(names[int(r[0])]) for r in rows]))
    data = load(path, image_size=[16])
    assert data.class_names == ["cat", "dog", "owl"]
    assert data.bona_fide is None and data.species is None
    assert data.image_size == (16, 16)
    assert tuple(data.read(0, ["rgb"])["rgb"].shape) == (3, 16, 16)
    data.check()


def test_class_name_must_be_one_name_per_class(tmp_path):
    path = write_manifest(tmp_path, n=12, pad=False, modalities=("rgb",))
    rewrite(path, lambda h, rows: (h.append("class_name"), [r.append(f"c{i}") for i, r in enumerate(rows)]))
    assert "names class 0 'c3'" in error(path)


def test_absolute_paths_and_the_video_column(tmp_path):
    path = write_manifest(tmp_path, absolute=True, with_video=True)
    data = load(path)
    assert os.path.isabs(data.files["rgb"][0])
    assert data.video[:4].tolist() == ["v0", "v0", "v1", "v1"]
    assert data.info["scoring"] == "video"
    assert load(path, scoring="sample").info["scoring"] == "sample"


def test_scoring_video_needs_a_video_column(tmp_path):
    assert "needs videos" in error(write_manifest(tmp_path), scoring="video")


def test_no_split_column_gets_a_group_aware_split(tmp_path):
    path = write_manifest(tmp_path, n=40, with_split=False)
    data = load(path, val_fraction=0.2, test_fraction=0.2)
    assert data.info["split"].startswith("made by mmhal: group-aware")
    assert data.info["warnings"] == []
    for g in np.unique(data.groups):
        assert len(set(data.split[data.groups == g].tolist())) == 1
    data.check()


def test_no_split_and_no_group_splits_per_sample_with_a_warning(tmp_path):
    data = load(write_manifest(tmp_path, n=40, with_split=False, with_group=False))
    assert data.groups is None
    assert len(data.info["warnings"]) == 1 and "per sample" in data.info["warnings"][0]
    assert {"train", "val", "test"} == set(data.split.tolist())


def test_the_video_column_keeps_videos_whole_when_there_is_no_group(tmp_path):
    data = load(write_manifest(tmp_path, n=40, with_split=False, with_group=False, with_video=True))
    assert data.info["warnings"] == []
    for v in np.unique(data.video):
        assert len(set(data.split[data.video == v].tolist())) == 1


def test_a_split_that_cuts_a_group_is_an_error_unless_allowed(tmp_path):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: rows[0].__setitem__(h.index("split"), "test"))
    assert "group 's0'" in error(path)
    assert len(load(path, allow_shared_groups=True).info["warnings"]) == 1


def test_a_split_without_val_gets_a_val_share_of_train(tmp_path):
    path = write_manifest(tmp_path, n=40)
    rewrite(path, lambda h, rows: [r.__setitem__(h.index("split"), "train") for r in rows if r[h.index("split")] == "val"])
    data = load(path)
    assert (data.split == "val").any() and "has no 'val'" in data.info["split"]


# ----------------------------------------------------------------------------- one sentence per mistake
def test_missing_file_names_the_line_and_column(tmp_path):
    path = write_manifest(tmp_path)
    os.remove(tmp_path / "images" / "depth" / "0005.png")
    msg = error(path)
    assert "0005.png" in msg and "line 7" in msg and "'x.depth'" in msg


def test_empty_cell(tmp_path):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: rows[2].__setitem__(h.index("x.ir"), ""))
    assert error(path) == "line 4 of 'manifest.csv' has an empty 'x.ir' cell"


@pytest.mark.parametrize("column, expected", [
    ("x.", "names no modality"),
    ("x.rgb.left", "not a plain name"),
    ("x.2d", "not a plain name"),
    ("weight", "looks like 'x.weight' (its cells name image files, like a modality)"),
])
def test_bad_column_names(tmp_path, column, expected):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: (h.append(column), [r.append("images/rgb/0000.png") for r in rows]))
    assert expected in error(path)


def test_label_not_an_integer(tmp_path):
    path = write_manifest(tmp_path, pad=False)
    rewrite(path, lambda h, rows: rows[0].__setitem__(h.index("label"), "cat"))
    assert "line 2" in error(path) and "not an integer class index" in error(path)


def test_label_and_bona_fide_together_or_neither(tmp_path):
    path = write_manifest(tmp_path, with_species=False)
    rewrite(path, lambda h, rows: (h.append("label"), [r.append("0") for r in rows]))
    assert "both a 'label' and a 'bona_fide'" in error(path)
    path = write_manifest(tmp_path / "b", with_species=False)
    rewrite(path, lambda h, rows: h.__setitem__(0, "group2"))
    assert "column 'group2'" in error(path) and "looks like 'group'" in error(path)
    path = write_manifest(tmp_path / "c", with_species=False)
    rewrite(path, lambda h, rows: ([r.pop(0) for r in rows], h.pop(0)))
    assert "no 'label' column" in error(path)


def test_bona_fide_must_be_0_or_1(tmp_path):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: rows[1].__setitem__(h.index("bona_fide"), "2"))
    assert "line 3" in error(path) and "1 (bona fide) or 0 (attack)" in error(path)


def test_species_on_a_bona_fide_row(tmp_path):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: rows[0].__setitem__(h.index("species"), "print"))
    assert "line 2" in error(path) and "is bona fide but names the attack species" in error(path)


def test_bad_split_value(tmp_path):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: rows[5].__setitem__(h.index("split"), "dev"))
    assert "line 7" in error(path) and "'dev'" in error(path)


def test_no_modality_column(tmp_path):
    path = write_manifest(tmp_path, modalities=("rgb",))
    rewrite(path, lambda h, rows: ([r.pop() for r in rows], h.pop()))
    assert "no modality column" in error(path)


def test_empty_csv_and_header_only(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "is empty" in error(path)
    path.write_text("label,x.rgb\n")
    assert "no rows" in error(path)
    assert "does not exist" in error(tmp_path / "nothing.csv")


def test_wrong_column_count(tmp_path):
    path = write_manifest(tmp_path)
    rewrite(path, lambda h, rows: rows[3].append("extra"))
    assert error(path).startswith("line 5 of 'manifest.csv' has")


def test_a_class_without_rows(tmp_path):
    path = write_manifest(tmp_path, pad=False, num_classes=2)
    rewrite(path, lambda h, rows: rows[0].__setitem__(h.index("label"), "2"))
    data = load(path)  # labels 0, 1 and one row of 2 (in train)
    assert data.num_classes == 3
    rewrite(path, lambda h, rows: rows[0].__setitem__(h.index("label"), "3"))
    assert "class '2' (label 2) has no row" in error(path)


# ----------------------------------------------------------------------------- issue 21: what a column's files hide
def _image_manifest(folder: Path, modes_sizes) -> Path:
    """A label manifest with one image column x.rgb whose row i is an image of Pillow mode and (H, W) modes_sizes[i]."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x.rgb", "label"])
        for i, (mode, (h, width)) in enumerate(modes_sizes):
            Image.fromarray((rng.random((h, width, 3)) * 255).astype("uint8")).convert(mode).save(folder / f"{i}.png")
            w.writerow([f"{i}.png", i % 2])
    return folder / "m.csv"


def test_a_grey_first_image_does_not_make_a_colour_column_grey_and_the_mix_is_said(tmp_path):
    path = _image_manifest(tmp_path / "a", [("L", (8, 10))] + [("RGB", (8, 10))] * 11)
    data = load(path)
    assert data.channels["rgb"] == 3
    said = [w for w in data.info["warnings"] if "mixes grey and colour" in w]
    assert len(said) == 1 and "line 2 is grey, line 3 in colour" in said[0]
    grey = load(_image_manifest(tmp_path / "b", [("L", (8, 10))] * 12))
    assert grey.channels["rgb"] == 1 and not any("mixes" in w for w in grey.info["warnings"])


def test_images_of_different_sizes_are_said_unless_data_image_size_chooses_one(tmp_path):
    path = _image_manifest(tmp_path, [("RGB", (8, 10))] * 5 + [("RGB", (12, 12))] + [("RGB", (8, 10))] * 6)
    said = [w for w in load(path).info["warnings"] if "differ in size" in w]
    assert len(said) == 1 and "line 2: 8x10, line 7: 12x12" in said[0] and "resized to the first's, 8x10" in said[0]
    assert not any("differ in size" in w for w in load(path, image_size=[8, 8]).info["warnings"])


def test_the_survey_of_a_long_column_reads_a_spread_of_headers_and_says_so(tmp_path, monkeypatch):
    import mmhal.data.manifest as manifest

    monkeypatch.setattr(manifest, "SURVEY_FILES", 4)
    path = _image_manifest(tmp_path, [("RGB", (8, 10))] * 11 + [("L", (8, 10))])  # the last row: surveyed
    said = [w for w in load(path).info["warnings"] if "mixes" in w]
    assert len(said) == 1 and "(of 4 of its 12 files checked)" in said[0] and "line 13 is grey" in said[0]

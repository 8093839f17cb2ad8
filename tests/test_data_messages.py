"""Data mistakes told through `mmhal run`: one sentence that names the real problem (not a symptom such as
numpy's pickle advice, an empty class or the default student), exit code 2, no traceback, no run folder."""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mmhal.cli import main
from mmhal.config import DataConfig
from mmhal.data import casia_surf, cefa, hapt, manifest, npz  # noqa: F401  (register the loaders)
from mmhal.data.base import DATASETS, FOLDER_DATASETS, FORMAT_NAMES
from mmhal.data.npz import load_npz
from mmhal.errors import DataError

N = 60
RUN = ["--epochs", "1", "--seeds", "1", "--methods", "unimodal", "--no-progress", "model.width=4", "workers=1"]


def labels() -> np.ndarray:
    return np.repeat([0, 1, 2], N // 3)


def arrays(**override) -> dict[str, np.ndarray]:
    """A valid file's arrays: modalities weak (2, 16) and strong (5,), 3 classes; ``None`` drops a key."""
    rng = np.random.default_rng(0)
    out = {"label": labels(), "x.weak": rng.normal(size=(N, 2, 16)).astype(np.float32),
           "x.strong": rng.normal(size=(N, 5)).astype(np.float32)}
    out.update(override)
    return {k: v for k, v in out.items() if v is not None}


def npz_file(tmp_path: Path, name: str = "d.npz", **override) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays(**override))
    return path


def run_error(capsys, tmp_path: Path, data: Path | str, *extra: str) -> str:
    """The one-line error of `mmhal run --data DATA`, after checking exit code 2, no traceback and no run folder."""
    out = tmp_path / "run"
    rc = main(["run", "--data", str(data), "--out", str(out), *RUN, *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: "), err
    assert "Traceback" not in err and "allow_pickle" not in err and "pickle.load" not in err
    assert not out.exists()
    return lines[0][len("mmhal: error: "):]


# ----------------------------------------------------------------------------- files that are not .npz archives
def test_a_text_file_is_said_to_be_text_not_a_npz_archive(tmp_path, capsys):
    path = tmp_path / "my.npz"
    path.write_text("sample,label\n1,0\n")
    msg = run_error(capsys, tmp_path, path, "--student", "weak")
    assert msg.startswith(f"data file '{path}' holds text, not a .npz archive")
    assert "pickle" not in msg


@pytest.mark.parametrize("kind, expected", [
    ("empty", "is empty (0 bytes), not a .npz archive"),
    ("folder", "is a folder, not a .npz file"),
    ("missing", "does not exist"),
    ("pickle", "is a Python pickle, not a .npz archive (mmhal never unpickles data files)"),
    ("npy", "holds a single array (a .npy file from numpy.save)"),
    ("zip of text", "is a zip archive that holds no numpy arrays"),
    ("truncated", "is a damaged or truncated zip archive"),
    ("binary", "is not a .npz archive (not a zip file of numpy arrays)"),
])
def test_each_kind_of_non_npz_file_is_named(tmp_path, capsys, kind, expected):
    path = tmp_path / "x.npz"
    if kind == "empty":
        path.touch()
    elif kind == "folder":
        path.mkdir()
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"label": [0, 1]}))
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "zip of text":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "my data")
    elif kind == "truncated":
        whole = npz_file(tmp_path, "whole.npz").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    msg = run_error(capsys, tmp_path, path, "--student", "weak")
    assert msg.startswith(f"data file '{path}' {expected}"), msg


def test_a_zip_member_that_is_not_an_array_is_skipped(tmp_path):
    path = npz_file(tmp_path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("notes.txt", "collected in 2024")
    data = load_npz(DataConfig(), path=str(path))
    assert sorted(data.modalities) == ["strong", "weak"]
    assert data.info["ignored_keys"] == ["notes.txt"]  # not read, but named in the warning on unread keys
    assert any(w.startswith("mmhal does not read the key 'notes.txt'") for w in data.info["warnings"])


def test_a_npz_without_label_but_with_y_says_to_rename_it(tmp_path, capsys):
    path = npz_file(tmp_path, label=None, y=labels())
    msg = run_error(capsys, tmp_path, path, "--student", "weak")
    assert msg == f"'{path}' has no 'label' key (it has: x.strong, x.weak, y): rename 'y' to 'label'"
    path = npz_file(tmp_path, "plain.npz", label=None)
    msg = run_error(capsys, tmp_path, path, "--student", "weak")
    assert msg.endswith("store the class index 0..K-1 of each sample under 'label'")


# ----------------------------------------------------------------------------- labels
def test_a_stray_label_is_named_with_the_valid_range_of_class_names(tmp_path, capsys):
    y = labels()
    y[5] = 7
    path = npz_file(tmp_path, label=y, class_names=np.array(["sit", "stand", "walk"]))
    msg = run_error(capsys, tmp_path, path, "--student", "weak")
    assert msg == "label 7 (1 sample, first at sample 5) is outside the 3 classes (0..2) named by 'class_names'"


def test_a_stray_label_without_class_names_is_blamed_not_the_empty_classes_below_it(tmp_path, capsys):
    y = labels()
    y[5] = 7
    msg = run_error(capsys, tmp_path, npz_file(tmp_path, label=y), "--student", "weak")
    assert msg.startswith("classes 3..6 have no sample, but label 7 (1 sample, first at sample 5) lies above them")
    assert "labels must be class indices 0..K-1" in msg


@pytest.mark.parametrize("bad, expected", [
    ("negative", "'label' holds the negative value -1 (sample 3); labels must be class indices 0..K-1"),
    ("half", "'label' holds 1.5 (sample 4), which is not a whole number; labels must be class indices 0..K-1"),
    ("nan", "'label' holds nan (sample 4), which is not a whole number; labels must be class indices 0..K-1"),
    ("from one", "the labels start at 1, but they are class indices from 0 (class 0 has no sample): subtract 1"),
    ("one-hot", "'label' is one-hot encoded (shape (60, 3)); store the class index per sample instead, "
                "label = y.argmax(axis=1)"),
    ("names", "'label' holds strings (dtype <U5); store class indices 0..K-1 under 'label' and the names under "
              "'class_names'"),
    ("short", "'label' has 50 entries but every modality has 60 samples: 'label' needs one class index per sample"),
])
def test_bad_label_values_are_named(tmp_path, capsys, bad, expected):
    y = labels()
    if bad == "negative":
        y[3] = -1
    elif bad in ("half", "nan"):
        y = y.astype(float)
        y[4] = 1.5 if bad == "half" else np.nan
    elif bad == "from one":
        y = y + 1
    elif bad == "one-hot":
        y = np.eye(3)[y]
    elif bad == "names":
        y = np.array(["sit", "stand", "walk"])[y]
    elif bad == "short":
        y = y[:50]
    assert run_error(capsys, tmp_path, npz_file(tmp_path, label=y), "--student", "weak") == expected


# ----------------------------------------------------------------------------- modalities
def test_the_default_student_on_other_data_says_it_is_hapts_default_and_how_to_choose(tmp_path, capsys):
    msg = run_error(capsys, tmp_path, npz_file(tmp_path))  # no --student: the default, HAPT's gyro
    assert msg == ("the student modality defaults to 'gyro', a modality of the default dataset HAPT, which this "
                   "data does not have (its modalities: strong, weak); choose the student's modalities with "
                   "--student NAME (e.g. --student strong) or student: [NAME] in a recipe")
    # a student the user named is reported as theirs
    msg = run_error(capsys, tmp_path, npz_file(tmp_path), "--student", "rgb")
    assert msg == "the student asks for modality 'rgb', which the data does not have (it has: strong, weak)"


@pytest.mark.parametrize("shape, order", [((N, 32, 32, 3), "(0, 3, 1, 2)"), ((N, 28, 28, 1), "(0, 3, 1, 2)"),
                                          ((N, 16, 24, 4), "(0, 3, 1, 2)"), ((N, 8, 16, 16, 3), "(0, 4, 1, 2, 3)")])
def test_channels_last_images_are_refused_with_the_transpose_that_fixes_them(tmp_path, capsys, shape, order):
    path = npz_file(tmp_path, **{"x.rgb": np.zeros(shape, np.float32)})
    msg = run_error(capsys, tmp_path, path, "--student", "weak")
    assert msg.startswith(f"modality 'rgb' (key 'x.rgb') has per-sample shape {shape[1:]}, which looks like ")
    assert "channels-last" in msg and msg.endswith(f"store np.transpose(x, {order}) under 'x.rgb'")
    # the fix it names gives data that loads, channels-first
    fixed = np.transpose(np.zeros(shape, np.float32), eval(order))
    data = load_npz(DataConfig(), path=str(npz_file(tmp_path, "fixed.npz", **{"x.rgb": fixed})))
    assert data.shapes["rgb"] == fixed.shape[1:]


@pytest.mark.parametrize("shape", [(N, 3, 32, 32), (N, 1, 28, 28), (N, 2, 3, 3), (N, 4, 8, 3), (N, 3, 32, 4),
                                   (N, 2, 8, 16, 16), (N, 3, 4, 5, 6)])
def test_channels_first_images_and_small_patches_load_as_given(tmp_path, shape):
    data = load_npz(DataConfig(), path=str(npz_file(tmp_path, **{"x.img": np.ones(shape, np.float32)})))
    assert data.shapes["img"] == shape[1:]


@pytest.mark.parametrize("key, expected", [
    ("x.rg.b", "key 'x.rg.b' names the modality 'rg.b', which holds a dot, not allowed in a modality name "
               "(it becomes a module name in the network); rename the key, e.g. 'x.rg_b'"),
    ("x.type", "key 'x.type' names the modality 'type', which is taken by an attribute of the network's module "
               "dictionaries (torch.nn.ModuleDict); rename the key, e.g. 'x.type_'"),
    ("x.keys", "key 'x.keys' names the modality 'keys', which is taken by an attribute"),
])
def test_modality_names_the_networks_cannot_hold_are_refused(tmp_path, capsys, key, expected):
    path = npz_file(tmp_path, **{key: np.ones((N, 4), np.float32)})
    assert run_error(capsys, tmp_path, path, "--student", "weak").startswith(expected)


def test_a_manifest_column_with_a_reserved_modality_name_is_refused(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("label,x.train\n0,a.png\n1,b.png\n")
    msg = run_error(capsys, tmp_path, path, "--student", "train")
    assert msg.startswith("column 'x.train' names the modality 'train', which is taken by an attribute")


# ----------------------------------------------------------------------------- dataset names
def test_mmhal_list_shows_only_names_data_accepts_and_marks_those_that_need_root(capsys):
    assert main(["list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("datasets:"))
    names = re.findall(r"([a-z][a-z0-9-]*)(?: \(with --root DIR, its folder\))?(?:, |;)", line.split(":", 1)[1])
    assert sorted(names) == sorted(n for n in DATASETS.names() if n not in FORMAT_NAMES)
    for name in names:
        assert (f"{name} (with --root DIR, its folder)" in line) == (name in FOLDER_DATASETS), name


@pytest.mark.parametrize("name", FOLDER_DATASETS)
def test_a_dataset_read_from_files_asks_for_root_in_one_sentence(tmp_path, capsys, name):
    assert run_error(capsys, tmp_path, name, "--student", "rgb") == (
        f"dataset '{name}' is read from files: give its folder with --root DIR (or data.path)")
    # FOLDER_DATASETS agrees with the loaders themselves: without a folder they refuse too
    with pytest.raises(DataError, match="--root"):
        DATASETS.get(name)(DataConfig(name=name))

"""Keys (.npz) and columns (manifest) that mmhal does not read: a lookalike of a read one is refused with a
did-you-mean, any other is named in a warning that reaches `mmhal run`'s output and results.json, and
data.ignore_keys keeps one on purpose (data/keys.py: one rule for every format)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from face_fixtures import write_manifest
from mmhal.cli import main
from mmhal.config import DataConfig, load_config
from mmhal.data import keys
from mmhal.data.manifest import load_manifest
from mmhal.data.npz import load_npz
from mmhal.errors import DataError, UserError
from test_data_manifest import rewrite

N = 60
RUN = ["--epochs", "1", "--seeds", "1", "--methods", "unimodal", "--no-progress", "model.width=4", "workers=1",
       "train.batch_size=32", "--student", "weak"]


def arrays(**extra) -> dict[str, np.ndarray]:
    """A valid file's arrays (3 classes, groups of 3 samples, modalities weak (2, 16), strong (5,)) and ``extra``."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], N // 3)
    out = {"label": y, "group": np.arange(N) // 3, "x.weak": rng.normal(size=(N, 2, 16)).astype(np.float32),
           "x.strong": rng.normal(size=(N, 5)).astype(np.float32)}
    out.update(extra)
    return out


def npz_file(tmp_path: Path, name: str = "d.npz", **extra) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays(**extra))
    return path


def npz_error(path: Path, **cfg) -> str:
    with pytest.raises(DataError) as exc:
        load_npz(DataConfig(**cfg), path=str(path))
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


SPLIT = np.array(["train"] * 42 + ["val"] * 9 + ["test"] * 9)  # whole groups of 3
STRINGS = np.array([f"s{i}" for i in range(N)])


# ----------------------------------------------------------------------------- .npz: lookalikes are refused
@pytest.mark.parametrize("key, value, meant", [
    ("splits", SPLIT, "split"),
    ("Split", SPLIT, "split"),
    ("SPLIT", SPLIT, "split"),
    ("fold", np.arange(N) % 5, "split"),
    ("labels", np.zeros(N, int), "label"),  # beside 'label': two copies of the labels
    ("y", np.zeros(N, int), "label"),
    ("target", np.zeros(N, int), "label"),
    ("lable", np.zeros(N, int), "label"),
    ("true_label", np.zeros(N, int), "label"),
    ("label2", np.zeros(N, int), "label"),
    ("groups", np.arange(N), "group"),
    ("subject", STRINGS, "group"),
    ("subject_id", np.arange(N), "group"),
    ("video", STRINGS, "group"),  # the .npz format keeps a video id as its group
    ("classnames", np.array(["a", "b", "c"]), "class_names"),
    ("class-names", np.array(["a", "b", "c"]), "class_names"),
    ("target_names", np.array(["a", "b", "c"]), "class_names"),
    ("X.rgb", np.zeros((N, 3, 8, 8), np.float32), "x.rgb"),
    ("x_rgb", np.zeros((N, 3, 8, 8), np.float32), "x.rgb"),
    ("x-rgb", np.zeros((N, 3, 8, 8), np.float32), "x.rgb"),
    ("rgb", np.zeros((N, 3, 8, 8), np.float32), "x.rgb"),  # a bare array of numbers, 2+ dimensions per sample
    ("depth", np.zeros((N, 8, 8), np.uint16), "x.depth"),
])
def test_a_npz_key_that_looks_like_a_read_one_is_refused_with_a_did_you_mean(tmp_path, key, value, meant):
    msg = npz_error(npz_file(tmp_path, **{key: value}))
    assert msg.startswith(f"key '{key}' of '")
    assert f"looks like '{meant}'" in msg
    assert f"data.ignore_keys=[{key}]" in msg
    fix = f"keep the data you mean under '{meant}'" if meant in ("label", "group") else f"rename it to '{meant}'"
    assert fix in msg


def test_the_measured_cases_split_under_splits_and_real_labels_beside_a_wrong_label(tmp_path):
    msg = npz_error(npz_file(tmp_path, splits=SPLIT))
    assert "looks like 'split'" in msg and "rename it to 'split'" in msg
    wrong = arrays()["label"] * 0 + np.arange(N) % 3  # the 'label' mmhal would read; the real ones elsewhere
    msg = npz_error(npz_file(tmp_path, "b.npz", label=wrong, labels_true=arrays()["label"]))
    assert "key 'labels_true'" in msg and "looks like 'label'" in msg and "(the file has both)" in msg


def test_a_key_that_could_mean_labels_or_class_names_names_both_and_the_free_one_as_the_fix(tmp_path):
    msg = npz_error(npz_file(tmp_path, classes=np.array(["a", "b", "c"])))
    assert "looks like 'label' or 'class_names'" in msg
    assert "rename it to 'class_names'," in msg  # the file has a 'label' already


# ----------------------------------------------------------------------------- .npz: other keys are a warning
@pytest.mark.parametrize("extra", [
    {"timestamp": np.arange(N, dtype=np.float64), "notes": np.array("collected in 2024")},
    {"id": np.arange(N), "t": np.arange(N), "ab": np.arange(N)},  # short names are not taken for lookalikes
    {"bbox": np.zeros((N, 4), np.float32)},  # (N, D): too often not a modality to be refused as one
    {"mask": np.zeros((N, 8, 8), bool)},  # not numbers
    {"level": np.arange(N), "weight": np.ones(N), "folder": STRINGS, "sample_id": np.arange(N)},
])
def test_an_unrelated_npz_key_is_a_warning_that_names_it(tmp_path, extra):
    data = load_npz(DataConfig(), path=str(npz_file(tmp_path, **extra)))
    named = sorted(extra)
    assert data.info["ignored_keys"] == named
    told = [w for w in data.info["warnings"] if w.startswith("mmhal does not read the key")]
    assert len(told) == 1 and all(repr(k) in told[0] for k in named), data.info["warnings"]
    assert "data.ignore_keys" in told[0]


def test_a_file_with_only_read_keys_gets_no_warning_on_keys(tmp_path):
    data = load_npz(DataConfig(), path=str(npz_file(tmp_path, split=SPLIT, class_names=np.array(["a", "b", "c"]))))
    assert "ignored_keys" not in data.info
    assert not [w for w in data.info["warnings"] if "key" in w], data.info["warnings"]


# ----------------------------------------------------------------------------- data.ignore_keys
def test_ignore_keys_lets_a_lookalike_through_silently_but_records_it(tmp_path):
    path = npz_file(tmp_path, splits=SPLIT, notes=np.array("x"))
    data = load_npz(DataConfig(ignore_keys=["splits"]), path=str(path))
    assert data.info["ignored_keys"] == ["notes", "splits"]
    assert data.info["split"].startswith("made by mmhal")  # 'splits' is not read: the split is mmhal's own
    told = [w for w in data.info["warnings"] if "does not read" in w]
    assert len(told) == 1 and "'notes'" in told[0] and "splits" not in told[0]
    data = load_npz(DataConfig(ignore_keys=["splits", "notes"]), path=str(path))
    assert not [w for w in data.info["warnings"] if "does not read" in w]


def test_ignore_keys_may_not_name_a_read_key(tmp_path):
    msg = npz_error(npz_file(tmp_path), ignore_keys=["label"])
    assert msg == "data.ignore_keys lists 'label', which mmhal reads from a .npz file (the class index per sample); " \
                  "remove it from the list"


@pytest.mark.parametrize("value, expected", [
    ("[x.rgb]", "a modality key"),
    ("[splits,splits]", "'splits' twice"),
    ("['']", "an empty name"),
])
def test_ignore_keys_is_validated(value, expected):
    with pytest.raises(UserError, match=expected):
        load_config(None, [f"data.ignore_keys={value}"])
    assert load_config(None, ["data.ignore_keys=[splits,Notes]"]).data.ignore_keys == ["splits", "Notes"]


# ----------------------------------------------------------------------------- the manifest: the same rule
def manifest_error(path: Path, **cfg) -> str:
    with pytest.raises(DataError) as exc:
        load_manifest(DataConfig(**cfg), path=str(path))
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def add_column(path: Path, name: str, cell=lambda i: "x") -> Path:
    return rewrite(path, lambda h, rows: (h.append(name), [r.append(cell(i)) for i, r in enumerate(rows)]))


@pytest.mark.parametrize("column, cell, meant", [
    ("splits", lambda i: "train", "split"),
    ("Split", lambda i: "train", "split"),
    ("labels", lambda i: str(i % 2), "label"),
    ("groups", lambda i: f"s{i // 4}", "group"),
    ("subject", lambda i: f"s{i // 4}", "group"),
    ("video_id", lambda i: f"v{i // 2}", "video"),
    ("attack_type", lambda i: "print", "species"),
    ("is_real", lambda i: str(i % 2), "bona_fide"),
    ("Bona Fide", lambda i: str(i % 2), "bona_fide"),
    ("class_names", lambda i: "cat", "class_name"),
    ("X.rgb", lambda i: "images/rgb/0000.png", "x.rgb"),
    ("x_depth2", lambda i: "images/depth/0000.png", "x.depth2"),
    ("thermal", lambda i: f"images/ir/{i:04d}.png", "x.thermal"),  # its cells name image files
    ("clip", lambda i: f"clips/{i}.mp4", "x.clip"),  # a name for 'video', but cells of video files are a modality's
])
def test_a_manifest_column_that_looks_like_a_read_one_is_refused(tmp_path, column, cell, meant):
    path = add_column(write_manifest(tmp_path), column, cell)
    msg = manifest_error(path)
    assert msg.startswith(f"column '{column}' of '") and f"looks like '{meant}'" in msg, msg
    assert f"data.ignore_keys=[{column}]" in msg


def test_an_unrelated_manifest_column_is_a_warning_and_may_be_empty(tmp_path):
    path = add_column(write_manifest(tmp_path), "notes", lambda i: "" if i % 2 else "blurry")
    data = load_manifest(DataConfig(), path=str(path))
    assert data.info["ignored_columns"] == ["notes"]
    told = [w for w in data.info["warnings"] if w.startswith("mmhal does not read the column 'notes'")]
    assert len(told) == 1 and "a manifest is read from label, x.<modality>, bona_fide" in told[0]


def test_ignore_keys_lets_a_manifest_lookalike_through(tmp_path):
    path = add_column(write_manifest(tmp_path), "subject", lambda i: f"p{i}")
    data = load_manifest(DataConfig(ignore_keys=["subject"]), path=str(path))
    assert data.info["ignored_columns"] == ["subject"] and data.groups[0] == "s0"
    assert not [w for w in data.info["warnings"] if "does not read" in w]
    assert "reads from a manifest" in manifest_error(path, ignore_keys=["subject", "video"])


def test_the_rule_is_one_function_of_the_name_and_its_values():
    assert keys.normal(" Class-Names ") == "class_names"
    assert keys.lookalike("timestamp", keys.NPZ, per_sample=True) is None
    assert keys.lookalike("true_label", keys.NPZ, per_sample=False) is None  # a word alone needs one value per sample
    assert keys.lookalike("rgb", keys.NPZ, modality_like="it holds images")[0] == ["x.rgb"]
    assert keys.lookalike("class_names", keys.MANIFEST)[0] == ["class_name"]
    assert keys.lookalike("class_name", keys.NPZ)[0] == ["class_names"]


# ----------------------------------------------------------------------------- through `mmhal run`
def test_run_refuses_a_splits_key_in_one_line_and_leaves_no_folder(tmp_path, capsys):
    path = npz_file(tmp_path, splits=SPLIT)
    out = tmp_path / "run"
    rc = main(["run", "--data", str(path), "--out", str(out), *RUN])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: key 'splits' of "), err
    assert "looks like 'split'" in lines[0] and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_run_prints_and_records_the_warning_on_an_unrelated_key(tmp_path, capsys):
    path = npz_file(tmp_path, timestamp=np.arange(N, dtype=np.float64), splits=SPLIT)
    out = tmp_path / "run"
    rc = main(["run", "--data", str(path), "--out", str(out), *RUN, "data.ignore_keys=[splits]"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    results = json.loads((out / "results.json").read_text())
    told = [w for w in results["warnings"] if w.startswith("mmhal does not read the key 'timestamp'")]
    assert len(told) == 1 and "splits" not in told[0]
    assert f"warning: {told[0]}" in cap.out.splitlines()
    assert results["data_info"]["ignored_keys"] == ["splits", "timestamp"]


# ----------------------------------------------------------------------------- `mmhal predict`: notes, not errors
@pytest.mark.slow
def test_predict_notes_a_lookalike_and_an_unrelated_key(finished_run, tmp_path, capsys):
    with np.load(finished_run.parent / "tiny.npz") as z:
        weak, y = z["x.weak"][:12], z["label"][:12]
    path = tmp_path / "new.npz"
    np.savez(path, **{"x.weak": weak, "labels": y, "notes": np.array("x")})
    rc = main(["predict", str(finished_run), "--no-progress", "--data", str(path), "--method", "mmh",
               "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "note: key 'labels' of " in err and "looks like 'label'" in err and "rename it to 'label'" in err
    assert "note: mmhal does not read the key 'notes'" in err
    assert "accuracy" not in err  # 'labels' is not read

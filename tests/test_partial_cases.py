"""The "partial" cases of the QA sweep of issue 23: mistakes that got a message, but a misleading or noisy one, and
legal but suspicious inputs that went through without a word. Each mistake is one sentence (``mmhal: error:``,
exit code 2); each suspicious input a warning that ``mmhal run`` prints and records in results.json."""
from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from mmhal.cli import check_settings_given_once, main
from mmhal.config import DataConfig, load_config
from mmhal.data.manifest import _read_rows, duplicate_rows_warning
from mmhal.data.npz import check_label_values, class_coverage_warning, load_npz, save_npz
from mmhal.errors import DataError, UserError, not_a_file


def one_error(capsys, argv) -> str:
    """The one line ``main(argv)`` prints on stderr, after checking the exit code is 2 and nothing else came."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("mmhal: error: "), err
    assert "usage:" not in err and "Traceback" not in err
    return err


# ----------------------------------------------------------------------------- 1. argparse's own errors
@pytest.mark.parametrize("argv, needles", [
    (["export", "RUN", "--format", "tflite"], ["--format takes one of onnx, torchscript, not 'tflite'",
                                              "see mmhal export --help"]),
    (["predict", "RUN", "--data", "x.npz", "--seed", "one"], ["--seed takes a whole number, not 'one'",
                                                             "see mmhal predict --help"]),
    (["run", "--epochs", "1.5"], ["--epochs takes a whole number, not '1.5'", "see mmhal run --help"]),
    (["run", "--student", "weak", "train.lr", "--epochs", "1"], ["'train.lr'", "key=value", "see mmhal run --help"]),
    (["run", "--bogus", "3"], ["mmhal run has no option --bogus", "see mmhal run --help"]),
    (["run", "my.npz"], ["--data my.npz"]),
    (["predict", "--data", "x.npz"], ["required: RUN", "see mmhal predict --help"]),
    (["rn"], ["'rn' is not an mmhal command", "see mmhal --help"]),
    ([], ["give a command", "see mmhal --help"]),
    (["report", "RUN", "--out"], ["--out needs a value", "see mmhal report --help"]),
])
def test_a_command_line_mistake_is_one_sentence_pointing_at_help(argv, needles, capsys):
    err = one_error(capsys, argv)
    for needle in needles:
        assert needle in err, err


# ----------------------------------------------------------------------------- 6. empty values
@pytest.mark.parametrize("argv, name", [
    (["run", "--data", "x.npz", "--methods", ""], "--methods"),
    (["run", "--data", "x.npz", "--methods", " , "], "--methods"),
    (["run", "--data", "x.npz", "--out", ""], "--out"),
    (["run", "--data", "x.npz", "--student", ""], "--student"),
    (["predict", "RUN", "--data", "x.npz", "--out", ""], "--out"),
    (["report", ""], "RUN"),
])
def test_an_empty_value_is_refused_not_read_as_the_default(argv, name, capsys):
    err = one_error(capsys, argv)
    assert f"{name} is given an empty value" in err and "default" not in err.split(";")[0]


# ----------------------------------------------------------------------------- 13. a section given a value
def test_a_section_given_a_value_is_said_to_be_a_section_not_a_setting_given_twice():
    args = argparse.Namespace(overrides=["train.batch_size=16", "train=5"])
    check_settings_given_once(args)  # not "train.batch_size is given twice"
    with pytest.raises(UserError, match="'train' is a section of settings"):
        load_config(None, args.overrides)
    with pytest.raises(UserError, match="given twice"):  # a mapping for the section does set the key twice
        check_settings_given_once(argparse.Namespace(overrides=["train.lr=1", "train={lr: 2}"]))


# ----------------------------------------------------------------------------- 2. classes
def test_a_single_class_is_refused():
    with pytest.raises(DataError, match="single class.*at least 2 classes"):
        check_label_values(np.zeros(10, dtype=np.int64))
    with pytest.raises(DataError, match="at least 2 classes"):
        check_label_values(np.zeros(10, dtype=np.int64), ["only"])


def test_huge_labels_are_named_without_counting_every_class_below_them():
    n = 30
    shifted = (np.arange(n) % 3) + 2**40  # np.bincount would need 2**40 counters: "out of memory"
    with pytest.raises(DataError, match=f"labels start at {2**40}.*subtract {2**40}"):
        check_label_values(shifted)
    stray = np.arange(n) % 3
    stray[7] = 2**40
    with pytest.raises(DataError, match=rf"label {2**40} \(1 sample, first at sample 7\) is larger than 30 samples"):
        check_label_values(stray)
    with pytest.raises(DataError, match=f"label {2**40}.*outside the 3 classes"):
        check_label_values(stray, ["a", "b", "c"])


def test_a_label_beyond_int64_is_refused_not_wrapped(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, label=np.array([0.0, 1.0, 1e30] * 4), **{"x.a": np.zeros((12, 3), np.float32)})
    with pytest.raises(DataError, match="far too large for a class index"):
        load_npz(DataConfig(), str(path))
    manifest = tmp_path / "m.csv"
    manifest.write_text("label,x.rgb\n0,a.png\n1,b.png\n99999999999999999999999,c.png\n")
    with pytest.raises(DataError, match="line 4 .*far too large"):
        load_npz_or_manifest(manifest)


def load_npz_or_manifest(path: Path):
    from mmhal.data.base import load_dataset

    return load_dataset(DataConfig(name=str(path)))


def test_a_class_missing_from_val_and_test_is_named_in_a_warning(tmp_path):
    labels = np.array([0, 1] * 30)
    labels[0] = 2  # one sample: it can only lie in train
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "d.npz", {"a": rng.normal(size=(60, 3))}, labels)
    data = load_npz(DataConfig(), str(tmp_path / "d.npz"))
    coverage = [w for w in data.info["warnings"] if "no sample in" in w]
    assert len(coverage) == 1, data.info["warnings"]
    assert "'2' (1 sample in all)" in coverage[0] and "val and test splits" in coverage[0]
    split = np.array(["train"] * 4 + ["val", "test"])
    assert class_coverage_warning(np.array([0, 1, 0, 1, 0, 1]), split, ["a", "b"]) is not None  # 'a' not in test
    assert class_coverage_warning(np.array([0, 1, 0, 1, 0, 1]), np.array(["train"] * 4 + ["val"] * 2), ["a", "b"]) \
        is None  # no test split: only val counts, and it holds both


# ----------------------------------------------------------------------------- 3. groups
def _grouped(tmp_path, groups) -> str:
    rng = np.random.default_rng(0)
    n = len(groups)
    np.savez(tmp_path / "g.npz", label=np.arange(n) % 3, group=np.asarray(groups),
             **{"x.a": rng.normal(size=(n, 3)).astype(np.float32)})
    return str(tmp_path / "g.npz")


@pytest.mark.parametrize("groups, needle", [
    (np.where(np.arange(60) % 7 == 0, np.nan, np.arange(60) // 6), r"'group' holds NaN \(9 of 60 samples, first "
                                                                    r"sample 0\)"),
    (np.full(60, np.nan), r"'group' holds NaN \(every sample\)"),
    (np.array(["s1", "nan"] * 30), "'group' holds missing values"),
])
def test_missing_group_values_are_refused(tmp_path, groups, needle):
    with pytest.raises(DataError, match=needle):
        load_npz(DataConfig(), _grouped(tmp_path, groups))


def test_a_single_group_is_named_as_why_the_validation_split_is_empty(tmp_path):
    with pytest.raises(DataError, match=r"'val' split is empty because the 'group' key holds a single group \(0\)"):
        load_npz(DataConfig(), _grouped(tmp_path, np.zeros(60, dtype=int)))


# ----------------------------------------------------------------------------- 4. duplicate rows
def test_duplicate_manifest_rows_get_a_warning_naming_how_many():
    rows = [(i + 2, [str(i % 3), f"img/{i}.png"]) for i in range(10)]
    rows += [(12, ["0", "img/0.png"]), (13, ["1", "img/1.png"])]
    warning = duplicate_rows_warning(rows)
    assert warning.startswith("2 of the 12 rows repeat an earlier row exactly (first: line 12 repeats line 2)")
    assert "train and in test" in warning
    assert duplicate_rows_warning(rows[:10]) is None


@pytest.mark.slow
def test_duplicate_manifest_rows_are_warned_of_in_the_run_and_its_results(tmp_path, capsys):
    from face_fixtures import write_manifest

    path = write_manifest(tmp_path / "m", n=24, pad=False, with_split=False, with_group=False, modalities=("rgb",))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[1:7]) + "\n")  # 6 rows twice
    out = tmp_path / "run"
    rc = main(["run", "--data", str(path), "--student", "rgb", "--methods", "unimodal", "--epochs", "1", "--seeds",
               "1", "--no-progress", "--out", str(out), "model.width=4", "workers=1"])
    assert rc == 0
    warning = next(w for w in json.loads((out / "results.json").read_text())["warnings"] if "repeat an earlier" in w)
    assert warning.startswith("6 of the 30 rows") and f"warning: {warning}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 5. nothing privileged
def test_a_student_that_sees_every_teacher_modality_is_warned_of():
    from mmhal.engine.run import input_warnings

    same = input_warnings(None, ["a", "b"], ["b", "a"], "test")
    assert len(same) == 1 and same[0].startswith("nothing is privileged")
    assert "distillation has nothing the student lacks" in same[0]
    assert not any("privileged" in w for w in input_warnings(None, ["a", "b"], ["a"], "test"))


# ----------------------------------------------------------------------------- 7. folders, FIFOs, devices
def test_a_path_that_exists_is_never_said_not_to(tmp_path):
    assert not_a_file(tmp_path, "a .npz file") == "is a folder, not a .npz file"
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    assert not_a_file(fifo) == "is a named pipe (FIFO), not a regular file"
    assert not_a_file("/dev/zero") == "is a device, not a regular file"
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    assert not_a_file(tmp_path / "zero.npz") == "is a device, not a regular file"
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "gone")
    assert "which does not exist" in not_a_file(tmp_path / "dangling.npz")
    assert not_a_file(tmp_path / "nope.npz") == "does not exist"
    (tmp_path / "f").write_text("x")
    assert not_a_file(tmp_path / "f") is None


def test_data_and_recipes_that_are_not_regular_files_are_said_to_be_what_they_are(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out (runs/...) is checked here
    os.mkfifo(tmp_path / "fifo.npz")  # reading it would hang
    err = one_error(capsys, ["run", "--data", str(tmp_path / "fifo.npz"), "--student", "a", "--no-progress"])
    assert "is a named pipe (FIFO)" in err and "does not exist" not in err
    err = one_error(capsys, ["run", "--data", "/dev/zero", "--student", "a", "--no-progress"])
    assert "'/dev/zero' is a device" in err
    err = one_error(capsys, ["run", "--config", str(tmp_path), "--no-progress"])
    assert "is a folder, not a YAML file" in err
    (tmp_path / "rgb").mkdir()
    (tmp_path / "a.png").write_bytes(b"checked to exist, not read")
    (tmp_path / "m.csv").write_text("label,x.rgb\n0,a.png\n1,rgb\n")
    err = one_error(capsys, ["run", "--data", str(tmp_path / "m.csv"), "--student", "rgb", "--no-progress"])
    assert "(line 3 of 'm.csv', column 'x.rgb') is a folder, not an image file" in err


# ----------------------------------------------------------------------------- 8. a manifest separated by ';'
@pytest.mark.parametrize("sep, name", [(";", "';'"), ("\t", "tabs")])
def test_a_manifest_with_another_separator_is_said_to_have_it(tmp_path, sep, name):
    path = tmp_path / "m.csv"
    path.write_text(sep.join(["label", "x.rgb", "group"]) + "\n" + sep.join(["0", "a.png", "s1"]) + "\n")
    with pytest.raises(DataError, match=f"seems separated by {name}.*mmhal reads comma-separated CSV"):
        _read_rows(path)


# ----------------------------------------------------------------------------- 9. a default output too long
def test_a_default_output_name_too_long_is_said_to_be_a_default(tmp_path):
    from mmhal.engine.outputs import SIBLING_EXTRA, check_path

    long = tmp_path / ("g" * 250)
    with pytest.raises(UserError) as exc:
        check_path(long, True, SIBLING_EXTRA, default="made from the data's name")
    msg = str(exc.value)
    assert msg.startswith("the default output '") and "(made from the data's name)" in msg and "give --out" in msg
    with pytest.raises(UserError, match="^--out '"):
        check_path(long, True, SIBLING_EXTRA)


def test_run_with_a_long_data_name_blames_the_default_output_not_an_out_it_was_not_given(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = one_error(capsys, ["run", "--data", str(tmp_path / ("g" * 240 + ".npz")), "--student", "a"])
    assert "the default output 'runs/ggg" in err and "give --out" in err


# ----------------------------------------------------------------------------- 10. an ensemble's members
def _fake_run(tmp_path, methods):
    from mmhal.config import RunConfig
    from mmhal.engine.artifacts import RunFolder

    return RunFolder(tmp_path, RunConfig(), {"results": {m: {} for m in ["teacher", *methods]}, "seeds": [0]})


def test_export_of_an_ensemble_advises_only_what_works(tmp_path):
    from mmhal.engine.artifacts import check_method

    run = _fake_run(tmp_path, ["unimodal", "mmh-ensemble"])
    with pytest.raises(UserError) as exc:
        check_method(run, "mmh-ensemble")
    msg = str(exc.value)
    assert "reports none of them alone" in msg and f"mmhal predict {tmp_path} --method mmh-ensemble" in msg
    assert "--method unimodal" in msg and "rad, dad in --methods" in msg
    with pytest.raises(UserError, match="trained 'rad' only as a member of mmh-ensemble"):
        check_method(run, "rad")
    with pytest.raises(UserError, match=r"choose one of its members with --method \(rad, dad\)"):
        check_method(_fake_run(tmp_path, ["rad", "dad", "mmh-ensemble"]), "mmh-ensemble")


# ----------------------------------------------------------------------------- 11. report: diverged, C locale
def test_report_texts_say_the_students_diverged_not_that_none_was_trained(tmp_path):
    from mmhal.engine.report import Skipped, decision_html, differences_fig

    diverged = {"unimodal": {}, "kd": {}}
    results = {"results": {"teacher": {}}, "recommendation": None, "diverged": diverged, "seeds": [0]}
    run = _fake_run(tmp_path, [])
    run.results = results
    assert "diverged" in decision_html(results, run) and "trained no single-network" not in decision_html(results, run)

    class Ev:
        pass

    ev = Ev()
    ev.results, ev.run = results, run
    with pytest.raises(Skipped, match="the unimodal students diverged"):
        differences_fig(ev, {})


def test_a_model_file_under_a_path_the_locale_cannot_encode_is_memory_mapped(tmp_path):
    import torch

    from mmhal.utils import load_mapped

    folder = tmp_path / os.fsdecode(b"r\xfcn")  # not UTF-8: decoded with a surrogate escape, as under LANG=C
    folder.mkdir()
    torch.save({"model": {"w": torch.ones(3)}, "history": [1]}, folder / "m.pt")
    with pytest.raises(UnicodeEncodeError):  # what the report met: torch maps the file by a UTF-8 name
        torch.load(folder / "m.pt", weights_only=True, mmap=True)
    assert load_mapped(folder / "m.pt")["model"]["w"].tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- 12. noise
def test_missing_glyphs_are_collected_not_warned_one_by_one():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from mmhal.engine import figures

    figures.MISSING_GLYPHS.clear()
    fig = Figure()
    fig.text(0.5, 0.5, "\u65e5\u672c")  # not in DejaVu Sans
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert figures.png_bytes(fig).startswith(b"\x89PNG")
    assert figures.MISSING_GLYPHS == {"\u65e5", "\u672c"}


def test_a_damaged_image_is_named_with_its_line_and_without_cpp_internals(tmp_path):
    pytest.importorskip("torchvision")
    from mmhal.data.files import decode_image, decode_reason

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is no image")
    with pytest.raises(DataError) as exc:
        decode_image(str(bad), 3, where="line 7 of 'm.csv', column 'x.rgb'")
    msg = str(exc.value)
    assert msg.startswith(f"image file '{bad}' (line 7 of 'm.csv', column 'x.rgb') cannot be decoded: it is damaged")
    assert ".cpp" not in msg and "__w" not in msg
    from PIL import Image

    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError) as exc:
        decode_image(str(cut), 3, where="line 8 of 'm.csv', column 'x.rgb'")
    assert "(line 8 of 'm.csv', column 'x.rgb') cannot be decoded: it is damaged or truncated" in str(exc.value)
    assert ".cpp" not in str(exc.value) and "operator()" not in str(exc.value)
    cpp = RuntimeError("operator(), /__w/vision/vision/pytorch/vision/torchvision/csrc/io/image/cpu/decode_png.cpp:79, "
                       "Out of bound read in decode_png. Probably, the input image is corrupted")
    assert decode_reason(cpp) == "Out of bound read in decode_png. Probably, the input image is corrupted"
    assert decode_reason(RuntimeError("decode_png, /__w/x/decode_png.cpp:62, Internal error.")) == ""


# ----------------------------------------------------------------------------- 13. smaller ones
def test_one_seed_prints_no_interval_rather_than_nan():
    from mmhal.engine.results import format_table

    acc = {"mean": 0.5, "std": 0.0}
    table = format_table({"seeds": [0], "results": {"unimodal": {"accuracy": acc, "macro_f1": acc,
                                                                  "modalities": ["a"]}}})
    assert "nan" not in table and "no interval or p with one seed" in table


def test_predict_out_a_run_folder_asks_for_a_csv_path(tmp_path):
    from mmhal.engine.outputs import MARKER, check_not_in_run

    (tmp_path / MARKER).write_text(json.dumps({"command": "run"}))
    with pytest.raises(UserError, match="give the path of a CSV file to write as --out"):
        check_not_in_run(tmp_path, "predict")


def test_a_tuning_folder_given_as_a_run_points_at_its_recipe(tmp_path):
    from mmhal.engine.artifacts import open_run
    from mmhal.engine.outputs import MARKER

    (tmp_path / MARKER).write_text(json.dumps({"command": "tune"}))
    with pytest.raises(UserError, match="is the folder of an mmhal tune.*mmhal run --config") as exc:
        open_run(tmp_path)
    assert "--resume" not in str(exc.value)
    with pytest.raises(UserError, match="not a finished mmhal run") as exc:
        open_run(tmp_path / "..")  # no marker: nothing to resume
    assert "--resume" not in str(exc.value)


def test_an_export_folder_as_a_runs_out_is_said_to_be_mmhals_export(tmp_path):
    from mmhal.engine.runfolder import plan_folder

    (tmp_path / ".mmhal-export").write_text("{}")
    (tmp_path / "model.onnx").write_text("x")
    with pytest.raises(UserError, match="is a folder that mmhal export wrote, not a run folder"):
        plan_folder(tmp_path, "run", resume=True, overwrite=False)


def test_predict_names_a_lookalike_of_the_missing_modality():
    from mmhal.data import keys
    from mmhal.engine.predict import _missing_modality

    msg = str(_missing_modality("x.npz", "weak", "unimodal", [], ["X.weak", "label"], keys.NPZ))
    assert "(it has: none; its key 'X.weak' looks like 'x.weak': rename it)" in msg


def test_resume_after_the_data_file_moved_says_where_it_was_and_what_to_do(tmp_path):
    from mmhal.engine.outputs import MARKER
    from mmhal.engine.run import check_data_moved

    gone = str(tmp_path / "moved.npz")
    (tmp_path / MARKER).write_text(json.dumps({"command": "run", "data": "abc",
                                               "settings": {"data": {"name": gone}}}))
    cfg = load_config(None, [f"data.name={gone}"])
    with pytest.raises(UserError, match="started on does not exist any more.*--data NEWPATH"):
        check_data_moved(cfg, tmp_path)
    check_data_moved(load_config(None, [f"data.name={tmp_path / 'other.npz'}"]), tmp_path)  # not the run's: no word

"""`--out`: a path that is a file, or lies under one, is one sentence and exit 2 before any data is read."""
import pytest

from mmhal.cli import main


@pytest.mark.parametrize("command", ["run", "tune"])
def test_out_that_is_a_file_or_lies_under_one_is_one_sentence_and_exit_2(tmp_path, capsys, command):
    afile = tmp_path / "notes.txt"
    afile.write_text("the user's own file")
    for out, words in [(afile, "is a file"), (afile / "run", f"lies under '{afile}', which is a file")]:
        code = main([command, "--out", str(out), "--epochs", "1", "--seeds", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmhal: error: --out") and words in lines[0], err
    assert afile.read_text() == "the user's own file"


# --- which folders mmhal writes into, and what it never touches ---------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from mmhal.engine.run import MARKER, is_own, plan_folder  # noqa: E402
from mmhal.errors import UserError  # noqa: E402

PLANTED = {"notes.txt": "the user's notes", "checkpoints/mine.pt": "the user's checkpoint", "jobs/mine.pt": "the user's job",
           "models/mine.pt": "the user's model", "figures/plot.png": "the user's figure"}


def plant(folder: Path) -> None:
    for rel, text in PLANTED.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mark(folder: Path, command: str = "run", **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"mmhal": "0.1.0", "command": command, "created": "2024-01-01T00:00:00"}))
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def _refused(capsys, argv, words):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: ") and words in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--resume"]])
def test_a_folder_mmhal_did_not_make_is_refused_untouched_with_one_sentence(tmp_path, capsys, flags):
    out = tmp_path / "mine"
    out.mkdir()
    plant(out)
    (out / "config.yaml").write_text("the user's own config")  # even a config.yaml does not make it a run
    before = snapshot(out)
    _refused(capsys, ["run", "--out", str(out), "--epochs", "1", "--no-progress", *flags], "is a folder that mmhal did not make")
    _refused(capsys, ["tune", "--out", str(out), "--epochs", "1", "--no-progress"], "is a folder that mmhal did not make")
    assert snapshot(out) == before


def test_a_finished_run_needs_overwrite_and_an_interrupted_one_resume_or_overwrite(tmp_path, capsys):
    finished = mark(tmp_path / "done", config__yaml="x", results__json="{}")
    interrupted = mark(tmp_path / "half", config__yaml="x")
    plant(finished)
    plant(interrupted)
    before = snapshot(tmp_path)
    base = ["run", "--epochs", "1", "--no-progress"]
    _refused(capsys, [*base, "--out", str(finished)], "already holds results; choose another --out or pass --overwrite")
    _refused(capsys, [*base, "--out", str(interrupted)],
             "holds an interrupted run; continue it with --resume or replace it with --overwrite")
    _refused(capsys, [*base, "--out", str(interrupted), "--resume", "--overwrite"],
             "--resume continues the run in --out and --overwrite replaces it; pass one of them")
    assert snapshot(tmp_path) == before


def test_run_and_tune_refuse_each_others_folders(tmp_path, capsys):
    tuned = mark(tmp_path / "tuned", "tune", tuned__yaml="x")
    ran = mark(tmp_path / "ran", "run", config__yaml="x", results__json="{}")
    before = snapshot(tmp_path)
    _refused(capsys, ["run", "--out", str(tuned), "--epochs", "1", "--overwrite"], "is the folder of an mmhal tune, not of a run")
    _refused(capsys, ["tune", "--out", str(ran), "--epochs", "1"], "is the folder of an mmhal run, not of a tune")
    _refused(capsys, ["tune", "--out", str(tuned), "--epochs", "1"], "already holds a tuning result (tuned.yaml)")
    assert snapshot(tmp_path) == before


def test_plan_folder_accepts_a_new_an_empty_and_a_marked_folder(tmp_path):
    assert plan_folder(tmp_path / "a" / "b").mode == "new"
    assert not (tmp_path / "a").exists()  # checking writes nothing
    (tmp_path / "empty").mkdir()
    assert plan_folder(tmp_path / "empty").mode == "adopt"
    assert plan_folder(mark(tmp_path / "marker-only")).mode == "adopt"
    assert plan_folder(mark(tmp_path / "half", config__yaml="x"), resume=True).mode == "resume"
    replace = plan_folder(mark(tmp_path / "done", config__yaml="x", results__json="{}"), overwrite=True)
    assert replace.mode == "replace" and replace.work == tmp_path / f".done.mmhal-new-{os.getpid()}"
    assert replace.work.parent == tmp_path  # a sibling: the same file system, so the swap is a rename
    assert not replace.work.exists()
    with pytest.raises(UserError, match="does not exist"):
        plan_folder(tmp_path / "nothing", resume=True)


def test_is_own_names_only_what_mmhal_writes():
    own = ["config.yaml", "results.json", "results.csv", "evaluation.pt", MARKER, "models/teacher.pt",
           "models/mmh-seed0.pt", "jobs/kd-seed12.pt", "checkpoints/mmh-ensemble@2-seed1.pt", ".results.json.abc.tmp",
           "models/.teacher.pt.x1.tmp"]
    theirs = ["notes.txt", "checkpoints/mine.pt", "jobs/mine.pt", "models/mine.pt", "figures/plot.png", "tuned.yaml",
              "config.yml", "models/sub/kd-seed0.pt", "trials/kd-trial0/jobs/kd-seed1000.pt",
              # under report/, predictions/ and export/ only what those commands' records claim (test_output_safety)
              "report/index.html", "predictions/mmh-new.csv", "export/kd-seed0-onnx/model.onnx"]
    assert [r for r in own if not is_own(Path(r), "run")] == []
    assert [r for r in theirs if is_own(Path(r), "run")] == []
    assert is_own(Path("trials/kd-trial0/jobs/kd-seed1000.pt"), "tune") and is_own(Path("tuned.yaml"), "tune")
    assert not is_own(Path("results.json"), "tune")


def test_a_run_folder_of_an_earlier_mmhal_without_the_marker_is_recognised(tmp_path):
    """Runs made before the marker existed stay resumable and replaceable; a folder that merely holds a
    config.yaml (not an mmhal configuration, or no results) is still refused."""
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.yaml").write_text("data: {name: hapt}\ntrain: {epochs: 1}\nmethods: [unimodal]\nseeds: [0]\n")
    (old / "results.json").write_text("{}")
    assert plan_folder(old, resume=True).mode == "resume"
    assert plan_folder(old, overwrite=True).mode == "replace"
    with pytest.raises(UserError, match="already holds results"):
        plan_folder(old)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("name: my tool\n")
    (other / "results.json").write_text("{}")
    with pytest.raises(UserError, match="did not make"):
        plan_folder(other, overwrite=True)

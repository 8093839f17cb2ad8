"""One rule for every command that writes (engine.outputs): run, tune, predict, export and report never delete or
replace a file mmhal did not write, never write among a run's own files, replace only an earlier output of the
same command (with --overwrite, where the command has it), and refuse with one sentence, before any work, an --out
whose names the file system cannot hold; a quoted '~/x' is the home folder's x."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from mmhal.cli import main
from mmhal.engine import outputs
from mmhal.engine.artifacts import open_run
from mmhal.engine.runfolder import plan_folder
from mmhal.errors import UserError
from test_out_folder import PLANTED, mark, plant, snapshot

COMMANDS = ("run", "tune", "predict", "export", "report")
HAS_OVERWRITE = {"run": True, "tune": False, "predict": True, "export": True, "report": False}
CASES = [(c, o) for c in COMMANDS for o in ((False, True) if HAS_OVERWRITE[c] else (False,))]
TINY = ["--student", "weak", "--methods", "unimodal", "--seeds", "1", "--epochs", "1", "--no-progress",
        "model.width=4", "train.batch_size=32", "workers=1", "train.loader_workers=0"]
#: what each command says about a folder of the user's as its --out
FOREIGN = {"run": "is a folder that mmhal did not make", "tune": "is a folder that mmhal did not make",
           "predict": "is a folder; give the path of a CSV file", "export": "is not an export folder mmhal wrote",
           "report": "is not a report folder mmhal wrote"}


def argv(command: str, run: Path, out, overwrite: bool = False) -> list[str]:
    """The command line of ``command`` writing to ``out``: run and tune on the tiny data of ``run``, the others
    reading the run ``run``."""
    data = str(Path(run).parent / "tiny.npz")
    if command in ("run", "tune"):
        args = [command, "--data", data, "--out", str(out), *TINY]
    elif command == "predict":
        args = ["predict", str(run), "--data", data, "--method", "mmh", "--out", str(out), "--no-progress"]
    elif command == "export":
        args = ["export", str(run), "--method", "mmh", "--seed", "0", "--out", str(out)]
    else:
        args = ["report", str(run), "--out", str(out), "--no-progress", "--no-regions"]
    return args + (["--overwrite"] if overwrite else [])


def refused(capsys, args: list[str], words: str) -> str:
    """Run ``args``: exit code 2 and one line ``mmhal: error: ...`` holding ``words``; returns that line."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: ") and words in lines[0], err
    return lines[0]


def ok(capsys, args: list[str]) -> None:
    """Run ``args``: exit code 0 (what it printed is read, so that the next command's output stands alone)."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err


def readable(run: Path) -> None:
    """The run can still be read back (what predict, export and report open)."""
    assert open_run(run).results["results"]
    json.loads((run / "results.json").read_text())


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the session's finished run (with its tiny.npz beside it), to change."""
    shutil.copy(finished_run.parent / "tiny.npz", tmp_path / "tiny.npz")
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".mmhal-new-" in p.name or ".mmhal-old-" in p.name)


# ----------------------------------------------------------------------------- a folder of the user's
@pytest.mark.parametrize("command, overwrite", CASES)
def test_a_users_folder_as_out_is_refused_and_left_untouched(command, overwrite, finished_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    plant(mine)
    before = snapshot(mine)
    refused(capsys, argv(command, finished_run, mine, overwrite), FOREIGN[command])
    assert snapshot(mine) == before


@pytest.mark.parametrize("command, overwrite", [("export", False), ("export", True), ("report", False)])
def test_a_users_file_in_an_earlier_output_keeps_it_from_being_replaced(command, overwrite, finished_run, tmp_path,
                                                                        capsys):
    out = tmp_path / "out"
    ok(capsys, argv(command, finished_run, out))
    plant(out)
    before = snapshot(out)
    line = refused(capsys, argv(command, finished_run, out, overwrite), "which mmhal did not write")
    assert any(f"'{rel}'" in line for rel in PLANTED)  # it names the file
    assert snapshot(out) == before and siblings(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_csv_or_an_edited_prediction_is_never_replaced(overwrite, finished_run, tmp_path, capsys):
    mine = tmp_path / "mine.csv"
    mine.write_text("the user's own table\n")
    refused(capsys, argv("predict", finished_run, mine, overwrite),
            f"'{mine}' exists and is not a file mmhal predict wrote")
    assert mine.read_text() == "the user's own table\n"
    earlier = tmp_path / "earlier.csv"
    ok(capsys, argv("predict", finished_run, earlier))
    with open(earlier, "a") as f:
        f.write("the user's own last line\n")
    edited = earlier.read_bytes()
    refused(capsys, argv("predict", finished_run, earlier, overwrite), "(or it was changed since)")
    assert earlier.read_bytes() == edited


def test_a_users_file_where_predict_keeps_its_record_is_never_replaced(finished_run, tmp_path, capsys):
    out = tmp_path / "p.csv"
    outputs.sidecar(out).write_text("the user's own hidden file")
    refused(capsys, argv("predict", finished_run, out), "where mmhal predict keeps its record of --out")
    assert outputs.sidecar(out).read_text() == "the user's own hidden file" and not out.exists()


def test_a_tuning_with_the_users_files_is_refused(tmp_path, finished_run, capsys):
    tuned = mark(tmp_path / "tuned", "tune", tuned__yaml="x")
    plant(tuned)
    before = snapshot(tuned)
    refused(capsys, argv("tune", finished_run, tuned), "already holds a tuning result")
    assert snapshot(tuned) == before


# ----------------------------------------------------------------------------- the run's own files
@pytest.mark.parametrize("command, overwrite", [c for c in CASES if c != ("run", True)])
def test_the_run_folder_itself_as_out_is_refused(command, overwrite, run_copy, capsys):
    """(``mmhal run --overwrite`` of a run is the replacement of it: test_run_overwrite_keeps_...)"""
    plant(run_copy)
    before = snapshot(run_copy)
    words = {"run": "already holds results; choose another --out or pass --overwrite",
             "tune": "is the folder of an mmhal run, not of a tune"}.get(command, "is the folder of an mmhal run")
    refused(capsys, argv(command, run_copy, run_copy, overwrite), words)
    assert snapshot(run_copy) == before
    readable(run_copy)


@pytest.mark.parametrize("where", ["models", "models/new", "jobs", "checkpoints/new"])
@pytest.mark.parametrize("command, overwrite", CASES)
def test_the_runs_own_folders_as_out_are_refused(command, overwrite, where, run_copy, capsys):
    before = snapshot(run_copy)
    top = where.split("/")[0]
    refused(capsys, argv(command, run_copy, run_copy / where, overwrite),
            f"lies in the {top}/ folder of the mmhal run in '{run_copy}', which holds the run's own files")
    assert snapshot(run_copy) == before and not (run_copy / "models" / "new").exists()
    readable(run_copy)


@pytest.mark.parametrize("own", ["results.json", "config.yaml", "results.csv", "evaluation.pt", ".mmhal-run",
                                 "models/mmh-seed0.pt"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_runs_own_file_as_predicts_out_is_refused(own, overwrite, run_copy, capsys):
    before = snapshot(run_copy)
    words = "lies in the models/ folder" if "/" in own else f"is the run's own {own} in '{run_copy}'"
    refused(capsys, argv("predict", run_copy, run_copy / own, overwrite), words)
    assert snapshot(run_copy) == before
    readable(run_copy)


# ----------------------------------------------------------------------------- the command's own earlier output
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14 marks torch.jit deprecated
def test_a_second_write_replaces_the_commands_own_earlier_output(run_copy, capsys):
    """export twice, predict twice (each with --overwrite the second time) and report twice, in the run folder's
    default places; the run and a file of the user's beside the outputs stay as they were."""
    (run_copy / "predictions").mkdir()
    (run_copy / "predictions" / "mine.csv").write_text("the user's own table\n")
    data = str(run_copy.parent / "tiny.npz")
    export = ["export", str(run_copy), "--method", "mmh", "--format", "torchscript", "--seed"]
    predict = ["predict", str(run_copy), "--data", data, "--method", "mmh", "--no-progress", "--seed"]
    report = ["report", str(run_copy), "--no-progress", "--no-regions"]
    own = {k: v for k, v in snapshot(run_copy).items() if not k.startswith(("report", "predictions", "export"))}
    for first, second in [(export + ["0", "--out", str(run_copy / "export" / "mmh")],
                           export + ["1", "--out", str(run_copy / "export" / "mmh"), "--overwrite"]),
                          (predict + ["0"], predict + ["0", "--overwrite"]), (report, report)]:
        ok(capsys, first)
        ok(capsys, second)
    card = json.loads((run_copy / "export" / "mmh" / "model_card.json").read_text())
    assert card["seed"] == 1  # the second export replaced the first
    csv = run_copy / "predictions" / "mmh-tiny.csv"
    record = json.loads(outputs.sidecar(csv).read_text())
    assert record["command"] == "predict" and record["sha256"] == outputs.file_sha256(csv)
    assert (run_copy / "report" / "index.html").is_file()
    assert (run_copy / "predictions" / "mine.csv").read_text() == "the user's own table\n"
    assert {k: v for k, v in snapshot(run_copy).items() if k in own} == own
    for folder in (run_copy, run_copy / "export", run_copy / "predictions"):
        assert siblings(folder) == [] and not list(folder.glob(".*.tmp"))
    readable(run_copy)


# ----------------------------------------------------------------------------- what a run may remove
def _fill(**files: str):
    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text)
    return fill


def test_in_a_run_folder_only_what_the_records_claim_is_mmhals(tmp_path):
    run = mark(tmp_path / "run", config__yaml="x", results__json="{}")
    outputs.write_folder(outputs.plan_output(run / "report", "report", True), _fill(**{"index.html": "page"}),
                         ["index.html"], {})
    outputs.write_folder(outputs.plan_output(run / "export" / "kd", "export", False), _fill(**{"model.pt": "net"}),
                         ["model.pt"], {})
    for name in ("a.csv", "b.csv"):
        outputs.write_file(outputs.plan_output(run / "predictions" / name, "predict", False), "pred\n1\n")
    (run / "predictions" / "b.csv").write_text("pred\n1\nthe user's edit\n")  # an edited output is the user's
    (run / "export" / "kd" / "model.pt").write_text("the user's own net")
    mine = ["report/notes.txt", "predictions/mine.csv", "export/kd/mine.txt", "export/loose.txt", "export/x/y/z.txt"]
    for rel in mine:
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(f"the user's {rel}")
    theirs = [*mine, "predictions/b.csv", "export/kd/model.pt"]
    own = ["report/index.html", "report/.mmhal-report", "predictions/a.csv", "predictions/.a.csv.mmhal-predict",
           "predictions/.b.csv.mmhal-predict", "export/kd/.mmhal-export"]
    assert [r for r in own if not outputs.is_own(Path(r), "run", run)] == []
    assert [r for r in theirs if outputs.is_own(Path(r), "run", run)] == []
    assert not outputs.is_own(Path("report/index.html"), "run")  # without the folder, its records are not read
    kept = {r: (run / r).read_bytes() for r in theirs}
    left = outputs.remove_own(run, "run")
    assert sorted(map(str, left)) == sorted(theirs)
    assert {r: (run / r).read_bytes() for r in theirs} == kept
    assert not any((run / r).exists() for r in own) and not (run / "config.yaml").exists()


@pytest.mark.slow
def test_run_overwrite_keeps_the_users_files_in_report_predictions_and_export(run_copy, capsys):
    data = str(run_copy.parent / "tiny.npz")
    for args in (["predict", str(run_copy), "--data", data, "--no-progress"], ["export", str(run_copy)],
                 ["report", str(run_copy), "--no-progress", "--no-regions"]):
        ok(capsys, args)
    [export] = (run_copy / "export").iterdir()
    [csv] = (run_copy / "predictions").glob("*.csv")
    mmhals = [run_copy / "report" / "index.html", run_copy / "report" / ".mmhal-report", export / "model.onnx", csv]
    assert all(p.is_file() for p in mmhals)
    mine = ["report/notes.txt", "predictions/mine.csv", f"export/{export.name}/mine.txt", "export/mine.txt",
            # named like mmhal's job files, but not written by mmhal (seeds the run never had; text, a torch file)
            "models/kd-seed5.pt", "jobs/mmh-seed7.pt", "checkpoints/kd-seed9.pt", "models/unimodal-seed8.pt"]
    for rel in mine:
        (run_copy / rel).parent.mkdir(exist_ok=True)
        (run_copy / rel).write_text(f"the user's {rel}")
    torch.save({"model": {"w": torch.zeros(2)}, "mmhal": "0.1.0", "method": "kd", "seed": 0},
               run_copy / "models" / "unimodal-seed8.pt")  # a model whose name says other than its content
    plant(run_copy)
    edited = run_copy / "predictions" / "edited.csv"
    shutil.copy(csv, edited)  # a copy of an output, no record of its own: the user's
    before = {rel: b for rel, b in snapshot(run_copy).items() if rel in [*mine, *PLANTED, "predictions/edited.csv"]}
    assert len(before) == len(mine) + len(PLANTED) + 1
    ok(capsys, ["run", "--data", data, "--out", str(run_copy), "--overwrite", *TINY])
    assert {rel: b for rel, b in snapshot(run_copy).items() if rel in before} == before
    assert not any(p.exists() for p in mmhals)  # what report, predict and export wrote went with the old run
    assert set(json.loads((run_copy / "results.json").read_text())["results"]) == {"teacher", "unimodal"}
    assert siblings(run_copy.parent) == []
    readable(run_copy)


# ----------------------------------------------------------------------------- output path limits
@pytest.mark.parametrize("command", COMMANDS)
def test_a_name_the_file_system_cannot_hold_is_one_sentence_before_any_work(command, finished_run, tmp_path, capsys):
    where = tmp_path / "where"
    where.mkdir()
    limit = os.pathconf(where, "PC_NAME_MAX")
    extra = outputs.FILE_EXTRA if command == "predict" else outputs.SIBLING_EXTRA
    for name in ("x" * (limit - extra + 1), "x" * (limit + 1)):  # the second is too long even alone
        refused(capsys, argv(command, finished_run, where / name),
                f"has a name of {len(name)} bytes, but this file system allows {limit} and mmhal needs {extra}")
    refused(capsys, argv(command, finished_run, where / ("y" * (limit + 1)) / "out"),
            f"the folder name '{'y' * 40}")
    assert list(where.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "export", "report"])
def test_the_longest_name_allowed_can_be_written(command, finished_run, tmp_path, capsys):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    extra = outputs.FILE_EXTRA if command == "predict" else outputs.SIBLING_EXTRA
    out = tmp_path / ("x" * (limit - extra))
    ok(capsys, argv(command, finished_run, out))
    assert out.exists() and (outputs.sidecar(out).is_file() if command == "predict" else out.is_dir())
    assert siblings(tmp_path) == []


def test_a_run_folders_name_leaves_room_for_its_replacement():
    import tempfile

    with tempfile.TemporaryDirectory() as where:
        limit = os.pathconf(where, "PC_NAME_MAX")
        assert plan_folder(Path(where) / ("x" * (limit - outputs.SIBLING_EXTRA))).mode == "new"
        with pytest.raises(UserError, match=f"at most {limit - outputs.SIBLING_EXTRA} bytes"):
            plan_folder(Path(where) / ("x" * (limit - outputs.SIBLING_EXTRA + 1)))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_quoted_tilde_is_the_home_folder(command, finished_run, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    if command in ("run", "tune"):  # refused, naming the folder in the home folder: no data is read
        plant(home / "x")
        refused(capsys, argv(command, finished_run, "~/x"), f"--out '{home / 'x'}' is a folder that mmhal did not make")
    else:
        ok(capsys, argv(command, finished_run, "~/x"))
        assert (home / "x").is_file() if command == "predict" else (home / "x" / "index.html" if command == "report"
                                                                     else home / "x" / "model.onnx").is_file()
    refused(capsys, argv(command, finished_run, "~no-such-user-of-mmhal/x"), "which names no home folder here")
    assert not (tmp_path / "~").exists() and not list(tmp_path.glob("~*"))


def test_only_the_outputs_module_deletes_folders():
    """Every deletion of a folder goes through engine.outputs, under its one rule."""
    src = Path(outputs.__file__).parents[1]
    callers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if "rmtree" in p.read_text())
    assert callers == ["engine/outputs.py"]

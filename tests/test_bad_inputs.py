"""A corpus of user mistakes across `run`, `predict`, `export` and `report`: every one gets one sentence on
stderr (the last line; progress lines may come before it) and exit code 2, never a traceback, and leaves no file or folder behind (nothing half-written, no
folder that looks like a run).

Each case is (command line, text the sentence must contain); ``{data}`` is a tiny valid .npz, ``{run}`` a
finished run (a copy of the session's ``finished_run``), ``{pad}`` a PAD manifest, ``{tmp}`` the test's folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmhal.cli import main
from mmhal.data.npz import save_npz
from run_fixtures import tiny_npz

RUN = ["--epochs", "1", "--seeds", "1", "--no-progress", "model.width=4", "workers=1"]

CASES = {
    # run: the data
    "missing data file": (["run", "--data", "{tmp}/nope.npz", *RUN], "nope.npz"),
    "data is a folder": (["run", "--data", "{tmp}/folder.npz", *RUN], "folder.npz"),
    "data is a text file": (["run", "--data", "{tmp}/notes.npz", *RUN], "notes.npz"),
    "unknown data suffix": (["run", "--data", "{tmp}/table.txt", *RUN], "table.txt"),
    "npz without labels": (["run", "--data", "{tmp}/nolabels.npz", "--student", "weak", *RUN], "nolabels.npz"),
    "modality lengths differ": (["run", "--data", "{tmp}/ragged.npz", "--student", "weak", *RUN], "ragged.npz"),
    "unknown student modality": (["run", "--data", "{data}", "--student", "rgb", *RUN], "rgb"),
    "duplicate student modality": (["run", "--data", "{data}", "--student", "weak,weak", *RUN], "weak"),
    "unknown teacher modality": (["run", "--data", "{data}", "--teacher", "weak,lidar", "--student", "weak", *RUN],
                                 "lidar"),
    "manifest row with a missing image": (["run", "--data", "{tmp}/badrow.csv", "--student", "rgb", *RUN],
                                          "badrow.csv"),
    # run: the settings
    "zero seeds": (["run", "--data", "{data}", "--student", "weak", "--seeds", "0"], "seeds"),
    "zero epochs": (["run", "--data", "{data}", "--student", "weak", *RUN, "--epochs", "0"], "epochs"),
    "unknown method": (["run", "--data", "{data}", "--student", "weak", "--methods", "mmhh", *RUN], "mmhh"),
    "unknown override key": (["run", "--data", "{data}", "--student", "weak", "train.lrr=0.1", *RUN], "lrr"),
    "text for a number": (["run", "--data", "{data}", "--student", "weak", "train.lr=fast", *RUN], "train.lr"),
    "a device this machine lacks": (["run", "--data", "{data}", "--student", "weak", "--device", "cuda:7", *RUN],
                                    "cuda"),
    "an unknown device": (["run", "--data", "{data}", "--student", "weak", "--device", "tpu", *RUN], "tpu"),
    "an unknown precision": (["run", "--data", "{data}", "--student", "weak", "--precision", "8", *RUN], "8"),
    "missing recipe": (["run", "--config", "{tmp}/nope.yaml", *RUN], "nope.yaml"),
    "recipe that is a folder": (["run", "--config", "{tmp}/empty", *RUN], "empty' is a folder"),
    "recipe that is not a mapping": (["run", "--config", "{tmp}/list.yaml", *RUN], "list.yaml"),
    "recipe that is not YAML": (["run", "--config", "{tmp}/broken.yaml", *RUN], "broken.yaml"),
    "resume without --out": (["run", "--resume", *RUN], "--out"),
    "resume a folder that holds no run": (["run", "--resume", "--out", "{tmp}/empty", *RUN], "empty"),
    "missing teacher file": (["run", "--data", "{data}", "--student", "weak", "teacher_path={tmp}/t.pt", *RUN],
                             "t.pt"),
    "garbage teacher file": (["run", "--data", "{data}", "--student", "weak", "teacher_path={tmp}/garbage.pt", *RUN],
                             "garbage.pt"),
    # predict
    "predict: not a run folder": (["predict", "{tmp}/empty", "--data", "{data}"], "empty"),
    "predict: unknown method": (["predict", "{run}", "--method", "fitnet", "--data", "{data}"], "fitnet"),
    "predict: a seed the run lacks": (["predict", "{run}", "--method", "mmh", "--seed", "9", "--data", "{data}"], "9"),
    "predict: data without the student's modality": (["predict", "{run}", "--method", "mmh", "--data", "{tmp}/other.npz"],
                                                     "weak"),
    "predict: missing data file": (["predict", "{run}", "--data", "{tmp}/nope.npz"], "nope.npz"),
    "predict: data is a folder": (["predict", "{run}", "--data", "{tmp}/empty"], "empty' is a folder"),
    "predict: data is a YAML file": (["predict", "{run}", "--data", "{tmp}/list.yaml"], "list.yaml' holds text"),
    "predict: --out is the run folder": (["predict", "{run}", "--data", "{data}", "--out", "{run}"], "CSV file"),
    "predict: --out under a file": (["predict", "{run}", "--data", "{data}", "--out", "{tmp}/notes.npz/p.csv"],
                                    "notes.npz"),
    # export
    "export: not a run folder": (["export", "{tmp}/empty"], "empty"),
    "export: an ensemble is not one network": (["export", "{run}", "--method", "mmh-ensemble"], "ensemble"),
    "export: a seed the run lacks": (["export", "{run}", "--method", "kd", "--seed", "5"], "5"),
    "export: a method the run lacks": (["export", "{run}", "--method", "dkd"], "dkd"),
    # report
    "report: a run folder that does not exist": (["report", "{tmp}/nowhere"], "nowhere"),
    "report: a file instead of a run folder": (["report", "{tmp}/table.txt"], "table.txt"),
    "report: --out a folder that is not a report": (["report", "{run}", "--out", "{tmp}/mine"], "mine"),
}


def _inputs(tmp: Path) -> dict[str, str]:
    data = tiny_npz(tmp / "tiny.npz")
    (tmp / "folder.npz").mkdir()
    (tmp / "notes.npz").write_text("these are my notes, not an array archive\n")
    (tmp / "table.txt").write_text("a,b\n1,2\n")
    np.savez(tmp / "nolabels.npz", **{"x.weak": np.zeros((10, 2, 16), np.float32)})
    np.savez(tmp / "ragged.npz", **{"x.weak": np.zeros((10, 2, 16), np.float32),
                                    "x.strong": np.zeros((9, 5), np.float32), "y": np.zeros(10, np.int64)})
    rng = np.random.default_rng(1)
    save_npz(tmp / "other.npz", {"strong": rng.normal(size=(20, 5)).astype(np.float32)}, rng.integers(0, 3, 20),
             class_names=["a", "b", "c"])
    (tmp / "badrow.csv").write_text("label,x.rgb\n0,images/missing.png\n1,images/missing2.png\n")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "broken.yaml").write_text("train: {lr: [\n")
    (tmp / "garbage.pt").write_bytes(os.urandom(300))
    (tmp / "empty").mkdir()
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("my own work\n")
    return {"data": str(data), "tmp": str(tmp)}


def _tree(root: Path) -> dict[str, float]:
    """Every path under ``root`` with its size (-1 for a folder); the cache (mmhal's own, shared) left out."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")
            if "mmhal-cache" not in p.relative_to(root).parts}


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_gets_one_sentence_exit_2_and_leaves_nothing(case, tmp_path, finished_run, capsys,
                                                                    monkeypatch):
    args, needle = CASES[case]
    inputs = _inputs(tmp_path / "in")
    run = tmp_path / "in" / "run"
    shutil.copytree(finished_run, run)
    inputs["run"] = str(run)
    monkeypatch.chdir(tmp_path / "in")  # a default --out (runs/...) would appear here
    before = _tree(tmp_path)
    rc = main([a.format(**inputs) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == 2, f"{case}: exit {rc}, stderr {err!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mmhal: error: ")]
    # progress lines (``data: ...``) may come first; the error is one line, the last one
    assert len(errors) == 1 and lines[-1] == errors[0], f"{case}: {err!r}"
    assert needle in errors[0], f"{case}: the sentence does not name {needle!r}: {errors[0]!r}"
    assert "weights_only" not in err and "Traceback" not in err
    assert _tree(tmp_path) == before, f"{case}: files appeared or changed: " \
        f"{sorted(set(_tree(tmp_path).items()) ^ set(before.items()))[:6]}"

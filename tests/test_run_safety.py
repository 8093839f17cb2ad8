"""A user's work is never lost: --overwrite replaces a run only once the new one is complete, an interrupted run is
refused until --resume (or --overwrite), files mmhal did not write survive every path, a mistake in the input leaves
no folder behind; and what a run could not do before without a traceback (damaged or read-only teacher cache, a
read-only --out parent) or without a word (a student modality the teacher does not see, no test split, which
device ran)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmhal.engine.run as run_mod
from mmhal.cli import main
from mmhal.data.npz import save_npz
from test_cli_run import _tiny
from test_out_folder import PLANTED, plant, snapshot

BASE = ["--student", "weak", "--seeds", "1", "--no-progress", "model.width=4", "train.batch_size=32", "workers=1"]


def _run(capsys, data, out, *extra, methods="unimodal,kd", epochs=1):
    rc = main(["run", "--data", str(data), "--out", str(out), "--methods", methods, "--epochs", str(epochs), *BASE, *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_sentence(rc, err, words):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: ") and words in lines[0], err
    assert "Traceback" not in err


def _planted_intact(out: Path) -> None:
    for rel, text in PLANTED.items():
        assert (out / rel).read_text() == text, rel


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".mmhal-new-" in p.name or ".mmhal-old-" in p.name)


def _student_fit(monkeypatch, action):
    """``fit`` as before, but ``action(epoch)`` runs after every epoch of a student (not the teacher)."""
    real = run_mod.fit

    def fit(*a, **kw):
        if kw.get("desc") == "teacher":
            return real(*a, **kw)
        return real(*a, **{**kw, "on_epoch": lambda epoch, rec: action(epoch)})

    monkeypatch.setattr(run_mod, "fit", fit)
    return real


@pytest.mark.slow
def test_overwrite_keeps_the_old_run_whole_until_the_new_one_is_complete_and_never_deletes_the_users_files(
        tmp_path, capsys, monkeypatch):
    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    assert _run(capsys, data, out)[0] == 0
    plant(out)
    before = snapshot(out)

    def boom(epoch):
        raise RuntimeError("a bug in the middle of the new run")

    real = _student_fit(monkeypatch, boom)
    with pytest.raises(RuntimeError, match="a bug in the middle"):
        _run(capsys, data, out, "--overwrite", methods="unimodal")
    assert snapshot(out) == before and _leftovers(tmp_path) == []

    def ctrl_c(epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "fit", real)
    _student_fit(monkeypatch, ctrl_c)
    rc, _, err = _run(capsys, data, out, "--overwrite", methods="unimodal")
    assert rc == 130, err
    assert f"the earlier run in '{out}' is kept as it was and the new one was discarded" in err.strip().splitlines()[-1]
    assert snapshot(out) == before and _leftovers(tmp_path) == []

    # a replacement whose process was killed (SIGKILL: no clean-up) is removed by the next --overwrite
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = tmp_path / f".run.mmhal-new-{dead.pid}"
    shutil.copytree(out, stale)  # what a replacement holds: mmhal's files (the user's stay in the run's folder)
    for rel in PLANTED:
        (stale / rel).unlink()
    monkeypatch.setattr(run_mod, "fit", real)
    rc, _, err = _run(capsys, data, out, "--overwrite", methods="unimodal")
    assert rc == 0, err
    assert not stale.exists() and f"note: removed '{stale}'" in err
    _planted_intact(out)
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) == {"teacher", "unimodal"}
    # nothing of the old run's kd students is left to mix with the new run
    assert not (out / "models" / "kd-seed0.pt").exists() and not (out / "jobs" / "kd-seed0.pt").exists()
    assert (out / run_mod.MARKER).is_file() and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_an_interrupted_run_is_refused_until_resume_which_keeps_the_users_files(tmp_path, capsys, monkeypatch):
    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"

    def ctrl_c_in_kd(epoch):
        if any((out / "checkpoints").glob("kd-seed0.pt")):
            raise KeyboardInterrupt

    real = _student_fit(monkeypatch, ctrl_c_in_kd)
    rc, _, err = _run(capsys, data, out, epochs=2)
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == (f"mmhal: interrupted; the run stopped where it was; continue it with: "
                                            f"mmhal run --resume --out {out}")
    assert (out / "checkpoints" / "kd-seed0.pt").is_file() and (out / "jobs" / "unimodal-seed0.pt").is_file()
    monkeypatch.setattr(run_mod, "fit", real)
    plant(out)
    before = snapshot(out)
    _one_sentence(*_run(capsys, data, out, epochs=2)[::2],
                  "holds an interrupted run; continue it with --resume or replace it with --overwrite")
    assert snapshot(out) == before

    rc, _, err = _run(capsys, data, out, "--resume", epochs=2)
    assert rc == 0, err
    assert "resume: 1 of 2 students already finished, 1 continue from an epoch checkpoint" in err
    _planted_intact(out)
    assert set(json.loads((out / "results.json").read_text())["results"]) == {"teacher", "unimodal", "kd"}


@pytest.mark.parametrize("extra, words", [
    (["--teacher", "nosuch"], "modality 'nosuch'"),
    (["--precision", "16"], "needs a CUDA device"),
    (["method_overrides={kd: {distill.kd_alpha: 3}}"], "distill.kd_alpha must lie in [0, 1]"),
])
def test_a_mistake_in_the_input_leaves_no_folder(tmp_path, capsys, extra, words):
    data = _tiny(tmp_path / "tiny.npz")
    _one_sentence(*_run(capsys, data, tmp_path / "new" / "run", *extra)[::2], words)
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_sentence(*_run(capsys, data, empty, *extra)[::2], words)
    assert list(empty.iterdir()) == []


def test_a_failure_before_any_student_trained_leaves_no_folder(tmp_path, capsys, monkeypatch):
    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise torch._dynamo.exc.TorchDynamoException("the C++ compiler failed")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    data = _tiny(tmp_path / "tiny.npz")
    rc, _, err = _run(capsys, data, tmp_path / "run", "--compile")
    assert rc == 2 and "torch.compile could not compile the model" in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def _unwritable(tmp_path: Path) -> Path:
    """A folder in which nothing can be created (as root, where permissions do not stop anything: /sys)."""
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    try:
        os.mkdir("/sys/mmhal-write-test")
    except OSError:
        return Path("/sys")
    os.rmdir("/sys/mmhal-write-test")
    pytest.skip("no folder here refuses writes to root")


def test_a_read_only_out_parent_or_cache_is_one_sentence(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    ro = _unwritable(tmp_path)
    _one_sentence(*_run(capsys, data, ro / "run")[::2], f"the run folder '{ro / 'run'}' (in '{ro}') cannot be created or written")
    cache = ro / "mmhal-cache"
    rc, _, err = _run(capsys, data, tmp_path / "run", f"cache_dir={cache}")
    assert rc == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"mmhal: error: the cache folder '{cache}' cannot be created or written")
    assert "set cache_dir=DIR or $MMHAL_CACHE to a writable folder" in err
    assert not (tmp_path / "run").exists()  # nothing trained: nothing left


def test_a_damaged_teacher_cache_entry_is_moved_aside_and_the_teacher_trained_again(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    assert _run(capsys, data, tmp_path / "a", methods="kd")[0] == 0
    (entry,) = (tmp_path / "mmhal-cache" / "teachers").glob("*.pt")
    good = torch.load(entry, weights_only=True)
    entry.write_bytes(entry.read_bytes()[:200])  # a copy cut short
    rc, _, err = _run(capsys, data, tmp_path / "b", methods="kd")
    assert rc == 0, err
    assert f"note: the cached teacher '{entry}' is damaged" in err and f"moved it to '{entry}.damaged'" in err
    assert "weights_only" not in err and "teacher: trained" in err
    assert (entry.parent / f"{entry.name}.damaged").is_file()
    again = torch.load(entry, weights_only=True)["model"]
    assert all(torch.equal(again[k], v) for k, v in good["model"].items())  # trained again: the same teacher
    a = json.loads((tmp_path / "a" / "results.json").read_text())["results"]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["results"] == a


def test_unusual_choices_are_stated_in_the_results_and_the_device_is_recorded(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 3, n)
    weak = rng.normal(size=(n, 2, 16)).astype(np.float32)
    strong = rng.normal(size=(n, 5)).astype(np.float32)
    strong[np.arange(n), y] += 3.0
    split = np.where(np.arange(n) % 4 == 0, "val", "train")  # no test split
    data = tmp_path / "notest.npz"
    save_npz(data, {"weak": weak, "strong": strong}, y, split=split, class_names=["a", "b", "c"])
    rc, printed, err = _run(capsys, data, tmp_path / "run", "--teacher", "strong", methods="unimodal")
    assert rc == 0, err
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report["evaluated_on"] == "val"
    unseen = next(w for w in report["warnings"] if w.startswith("the student sees weak, which the teacher does not"))
    no_test = next(w for w in report["warnings"] if w.startswith("the data has no test split"))
    assert f"note: {unseen}" in err and f"note: {no_test}" in err
    assert printed.splitlines()[0].startswith("NO TEST SPLIT: every figure below is on the validation split")
    assert report["device"] == "cpu" and report["torch"] == torch.__version__


def test_a_tuning_that_fails_on_its_input_leaves_no_folder(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    rc = main(["tune", "--data", str(data), "--out", str(tmp_path / "t"), "--student", "nosuch", "--no-progress"])
    _one_sentence(rc, capsys.readouterr().err, "modality 'nosuch'")
    assert not (tmp_path / "t").exists()


def test_an_interrupted_tuning_leaves_nothing_and_says_the_same_command_starts_it_again(tmp_path, capsys, monkeypatch):
    data = _tiny(tmp_path / "tiny.npz")

    def ctrl_c(epoch):
        raise KeyboardInterrupt

    _student_fit(monkeypatch, ctrl_c)
    out = tmp_path / "t"
    rc = main(["tune", "--data", str(data), "--out", str(out), "--methods", "kd", "--trials", "2", "--tune-seeds", "1",
               "--epochs", "1", *BASE])
    err = capsys.readouterr().err
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == ("mmhal: interrupted; the tuning was not finished and its files were removed; "
                                            "the same command starts it again")
    assert not out.exists()

"""`mmhal tune`: the same budget for every method, chosen on validation only, and a recipe `mmhal run` uses."""
import json

import numpy as np
import pytest

from mmhal.cli import main
from mmhal.config import DataConfig, load_config, method_config
from mmhal.data.npz import load_npz, save_npz
from mmhal.engine.tune import COMMON_SPACE, method_space, require_optuna, suggest
from test_cli_run import _tiny

ARGS = ["--student", "weak", "--methods", "unimodal,kd,mmh-ensemble", "--trials", "3", "--tune-seeds", "2", "--pruner", "none",
        "--epochs", "2", "--no-progress", "model.width=4", "train.batch_size=32", "workers=1"]


def _with_file_split(src, dst, scramble_test=False):
    """``src`` with its mmhal-made split written into the file; optionally the test split's labels and
    inputs replaced by noise (tuning must not notice)."""
    d = load_npz(DataConfig(), path=str(src))
    mods = {m: a.copy() for m, a in d.modalities.items()}
    y = d.labels.copy()
    if scramble_test:
        rng = np.random.default_rng(1)
        test = d.split == "test"
        y[test] = rng.integers(0, 3, test.sum())
        for a in mods.values():
            a[test] = rng.normal(size=a[test].shape)
    save_npz(dst, mods, y, split=d.split, groups=d.groups, class_names=d.class_names)
    return dst


def test_tuning_never_looks_at_the_test_split(tmp_path, capsys):
    base = _tiny(tmp_path / "tiny.npz")
    a = _with_file_split(base, tmp_path / "a.npz")
    b = _with_file_split(base, tmp_path / "b.npz", scramble_test=True)
    assert main(["tune", "--data", str(a), "--out", str(tmp_path / "ta"), *ARGS]) == 0
    assert main(["tune", "--data", str(b), "--out", str(tmp_path / "tb"), *ARGS]) == 0
    ta = json.loads((tmp_path / "ta" / "tune.json").read_text())
    tb = json.loads((tmp_path / "tb" / "tune.json").read_text())
    assert ta["table"] == tb["table"] and ta["best"] == tb["best"]


def test_every_method_gets_the_same_trials_and_seeds_and_the_recipe_applies_the_best(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    assert main(["tune", "--data", str(data), "--out", str(tmp_path / "t"), *ARGS]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert summary["methods"] == ["unimodal", "kd", "rad", "dad"]  # the ensemble stands for its members
    assert summary["tune_seeds"] == [1000, 1001]  # never the reporting seeds 0, 1, 2
    for m, rows in summary["table"].items():
        assert [r["trial"] for r in rows] == [0, 1, 2]
        assert rows[0]["settings"] == {}  # trial 0: the current settings
        assert all(len(r["val_accuracy"]) == 2 for r in rows)
        best = max(rows, key=lambda r: (r["mean_val_accuracy"], -np.mean(r["val_loss"]), -r["trial"]))
        assert summary["best"][m]["trial"] == best["trial"]
        for r in rows[1:]:  # the schedule is searched for every method, the unimodal baseline included
            assert set(COMMON_SPACE) <= set(r["settings"])
    assert "mmhal run --config" in out
    cfg = load_config(str(tmp_path / "t" / "tuned.yaml"))
    for m, b in summary["best"].items():
        assert cfg.method_overrides.get(m, {}) == b["settings"]
        mc = method_config(cfg, m)
        for key, value in b["settings"].items():
            section, name = key.split(".")
            assert getattr(getattr(mc, section), name) == value
    assert len((tmp_path / "t" / "trials.csv").read_text().splitlines()) == 1 + 4 * 3


def test_trials_draw_from_the_methods_own_space_through_optuna():
    optuna = require_optuna()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for _ in range(6):
        d = suggest(study.ask(), method_space("kd"))
        assert set(d) == {*COMMON_SPACE, "distill.kd_alpha", "distill.temperature"}
        assert 1e-3 <= d["train.lr"] <= 1e-2 and 1e-5 <= d["train.weight_decay"] <= 1e-2
        assert 0.1 <= d["distill.kd_alpha"] <= 0.95 and d["distill.temperature"] in (1.0, 2.0, 4.0, 8.0)
        assert d["train.lr"] == float(f"{d['train.lr']:.3g}")  # three significant digits: a person can type it
    assert set(suggest(study.ask(), method_space("unimodal"))) == set(COMMON_SPACE)


@pytest.mark.parametrize("override, words", [
    ("method_overrides={kd: {seeds: 3}}", "a method may set only train.* and distill.* keys"),
    ("method_overrides={kd: {distill.kd_alpha: 3}}", "method_overrides.kd: distill.kd_alpha must lie in [0, 1]"),
    ("method_overrides={nosuch: {train.lr: 0.01}}", "nosuch"),
])
def test_bad_method_overrides_are_one_sentence_and_exit_code_2(tmp_path, capsys, override, words):
    data = _tiny(tmp_path / "tiny.npz")
    rc = main(["run", "--data", str(data), "--student", "weak", "--methods", "kd", "--seeds", "1", "--epochs", "1",
               "--no-progress", "model.width=4", "--out", str(tmp_path / "r"), override])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert words in err.strip().splitlines()[-1]


def test_init_from_teacher_copies_every_matching_tensor_and_leaves_the_fusion_layer():
    import torch

    from mmhal.config import ModelConfig
    from mmhal.engine.run import init_from_teacher
    from mmhal.models.network import build_network

    spec = {"weak": (2, 16), "strong": (5,)}
    torch.manual_seed(0)
    teacher = build_network(spec, ["strong", "weak"], 3, ModelConfig(width=4))
    student = build_network(spec, ["weak"], 3, ModelConfig(width=4))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    n = init_from_teacher(student, teacher)
    s, t = student.state_dict(), teacher.state_dict()
    assert n > 0
    for k in s:
        if k.startswith(("stems.weak.", "stage3.", "stage4.", "head.")):
            assert torch.equal(s[k], t[k]), k
    se = [k for k in s if k.startswith("se.")]
    assert se and all(torch.equal(s[k], before[k]) for k in se)  # the fusion layer is wider in the teacher


def test_the_teacher_trains_with_its_own_overrides_and_they_key_its_cache(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--student", "weak", "--methods", "kd", "--seeds", "1", "--epochs", "1",
            "--no-progress", "model.width=4", "train.batch_size=32", "workers=1"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--out", str(tmp_path / "b"), "method_overrides={teacher: {train.epochs: 3}}"]) == 0
    err = capsys.readouterr().err
    assert "best epoch" in err and err.count("teacher: trained") == 2  # another key: trained again, not loaded
    teachers = sorted((tmp_path / "mmhal-cache" / "teachers").glob("*.pt"))
    assert len(teachers) == 2
    import torch

    epochs = sorted(len(torch.load(p, weights_only=True)["history"]) for p in teachers)
    assert epochs == [1, 3]


def test_methods_all_reports_every_registered_method_and_ensemble(tmp_path, capsys):
    from mmhal.distill import ENSEMBLES, METHODS

    data = _tiny(tmp_path / "tiny.npz")
    assert main(["run", "--data", str(data), "--student", "weak", "--methods", "all", "--seeds", "1", "--epochs", "1",
                 "--no-progress", "model.width=4", "train.batch_size=32", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(report["results"]) == {"teacher", *METHODS.names(), *ENSEMBLES}


class _PruneFromTrialOne:
    """A pruner that stops every trial but trial 0 after its second epoch (to test what pruning does, whatever the
    figures)."""

    def prune(self, study, trial) -> bool:
        return trial.number >= 1 and (trial.last_step or 0) >= 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pruned_trial_stops_its_students_and_is_never_chosen(tmp_path, capsys, monkeypatch, workers):
    from mmhal.engine import tune as tune_module

    optuna = require_optuna()

    class Pruner(_PruneFromTrialOne, optuna.pruners.BasePruner):
        pass

    monkeypatch.setattr(tune_module, "_pruner", lambda optuna, name, epochs: Pruner())
    data = _tiny(tmp_path / "tiny.npz")
    rc = main(["tune", "--data", str(data), "--out", str(tmp_path / "t"), "--student", "weak", "--methods", "unimodal",
               "--trials", "3", "--tune-seeds", "2", "--epochs", "4", "--no-progress", "--pruner", "median",
               "--sampler", "tpe", "model.width=4", "train.batch_size=32", f"workers={workers}"])
    assert rc == 0
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    rows = summary["table"]["unimodal"]
    assert rows[0]["mean_val_accuracy"] is not None and len(rows[0]["val_accuracy"]) == 2
    for r in rows[1:]:
        assert r["pruned"] == 2 and r["mean_val_accuracy"] is None and r["failed"] == "pruned after epoch 2"
    assert summary["best"]["unimodal"]["trial"] == 0 and summary["pruned"] == {"unimodal": [1, 2]}
    csv_rows = (tmp_path / "t" / "trials.csv").read_text().splitlines()
    assert csv_rows[0].endswith(",failed") and csv_rows[2].endswith(",pruned after epoch 2")
    assert (tmp_path / "t" / "study.db").is_file()  # the default storage: SQLite in the tune folder
    assert not list((tmp_path / "t" / "trials").rglob("PRUNED"))
    assert "2 trial(s) pruned" in capsys.readouterr().out


def _two_processes_on_one_study(tmp_path, url: str, trials: int) -> None:
    """Two ``mmhal tune`` processes started at once on the study ``s`` in ``url``: each of the ``trials`` trials is
    evaluated once, and both write the same table and recipe."""
    import subprocess
    import sys

    optuna = require_optuna()
    data = _tiny(tmp_path / "tiny.npz")
    optuna.create_study(storage=url, study_name="s.unimodal", direction="maximize")  # the schema, made once
    cmd = [sys.executable, "-m", "mmhal", "tune", "--data", str(data), "--student", "weak", "--methods", "unimodal",
           "--trials", str(trials), "--tune-seeds", "1", "--epochs", "1", "--no-progress", "--storage", url,
           "--study", "s", "--pruner", "none", "model.width=4", "train.batch_size=32", "workers=1"]
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / name)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for name in ("a", "b")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = optuna.load_study(storage=url, study_name="s.unimodal")
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in done) == list(range(trials))  # each trial evaluated, once
    over = [t for t in study.get_trials() if t.state != optuna.trial.TrialState.COMPLETE]
    assert all(t.user_attrs.get("mmhal.over_budget") for t in over)  # asked after the budget was taken: not run
    a, b = (json.loads((tmp_path / n / "tune.json").read_text()) for n in ("a", "b"))
    assert a["table"] == b["table"] and a["best"] == b["best"] and len(a["table"]["unimodal"]) == trials
    assert (tmp_path / "a" / "tuned.yaml").read_text().split("\n", 2)[2] == \
        (tmp_path / "b" / "tuned.yaml").read_text().split("\n", 2)[2]  # the same recipe (its header names its folder)
    assert "postgresql" not in url or ":***@" not in a["storage"]


def test_two_processes_share_one_study_in_sqlite_and_evaluate_every_trial_once(tmp_path):
    _two_processes_on_one_study(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}", 8)


@pytest.mark.slow
def test_two_processes_share_one_study_on_a_postgresql_server(tmp_path):
    from postgres_server import postgres_server

    with postgres_server() as url:
        _two_processes_on_one_study(tmp_path, url, 16)


@pytest.mark.parametrize("extra, words", [
    (["--sampler", "grid"], "--sampler must be random or tpe, got 'grid'"),
    (["--pruner", "hyperband"], "--pruner must be none or median, got 'hyperband'"),
    (["--storage", "my.db"], "--storage must be a database URL"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/none"], "the Optuna storage 'postgresql://u:***@127.0.0.1:1/none' "
                                                             "cannot be opened"),
])
def test_tuning_options_are_checked_in_one_sentence(tmp_path, capsys, extra, words):
    data = _tiny(tmp_path / "tiny.npz")
    args = [a for i, a in enumerate(ARGS) if "--pruner" not in ARGS[max(0, i - 1):i + 1]]  # ARGS less its --pruner
    rc = main(["tune", "--data", str(data), "--out", str(tmp_path / "t"), *args, *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "secret" not in err
    assert words in err.strip().splitlines()[-1]


def test_a_trial_whose_process_was_killed_is_failed_after_its_heartbeats_stop_and_the_others_finish(tmp_path):
    """Issue 21: a process killed outright (SIGKILL, a lost node) left its trial RUNNING in a shared study, and the
    others waited for it forever. Every process records a heartbeat per trial it evaluates; one without a heartbeat
    for the grace period (here MMHAL_TUNE_HEARTBEAT=1,4: 4 s) is marked failed, and the waiting process finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    optuna = require_optuna()
    data = _tiny(tmp_path / "tiny.npz")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=url, study_name="s.unimodal", direction="maximize")
    env = {**os.environ, "MMHAL_TUNE_HEARTBEAT": "1,4"}
    cmd = [sys.executable, "-m", "mmhal", "tune", "--data", str(data), "--student", "weak", "--methods", "unimodal",
           "--trials", "3", "--tune-seeds", "1", "--epochs", "200", "--no-progress", "--storage", url, "--study", "s",
           "--pruner", "none", "model.width=4", "train.batch_size=8", "workers=1",
           "method_overrides={teacher: {train.epochs: 1}}"]  # the students' trials are long, the teacher is not
    doomed = subprocess.Popen([*cmd, "--out", str(tmp_path / "a")], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    running = []
    while not running and doomed.poll() is None and time.time() < deadline:
        time.sleep(0.1)
        running = [t.number for t in optuna.load_study(storage=url, study_name="s.unimodal").get_trials()
                   if t.state == optuna.trial.TrialState.RUNNING]
    assert running == [0], "the first process never started its trial"
    time.sleep(1.5)  # a heartbeat or two recorded
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    cmd[cmd.index("200")] = "1"  # the survivor's own trials are quick
    survivor = subprocess.run([*cmd, "--out", str(tmp_path / "b")], env=env, capture_output=True, text=True,
                              timeout=600)
    assert survivor.returncode == 0, survivor.stderr
    assert "unimodal trial 0: its process stopped sending heartbeats" in survivor.stderr
    trials = optuna.load_study(storage=url, study_name="s.unimodal").get_trials()
    states = {t.number: t.state for t in trials if t.number < 3}
    assert states == {0: optuna.trial.TrialState.FAIL, 1: optuna.trial.TrialState.COMPLETE,
                      2: optuna.trial.TrialState.COMPLETE}
    table = json.loads((tmp_path / "b" / "tune.json").read_text())["table"]["unimodal"]
    assert [r["trial"] for r in table] == [0, 1, 2] and table[0]["mean_val_accuracy"] is None


def test_the_heartbeat_setting_is_checked(monkeypatch):
    from mmhal.engine.tune import HEARTBEAT, heartbeat_seconds
    from mmhal.errors import UserError

    monkeypatch.delenv("MMHAL_TUNE_HEARTBEAT", raising=False)
    assert heartbeat_seconds() == HEARTBEAT == (30, 120)
    monkeypatch.setenv("MMHAL_TUNE_HEARTBEAT", "2,7")
    assert heartbeat_seconds() == (2, 7)
    for bad in ("5", "a,b", "10,5", "0,3"):
        monkeypatch.setenv("MMHAL_TUNE_HEARTBEAT", bad)
        with pytest.raises(UserError, match="MMHAL_TUNE_HEARTBEAT"):
            heartbeat_seconds()


def test_the_waves_of_a_tuning_share_one_pool_of_workers_and_find_what_one_process_finds(tmp_path, monkeypatch):
    """mmhal tune asks its trials in waves; the worker processes start once for all of them (issue 21: a pool per wave
    spawned the workers, imported torch and sent the data again each time), and the table equals a one-process
    tuning's."""
    from mmhal.engine import jobs

    data = _tiny(tmp_path / "tiny.npz")
    started = []
    real = jobs.WorkerPool.__init__

    def counting(self, *args, **kw):
        started.append(args[1])
        real(self, *args, **kw)

    monkeypatch.setattr(jobs.WorkerPool, "__init__", counting)
    tables = {}
    for workers in (2, 1):
        out = tmp_path / f"w{workers}"
        assert main(["tune", "--data", str(data), "--student", "weak", "--methods", "unimodal", "--trials", "3",
                     "--tune-seeds", "2", "--epochs", "2", "--no-progress", "--out", str(out), "model.width=4",
                     "train.batch_size=32", f"workers={workers}"]) == 0
        tables[workers] = json.loads((out / "tune.json").read_text())["table"]
    assert started == [2]  # one pool for the 3 waves of the 2-worker tuning; none for the one-process tuning
    assert tables[2] == tables[1]

"""Training that diverges (a NaN or infinite loss) is stopped and reported as such, never as a result: ``fit`` raises
``TrainingDiverged`` naming the network, the epoch and the likely setting; a diverged student is recorded (also for
--resume), left out of the means, the paired statistics and the recommendation, and listed in the table, results.json
and results.csv; every student diverging exits 3; the teacher diverging exits 2 before any student trains; a tuning
trial with a diverged student is scored as failed."""
import csv
import io
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import mmhal.engine.run as run_mod
from mmhal.cli import NOTHING_USABLE, main
from mmhal.config import DistillConfig, ModelConfig, RunConfig
from mmhal.distill import METHODS
from mmhal.engine.loop import Split, check_finite, fit
from mmhal.engine.results import (build_results, diverged_methods, diverged_warning, format_table, nothing_usable,
                                  recommend, results_csv)
from mmhal.errors import TrainingDiverged, UserError
from mmhal.models.network import build_network
from test_cli_run import _tiny

BASE = ["--student", "weak", "--no-progress", "model.width=4", "train.batch_size=32"]
HUGE_KD_LR = "method_overrides={kd: {train.lr: 1e6}}"


# ---------------------------------------------------------------- fit: hand-made losses


def _split(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 5, generator=g)
    x[torch.arange(n), y] += 2.0
    return Split({"v": x}, y)


class _Poisoned(METHODS.get("unimodal")):
    """Unimodal, but the training loss of the last step (4 of 64 / 16) of epoch ``bad`` (1-based) is multiplied by
    ``factor`` (NaN or inf; the steps after it would all be NaN)."""

    bad, factor = 0, 1.0

    def start_epoch(self, epoch, seed):
        self.epoch, self.step = epoch + 1, 0

    def forward(self, inputs, target, teacher_out=None):
        logits, losses = super().forward(inputs, target, teacher_out)
        self.step += 1
        if self.epoch == self.bad and self.step == 4:
            losses = {"ce": losses["ce"] * self.factor}
        return logits, losses


def _method(cls=None):
    torch.manual_seed(0)
    net = build_network({"v": (5,)}, ["v"], 3, ModelConfig(width=4))
    return (cls or METHODS.get("unimodal"))(net, None, DistillConfig())


def _tcfg(epochs=3, **kw):
    return replace(RunConfig().train, epochs=epochs, batch_size=16, **kw)


@pytest.mark.parametrize("factor, word", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_fit_stops_at_the_epoch_whose_training_loss_is_not_finite(tmp_path, factor, word):
    method = _method(_Poisoned)
    method.bad, method.factor = 2, factor
    ckpt = tmp_path / "job.pt"
    seen = []
    with pytest.raises(TrainingDiverged) as info:
        fit(method, _split(), _split(seed=1), _tcfg(lr=0.01), seed=0, progress=False, checkpoint=ckpt,
            on_epoch=lambda epoch, rec: seen.append(epoch), network="student poisoned seed 0")
    exc = info.value
    assert exc.epoch == 2 and seen == [0]  # epoch 1 was finished and reported; epoch 2 stopped the training
    assert str(exc) == (f"student poisoned seed 0 diverged at epoch 2 (training loss {word}): "
                        "lower train.lr (now 0.01)")
    assert isinstance(exc, UserError)  # one sentence, exit code 2, where nothing catches it (the teacher)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # the checkpoint holds the last finite epoch


def test_fit_stops_at_the_epoch_whose_validation_loss_is_not_finite():
    method = _method()
    state = {"epoch": 0}
    method.start_epoch = lambda epoch, seed: state.update(epoch=epoch + 1)
    # the student's logits are NaN in evaluation (validation) from epoch 3 on; training stays finite
    method.student.head.register_forward_hook(
        lambda mod, inp, out: out * float("nan") if not mod.training and state["epoch"] >= 3 else out)
    with pytest.raises(TrainingDiverged) as info:
        fit(method, _split(), _split(seed=1), _tcfg(epochs=4), seed=0, progress=False, desc="unimodal seed 0")
    assert info.value.epoch == 3
    assert str(info.value).startswith("unimodal seed 0 diverged at epoch 3 (validation loss nan): lower train.lr")


def test_a_finite_training_is_untouched():
    res = fit(_method(), _split(), _split(seed=1), _tcfg(epochs=2), seed=0, progress=False)
    assert len(res.history) == 2 and all(math.isfinite(h["ce"]) and math.isfinite(h["val_loss"]) for h in res.history)


def test_the_hint_names_the_methods_loss_weights_and_precision_16():
    torch.manual_seed(0)
    net = build_network({"v": (5,)}, ["v"], 3, ModelConfig(width=4))
    kd = METHODS.get("kd")(net, build_network({"v": (5,)}, ["v"], 3, ModelConfig(width=4)),
                           DistillConfig(kd_alpha=0.7))
    with pytest.raises(TrainingDiverged) as info:
        check_finite(kd, _tcfg(lr=0.5, precision="16"), "student kd seed 3", 4, {"ce": 0.3, "kd": float("nan")}, 1.0)
    assert str(info.value) == ("student kd seed 3 diverged at epoch 4 (training loss nan in its kd term): lower "
                               "train.lr (now 0.5), its loss weights (distill.kd_alpha now 0.7) or train.precision "
                               "(now 16; bf16 or 32 do not overflow as easily)")
    check_finite(kd, _tcfg(), "x", 1, {"ce": 0.3, "kd": 0.1}, 1.0)  # finite: nothing


def test_the_error_survives_a_process_boundary():
    import pickle

    sent = TrainingDiverged("the teacher", 2, "training loss nan", "lower train.lr (now 1.0)")
    exc = pickle.loads(pickle.dumps(sent))
    assert (exc.network, exc.epoch, str(exc)) == ("the teacher", 2, "the teacher diverged at epoch 2 (training loss "
                                                                    "nan): lower train.lr (now 1.0)")


# ---------------------------------------------------------------- results: hand-made records

SEEDS = [0, 1, 2]


def _records(diverged: dict):
    """Logits of unimodal, kd, rad, dad on 3 seeds (kd the best on validation), and ``diverged`` {(job, seed): epoch}
    as diverged records."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    onehot = np.eye(3)[y]

    def logits(strength, seed):
        return strength * onehot + np.random.default_rng(seed).normal(size=(60, 3))

    jobs = {}
    for s in SEEDS:
        for i, (name, strength) in enumerate([("unimodal", 1.0), ("kd", 3.0), ("rad", 1.5), ("dad", 1.2)]):
            if (name, s) in diverged:
                e = diverged[(name, s)]
                jobs[(name, s)] = {"diverged": {"epoch": e, "what": "training loss nan",
                                                "message": f"student {name} seed {s} diverged at epoch {e} (training "
                                                           "loss nan): lower train.lr (now 1000000.0)"}}
            else:
                z = logits(strength, 10 * s + i)
                jobs[(name, s)] = {"logits": z, "logits_last": z, "val_logits": z}
    return y, logits(4.0, 99), jobs


def _report(diverged, names=("unimodal", "kd", "mmh-ensemble")):
    y, teacher, jobs = _records(diverged)
    results = build_results(list(names), ["weak"], ["strong", "weak"], y, y, teacher, teacher, jobs, SEEDS, 3)
    div = diverged_methods(list(names), jobs, SEEDS, ["weak"])
    return {"seeds": SEEDS, "results": results, "diverged": div, "recommendation": recommend(results),
            "evaluated_on": "test"}


def test_without_divergence_kd_is_recommended():
    report = _report({})
    assert report["diverged"] == {} and report["recommendation"]["method"] == "kd"
    assert "diverged" not in results_csv(report) and "diverged" not in format_table(report)


def test_a_method_with_diverged_seeds_is_left_out_of_means_statistics_and_recommendation_and_listed():
    report = _report({("kd", 1): 2, ("kd", 2): 2, ("rad", 0): 1})
    res, div = report["results"], report["diverged"]
    assert set(res) == {"teacher", "unimodal"}  # kd and the ensemble of rad + dad are out of every figure
    assert report["recommendation"]["method"] == "unimodal"  # kd was the best on validation before it diverged
    assert div["kd"]["seeds"] == [1, 2] and [j["epoch"] for j in div["kd"]["jobs"]] == [2, 2]
    assert div["mmh-ensemble"]["seeds"] == [0] and div["mmh-ensemble"]["networks"] == 2
    table = format_table(report)
    kd_row = next(line for line in table.splitlines() if line.startswith("kd "))
    assert "diverged: seeds 1, 2 (epoch 2); left out of the means, comparisons and recommendation" in kd_row
    assert "diverged: rad seed 0 (epoch 1)" in next(l for l in table.splitlines() if l.startswith("mmh-ensemble"))
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(results_csv(report)))}
    assert list(rows) == ["teacher", "unimodal", "kd", "mmh-ensemble"]
    assert rows["kd"]["diverged"] == "seeds 1, 2 (epoch 2)"
    assert rows["mmh-ensemble"]["diverged"] == "rad seed 0 (epoch 1)"
    assert rows["kd"]["accuracy_mean"] == rows["kd"]["diff_vs_unimodal"] == rows["kd"]["accuracy_seed0"] == ""
    assert rows["unimodal"]["diverged"] == ""
    assert float(rows["unimodal"]["accuracy_mean"]) == pytest.approx(res["unimodal"]["accuracy"]["mean"], abs=1e-6)
    warning = diverged_warning(div)
    assert "kd on seeds 1, 2 (epoch 2); mmh-ensemble on rad seed 0 (epoch 1)" in warning
    assert nothing_usable(report) is None
    json.dumps(report)  # results.json stays valid JSON: no NaN anywhere


def test_unimodal_diverging_on_a_seed_leaves_every_comparison_out():
    report = _report({("unimodal", 0): 3})
    res = report["results"]
    assert set(res) == {"teacher", "kd", "mmh-ensemble"}
    assert not any("vs_unimodal" in r or "gap_recovered" in r for r in res.values())
    assert report["recommendation"]["method"] == "kd" and report["recommendation"]["vs_unimodal_val"] is None
    assert diverged_warning(report["diverged"]).endswith("with unimodal left out, no method is compared with it")


def test_every_method_diverged_is_nothing_usable():
    report = _report({(n, s): 1 for n in ("unimodal", "kd", "rad") for s in SEEDS}, names=("unimodal", "kd", "rad"))
    assert set(report["results"]) == {"teacher"} and report["recommendation"] is None
    assert nothing_usable(report).startswith("every student diverged, so this run has nothing to compare or deploy")


# ---------------------------------------------------------------- mmhal run and mmhal tune, end to end


def _run(capsys, data, out, *extra, methods="unimodal,kd", seeds=2, epochs=1, workers=1):
    rc = main(["run", "--data", str(data), "--out", str(out), "--methods", methods, "--seeds", str(seeds),
               "--epochs", str(epochs), *BASE, f"workers={workers}", *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.slow
def test_a_diverging_method_is_listed_and_left_out_and_resume_does_not_train_it_again(tmp_path, capsys, monkeypatch):
    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    real = run_mod.fit
    trained = []

    def ctrl_c_in_unimodal_seed_1(*a, **kw):  # Ctrl-C once kd seed 0 has diverged (jobs run seed by seed)
        trained.append(kw.get("desc"))
        if kw.get("desc") == "unimodal seed 1":
            def stop(epoch, rec):
                raise KeyboardInterrupt
            kw = {**kw, "on_epoch": stop}
        return real(*a, **kw)

    monkeypatch.setattr(run_mod, "fit", ctrl_c_in_unimodal_seed_1)
    rc, _, err = _run(capsys, data, out, HUGE_KD_LR)
    assert rc == 130, err
    assert ("warning: student kd seed 0 diverged at epoch 1 (training loss nan): lower train.lr (now 1000000.0) or its "
            "loss weights (distill.kd_alpha now 0.5); it is left out of the results") in err
    record = torch.load(out / "jobs" / "kd-seed0.pt", weights_only=True)
    assert record["diverged"]["epoch"] == 1 and "logits" not in record
    assert not (out / "checkpoints" / "kd-seed0.pt").exists() and not (out / "models" / "kd-seed0.pt").exists()

    trained.clear()
    monkeypatch.setattr(run_mod, "fit", lambda *a, **kw: (trained.append(kw.get("desc")), real(*a, **kw))[1])
    rc, stdout, err = _run(capsys, data, out, HUGE_KD_LR, "--resume")
    assert rc == 0, err
    assert trained == ["unimodal seed 1", "kd seed 1"]  # kd seed 0 is recorded as diverged: not trained again
    assert "resume: 2 of 4 students already finished" in err
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) == {"teacher", "unimodal"}
    assert report["diverged"]["kd"]["seeds"] == [0, 1]
    assert report["recommendation"]["method"] == "unimodal"
    assert any(w.startswith("students diverged") and "kd on seeds 0, 1 (epoch 1)" in w for w in report["warnings"])
    assert "warning: students diverged" in stdout
    assert any(line.startswith("kd ") and "diverged: seeds 0, 1 (epoch 1)" in line for line in stdout.splitlines())
    assert '"seeds 0, 1 (epoch 1)"' in (out / "results.csv").read_text()
    assert sorted(p.name for p in (out / "models").glob("*.pt")) == ["teacher.pt", "unimodal-seed0.pt",
                                                                     "unimodal-seed1.pt"]
    json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"results.json holds {c}"))
    rc = main(["predict", str(out), "--data", str(data), "--method", "kd", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines()[-1] == (
        f"mmhal: error: method 'kd' of the run in '{out}' diverged (results.json lists it under 'diverged'), so it "
        "has nothing to use; choose one with --method (unimodal)")


@pytest.mark.slow
def test_every_student_diverging_writes_the_results_and_exits_3_with_one_sentence(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    rc, stdout, err = _run(capsys, data, out, "train.lr=1e6", "method_overrides={teacher: {train.lr: 0.003}}",
                           workers=2)  # the students in worker processes
    assert rc == NOTHING_USABLE == 3, err
    errors = [line for line in err.splitlines() if line.startswith("mmhal: error: ")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("mmhal: error: every student diverged, so this run has nothing to compare or deploy")
    assert "lower train.lr (now 1000000.0)" in errors[0] and "Traceback" not in err
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) == {"teacher"} and report["recommendation"] is None
    assert set(report["diverged"]) == {"unimodal", "kd"} and report["diverged"]["kd"]["seeds"] == [0, 1]
    assert err.count("it is left out of the results") == 4  # every student's sentence, from the worker processes
    assert "recommendation: none (no single-network student finished without diverging)" in stdout
    assert (out / "results.csv").is_file() and (out / run_mod.MARKER).is_file()  # a finished run: --resume not needed


@pytest.mark.slow
def test_the_teacher_diverging_exits_2_before_any_student_and_caches_nothing(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    rc, _, err = _run(capsys, data, out, "train.lr=1e6")
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err
    assert lines[-1] == ("mmhal: error: the teacher diverged at epoch 1 (training loss nan): lower train.lr (now "
                         "1000000.0; method_overrides.teacher.train.lr sets the teacher's alone); nothing was cached "
                         "and no student was trained")
    assert not any("seed" in line for line in lines)  # no student trained
    teachers = tmp_path / "mmhal-cache" / "teachers"
    assert not teachers.exists() or list(teachers.iterdir()) == []
    assert not out.exists()


@pytest.mark.slow
def test_a_tuning_trial_whose_student_diverges_is_failed_and_never_chosen(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    args = ["tune", "--data", str(data), "--tune-seeds", "1", "--epochs", "1", *BASE,
            "workers=1"]
    # kd's trial 0 has the huge rate; its trial 1 draws its own (1e-3..1e-2)
    assert main([*args, "--methods", "unimodal,kd", "--trials", "2", "--out", str(tmp_path / "t"), HUGE_KD_LR]) == 0
    cap = cap_first = capsys.readouterr()
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    kd = summary["table"]["kd"]
    assert kd[0]["failed"] == "diverged: seed 1000 at epoch 1" and kd[0]["mean_val_accuracy"] is None
    assert kd[0]["val_accuracy"] == [None] and "failed" not in kd[1]
    assert summary["best"]["kd"]["trial"] == 1 and summary["failed"] == []
    assert "note: kd trial 0 is scored as failed and never chosen (diverged: seed 1000 at epoch 1)" in cap.err
    assert "of tuning trial kd-trial0" in cap.err
    rows = (tmp_path / "t" / "trials.csv").read_text().splitlines()
    assert rows[0].endswith(",failed")
    assert "diverged: seed 1000 at epoch 1" in next(r for r in rows if r.startswith("kd,0,"))

    # every trial of every method diverging: nothing was tuned, exit 3 with one sentence
    rc = main([*args, "--methods", "unimodal", "--trials", "1", "--out", str(tmp_path / "t2"), "train.lr=1e6",
               "method_overrides={teacher: {train.lr: 0.003}}"])
    cap = capsys.readouterr()
    err = cap.err
    assert rc == 3 and err.strip().splitlines()[-1].startswith("mmhal: error: every trial of every method diverged")
    assert "next: mmhal run" not in cap.out  # no advice to run a recipe that diverges
    assert "next: mmhal run" in cap_first.out  # (the first tuning, which tuned kd, gave it)
    summary = json.loads((tmp_path / "t2" / "tune.json").read_text())
    assert summary["best"] == {"unimodal": None} and summary["failed"] == ["unimodal"]


@pytest.mark.slow
def test_under_torchrun_a_diverging_method_is_reported_as_in_one_process(tmp_path):
    from test_distributed import _free_port

    data = _tiny(tmp_path / "tiny.npz")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "-m", "mmhal", "run", "--data", str(data), "--out", str(tmp_path / "ddp"), "--methods", "unimodal,kd",
           "--seeds", "1", "--epochs", "2", "train.threads=1", *BASE, "workers=1", HUGE_KD_LR]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("warning: student kd seed 0 diverged at epoch 1") == 1  # rank 0 alone speaks
    report = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert set(report["results"]) == {"teacher", "unimodal"} and report["diverged"]["kd"]["seeds"] == [0]

"""`mmhal run --resume`: a run killed mid-way (SIGKILL) goes on and ends as the uninterrupted run;
and the answers of --resume, --precision and --compile to user mistakes."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmhal.cli import main
from test_cli_run import _tiny

SRC = str(Path(__file__).resolve().parents[1] / "src")
EPOCHS = 6
ARGS = ["--student", "weak", "--methods", "unimodal,mmh", "--seeds", "2", "--epochs", str(EPOCHS), "--no-progress",
        "model.width=4", "train.batch_size=32", "train.threads=1",
        "learners=[]"]


def _cmd(data, out, *extra, workers=1):
    return [sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *ARGS, f"workers={workers}", *extra]


def _env():
    env = dict(os.environ)  # MMHAL_CACHE is this test's own (conftest)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _models(out):
    return {p.name: torch.load(p, map_location="cpu", weights_only=True) for p in sorted((out / "models").glob("*-seed*.pt"))}


def kill_at_first_checkpoint(cmd, env, out: Path) -> None:
    """Start ``cmd`` (an ``mmhal run`` into ``out``) and SIGKILL it as soon as an epoch checkpoint appears in
    ``out``; it must not have finished by then."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not list(out.glob("checkpoints/*.pt")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before any epoch checkpoint was seen"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2])
def test_a_killed_run_resumes_and_ends_exactly_as_the_uninterrupted_run(tmp_path, workers):
    """Students in two worker processes. (One process: the nine-kill test below, with the baselines, and
    tests/test_clip_runs.py, with unimodal + MMH on clips read by a DataLoader worker.)"""
    data = _tiny(tmp_path / "tiny.npz")
    ref = tmp_path / "ref"
    done = subprocess.run(_cmd(data, ref, workers=workers), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "run"
    kill_at_first_checkpoint(_cmd(data, out, workers=workers), _env(), out)
    if workers > 1:
        time.sleep(1.0)  # the orphaned workers see their parent gone and exit

    resumed = subprocess.run(_cmd(data, out, "--resume", workers=workers), env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "teacher: loaded from cache" in resumed.stderr
    line = next(l for l in resumed.stderr.splitlines() if l.startswith("resume:"))
    assert int(re.search(r"(\d+) continue from an epoch checkpoint", line).group(1)) >= 1, line

    report = json.loads((out / "results.json").read_text())
    expected = json.loads((ref / "results.json").read_text())
    assert set(report["results"]) == {"teacher", "unimodal", "mmh"}
    for name, r in expected["results"].items():
        assert report["results"][name]["accuracy"]["per_seed"] == r["accuracy"]["per_seed"], name
        assert report["results"][name]["macro_f1"]["per_seed"] == r["macro_f1"]["per_seed"], name
    got, want = _models(out), _models(ref)
    assert set(got) == set(want) == {f"{m}-seed{s}.pt" for m in ("unimodal", "mmh") for s in (0, 1)}
    for job, ck in want.items():
        assert [h["epoch"] for h in got[job]["history"]] == list(range(1, EPOCHS + 1)), job
        assert got[job]["history"] == ck["history"], job
        assert all(torch.equal(got[job]["model"][k], v) for k, v in ck["model"].items()), job
    for job in want:  # the per-epoch metrics too, but for the seconds each epoch took
        drop = lambda text: [line.split(",", 3)[:2] + line.split(",", 3)[3:] for line in text.splitlines()]  # noqa: E731
        got_m, want_m = ((f / "metrics" / job.replace(".pt", ".csv")).read_text() for f in (out, ref))
        assert drop(got_m) == drop(want_m), job
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())
    assert len(list((out / "jobs").glob("*.pt"))) == 4

    # resuming a finished run only re-reports it
    again = subprocess.run(_cmd(data, out, "--resume", workers=workers), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resume: 4 of 4 students already finished" in again.stderr
    assert json.loads((out / "results.json").read_text())["results"] == report["results"]
    # run.log: the killed run's lines, then each resume's, each behind a header; it ends as the terminal did
    log = (out / "run.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("=== ")]
    assert len(headers) == 3 and headers[0].endswith(f"mmhal run --out {out}") and "--resume" in headers[1]
    assert "resume: 4 of 4 students already finished" in log
    assert log.rstrip("\n").splitlines()[-1] == again.stdout.rstrip("\n").splitlines()[-1]


BASELINES = ["fitnet", "at", "sp", "pkt", "rkd", "crd", "dkd", "mars", "hallucination"]


@pytest.mark.slow
def test_every_baseline_killed_after_an_epoch_resumes_and_ends_as_the_uninterrupted_run(tmp_path):
    """One process is SIGKILLed right after each baseline's first epoch checkpoint (nine kills) and resumed
    every time; the finished run equals an uninterrupted one: CRD's memory and DKD's warm-up included."""
    data = _tiny(tmp_path / "tiny.npz")
    args = [a if a != "unimodal,mmh" else ",".join(BASELINES) for a in ARGS]
    args[args.index("--seeds") + 1], args[args.index("--epochs") + 1] = "1", "2"
    extra = ["distill.dkd.warmup=2"]  # the factor differs per epoch, so a resumed epoch count matters

    def cmd(out, *more):
        return [sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *args, "workers=1",
                *extra, *more]

    ref = tmp_path / "ref"
    done = subprocess.run(cmd(ref), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    out, killed, continued = tmp_path / "run", [], 0
    while not (out / "results.json").exists():
        proc = subprocess.Popen(cmd(out, *(["--resume"] if killed else [])), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        new = []
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            new = [p.name for p in out.glob("checkpoints/*.pt") if p.name not in killed]
            if new:
                break
            time.sleep(0.005)
        if proc.poll() is None and new:
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(new[0])
        _, err = proc.communicate(timeout=60)
        line = next((l for l in err.splitlines() if l.startswith("resume:")), "")
        m = re.search(r"(\d+) continue from an epoch checkpoint", line)
        continued += int(m.group(1)) if m else 0
        assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
        assert len(killed) <= len(BASELINES) + 1
    assert sorted(k.split("-seed")[0] for k in killed) == sorted(BASELINES), killed
    assert continued == len(BASELINES)  # each resume continued the killed job from its checkpoint

    report = json.loads((out / "results.json").read_text())
    expected = json.loads((ref / "results.json").read_text())
    for name in BASELINES:
        assert report["results"][name]["accuracy"]["per_seed"] == expected["results"][name]["accuracy"]["per_seed"]
    got, want = _models(out), _models(ref)
    # (Hoffman's RGB network is saved beside the hallucination network, at its selected epoch)
    assert set(got) == set(want) == {f"{m}-seed0.pt" for m in BASELINES} | {"hallucination.rgb-seed0.pt"}
    for job, ck in want.items():
        assert got[job]["history"] == ck["history"], job
        assert all(torch.equal(got[job]["model"][k], v) for k, v in ck["model"].items()), job


def _cli(tmp_path, capsys, *args):
    data = _tiny(tmp_path / "tiny.npz")
    rc = main(["run", "--data", str(data), "--student", "weak", "--no-progress", *args])
    return rc, capsys.readouterr().err


def _one_sentence(rc, err, words):
    assert rc == 2
    assert words in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_resume_without_out_is_one_sentence_and_exit_code_2(tmp_path, capsys):
    _one_sentence(*_cli(tmp_path, capsys, "--resume"), "--resume needs --out DIR")


def test_resume_of_a_folder_without_a_run_is_one_sentence_and_exit_code_2(tmp_path, capsys):
    rc, err = _cli(tmp_path, capsys, "--resume", "--out", str(tmp_path / "nothing-here"))
    _one_sentence(rc, err, "there is no run to resume")
    assert not (tmp_path / "nothing-here").exists()


def test_resume_with_another_configuration_is_one_sentence_and_exit_code_2(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["--methods", "unimodal", "--seeds", "1", "--out", out, "model.width=4", "train.batch_size=32", "workers=1"]
    rc, err = _cli(tmp_path, capsys, *base, "--epochs", "1")
    assert rc == 0, err
    rc, err = _cli(tmp_path, capsys, *base, "--epochs", "2", "--resume")
    _one_sentence(rc, err, "asks for other settings than the run in")
    assert "started with (train.epochs: 1 then, 2 now)" in err
    rc, err = _cli(tmp_path, capsys, "--resume", "--out", out, "--precision", "bf16")
    _one_sentence(rc, err, "train.precision: '32' then, 'bf16' now")
    # how batches reach the device may change: the batches are the same
    rc, err = _cli(tmp_path, capsys, "train.loader=workers", "train.loader_workers=1", "--resume", "--out", out)
    assert rc == 0 and "resume: 1 of 1 students already finished" in err, err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--precision", "8"], "train.precision must be 32, bf16 or 16, got '8'"),
        (["train.precision=fp8"], "train.precision must be 32, bf16 or 16, got 'fp8'"),
        (["--precision", "16"], "train.precision 16 (float16 with loss scaling) needs a CUDA device"),
        (["train.channels_last=maybe"], "expects true/false"),
        (["--channels-last", "train.channels_last=false"], "--channels-last and the override train.channels_last=false"),
    ],
)
def test_precision_flag_mistakes_are_one_sentence_and_exit_code_2(tmp_path, capsys, args, words):
    rc, err = _cli(tmp_path, capsys, "--out", str(tmp_path / "o"), *args)
    _one_sentence(rc, err, words)


def test_a_compile_failure_stops_the_run_with_one_sentence_and_exit_code_2(tmp_path, capsys, monkeypatch):
    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise torch._dynamo.exc.TorchDynamoException("the C++ compiler failed")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    rc, err = _cli(tmp_path, capsys, "--out", str(tmp_path / "o"), "--compile", "--methods", "unimodal", "--seeds", "1",
                   "--epochs", "1", "model.width=4", "workers=1")
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("mmhal: error: torch.compile could not compile the model (TorchDynamoException: the C++ compiler failed)")
    assert "Traceback" not in err


def test_a_killed_teacher_training_continues_from_its_epoch_checkpoint(tmp_path, capsys, monkeypatch):
    import mmhal.engine.run as run_mod

    real_fit = run_mod.fit
    base = ["--methods", "unimodal", "--seeds", "1", "--epochs", "3", "model.width=4", "train.batch_size=32", "workers=1"]

    def killed_after_first_epoch(*a, **kw):
        def kill(epoch, rec):
            if epoch == 0:
                raise KeyboardInterrupt  # as Ctrl-C, after the epoch checkpoint was written
        return real_fit(*a, **{**kw, "on_epoch": kill}) if kw.get("desc") == "teacher" else real_fit(*a, **kw)

    cache = tmp_path / "cache"
    monkeypatch.setattr(run_mod, "fit", killed_after_first_epoch)
    rc, err = _cli(tmp_path, capsys, *base, f"cache_dir={cache}", "--out", str(tmp_path / "a"))
    assert rc == 130, err
    partial = list((cache / "teachers").glob("*.train.pt"))
    assert len(partial) == 1 and not [p for p in (cache / "teachers").glob("*.pt") if p not in partial]
    monkeypatch.setattr(run_mod, "fit", real_fit)

    rc, err = _cli(tmp_path, capsys, *base, f"cache_dir={cache}", "--out", str(tmp_path / "b"))
    assert rc == 0, err
    assert "teacher: continuing an interrupted training from" in err
    assert not partial[0].exists()  # the cache entry replaces it
    rc, err = _cli(tmp_path, capsys, *base, f"cache_dir={tmp_path / 'fresh'}", "--out", str(tmp_path / "ref"))
    assert rc == 0, err
    got = torch.load(tmp_path / "b" / "models" / "teacher.pt", weights_only=True)["model"]
    want = torch.load(tmp_path / "ref" / "models" / "teacher.pt", weights_only=True)["model"]
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_resuming_with_another_number_of_processes_is_one_sentence_and_exit_code_2(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--methods", "unimodal", "--seeds", "1", "--epochs", "1", "--out", str(out), "model.width=4",
            "train.batch_size=32", "workers=1"]
    rc, err = _cli(tmp_path, capsys, *base)
    assert rc == 0, err
    job = out / "jobs" / "unimodal-seed0.pt"
    record = torch.load(job, weights_only=True)
    assert record["world_size"] == 1
    torch.save({**record, "world_size": 2}, job)  # as if it had been trained under torchrun --nproc-per-node=2
    rc, err = _cli(tmp_path, capsys, *base, "--resume")
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(
        "was trained by 2 process(es), this run has 1; resume it with the same number of processes")

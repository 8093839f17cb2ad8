"""Ctrl-C (SIGINT) stops `mmhal run` at once in every phase, cancels queued students, kills the worker processes,
exits with 130 and says how to resume; `--resume` then ends exactly as the uninterrupted run; SIGTERM and SIGHUP
do the same (exit 143 and 129). A second Ctrl-C never hangs. A live run's folder is locked against other writers. A student that fails in a worker process stops the others at once, and its error reaches the user once.

These start `python -m mmhal` as a user would and signal it with os.kill(pid, SIGINT) (a terminal's Ctrl-C also
reaches the workers, which ignore it)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli_run import _tiny

SRC = str(Path(__file__).resolve().parents[1] / "src")
EPOCHS = 40  # with 2 workers the 4 students train for well over 10 s: long enough to see they were stopped
ARGS = ["--student", "weak", "--methods", "unimodal,mmh", "--seeds", "2", "--epochs", str(EPOCHS), "--no-progress",
        "model.width=4", "train.batch_size=32", "train.threads=1", "workers=2",
        "learners=[]"]
STOP_WITHIN = 3.0  # seconds from SIGINT to the end of the process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Data and a teacher cache shared by this module's runs (the teacher trains once)."""
    folder = tmp_path_factory.mktemp("interrupt")
    return _tiny(folder / "tiny.npz"), folder / "cache"


def _env(cache: Path, **extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*extra.pop("paths", []), SRC, env.get("PYTHONPATH", "")])
    env["MMHAL_CACHE"] = str(cache)
    env.update(extra)
    return env


def _cmd(data, out, *extra):
    return [sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *ARGS, *extra]


def _start(cmd, env, log: Path, group: bool = False) -> subprocess.Popen:
    """Start ``cmd``; with ``group``, in a process group of its own, which ``_interrupt`` then signals whole, as a
    terminal's Ctrl-C does (the worker processes get it too)."""
    # Output to a file, not a pipe: the time measured is the process's, not that of whoever else holds the pipe.
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True, start_new_session=group)


def _wait_until(proc, found, timeout=300.0):
    deadline = time.time() + timeout
    while not found() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the moment to interrupt it"
    assert found(), "the moment to interrupt never came"


def _interrupt(proc, times=1, gap=0.05, group=False, sig=signal.SIGINT) -> float:
    """Send ``sig`` (SIGINT) ``times`` times, ``gap`` seconds apart (to the process, or its whole group); seconds
    until the process ended."""
    t0 = time.time()
    for i in range(times):
        if i:
            time.sleep(gap)
        if proc.poll() is None:
            if group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the run did not end within 60 s of Ctrl-C")
    return time.time() - t0


def _quiet_after(out: Path, seconds=1.0) -> bool:
    """Whether nothing in ``out`` changes for ``seconds`` (no worker left behind goes on writing)."""
    def state():
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    before = state()
    time.sleep(seconds)
    return state() == before


def _per_seed(out: Path) -> dict:
    report = json.loads((out / "results.json").read_text())
    return {m: (r["accuracy"]["per_seed"], r["macro_f1"]["per_seed"]) for m, r in report["results"].items()}


@pytest.fixture(scope="module")
def reference(shared, tmp_path_factory):
    """The uninterrupted run of this module's command: what every resumed run must end as."""
    data, cache = shared
    ref = tmp_path_factory.mktemp("reference") / "ref"
    done = subprocess.run(_cmd(data, ref), env=_env(cache), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return ref


def test_ctrl_c_during_students_in_two_workers_stops_at_once_and_resume_ends_as_uninterrupted(tmp_path, shared,
                                                                                              reference):
    data, cache = shared
    ref = reference

    out = tmp_path / "run"
    proc = _start(_cmd(data, out), _env(cache), tmp_path / "run.log")
    _wait_until(proc, lambda: any(out.glob("checkpoints/*.pt")))
    took = _interrupt(proc)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 130, log[-3000:]
    assert took < STOP_WITHIN, f"{took:.1f} s from Ctrl-C to exit"
    assert log.strip().splitlines()[-1] == (f"mmhal: interrupted; the run stopped where it was; continue it with: "
                                            f"mmhal run --resume --out {out}")
    assert "Traceback" not in log and "leaked" not in log
    assert not (out / "results.json").exists()
    assert _quiet_after(out)  # the workers were stopped, not left to train on

    resumed = subprocess.run(_cmd(data, out, "--resume"), env=_env(cache), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _per_seed(out) == _per_seed(ref)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_or_sighup_to_the_whole_group_stops_like_ctrl_c_and_resume_ends_as_uninterrupted(
        tmp_path, shared, reference, sig, code):
    """What a cluster scheduler does before it kills a job (SIGTERM to every process of it), or a closed terminal."""
    data, cache = shared
    out = tmp_path / "run"
    proc = _start(_cmd(data, out), _env(cache), tmp_path / "run.log", group=True)
    _wait_until(proc, lambda: any(out.glob("checkpoints/*.pt")))
    took = _interrupt(proc, group=True, sig=sig)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == code, log[-3000:]
    assert took < STOP_WITHIN, f"{took:.1f} s from {sig.name} to exit"
    assert log.strip().splitlines()[-1] == (f"mmhal: stopped by {sig.name}; the run stopped where it was; continue it "
                                            f"with: mmhal run --resume --out {out}")
    assert "Traceback" not in log and "leaked" not in log
    assert _quiet_after(out)
    if sig == signal.SIGHUP:  # the same handler as SIGTERM: resuming once (below, for SIGTERM) is enough
        return
    resumed = subprocess.run(_cmd(data, out, "--resume"), env=_env(cache), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _per_seed(out) == _per_seed(reference)


def test_a_live_run_is_locked_against_every_other_writer_and_its_death_frees_it(tmp_path, shared):
    """A second run, --resume, --overwrite or tune into a folder that a live run writes is refused in one sentence,
    the live run unharmed; once it has died (SIGKILL: no clean-up), the folder is free again."""
    data, cache = shared
    out = tmp_path / "run"
    long = [sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(out),
            *[a if a != str(EPOCHS) else "4000" for a in ARGS]]  # alive for minutes (a teacher of 4000 epochs)
    proc = _start(long, _env(cache), tmp_path / "run.log")
    _wait_until(proc, lambda: (out / "config.yaml").is_file())
    for extra in ([], ["--resume"], ["--overwrite"]):
        done = subprocess.run(_cmd(data, out, *extra), env=_env(cache), capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"mmhal: error: the run in '{out}' is being written by another mmhal process "
                                   f"(pid {proc.pid}, since "), done.stderr
    tune = subprocess.run([sys.executable, "-m", "mmhal", "tune", "--data", str(data), "--out", str(out), *ARGS],
                          env=_env(cache), capture_output=True, text=True, timeout=120)
    assert tune.returncode == 2 and f"is being written by another mmhal process (pid {proc.pid}" in tune.stderr
    assert proc.poll() is None, "the live run was harmed"
    proc.kill()
    proc.wait()
    assert (out / ".mmhal-lock").is_file()  # left by the killed process, and of no force now
    from mmhal.engine.runfolder import FolderLock, plan_folder

    assert FolderLock.holder(out) is None
    assert plan_folder(out, "run", overwrite=True).mode == "replace"  # accepted (a whole run would add 15 s)
    assert plan_folder(out, "run", resume=True).mode == "resume"


def test_a_forked_child_of_the_writer_does_not_keep_its_folder_locked(tmp_path):
    """A DataLoader worker is forked from the run's process; one that outlives a killed run (it exits only when it
    notices) must not hold the lock, or the --resume that follows would be refused."""
    from mmhal.engine.runfolder import FolderLock

    lock = FolderLock(tmp_path)
    lock.acquire("run")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: alive, doing nothing, until killed
        os.close(r)
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    try:
        os.close(w)
        assert os.read(r, 1) == b"x"
        os.close(r)
        assert FolderLock.holder(tmp_path) is not None  # the parent holds it
        lock.release()  # as the death of the parent would
        assert FolderLock.holder(tmp_path) is None, "the forked child kept the folder locked"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_second_ctrl_c_from_the_terminal_while_stopping_never_hangs(tmp_path, shared):
    data, cache = shared
    out = tmp_path / "run"
    proc = _start(_cmd(data, out), _env(cache), tmp_path / "run.log", group=True)
    _wait_until(proc, lambda: any(out.glob("checkpoints/*.pt")))
    took = _interrupt(proc, times=2, gap=0.05, group=True)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 130, log[-3000:]
    assert took < STOP_WITHIN, f"{took:.1f} s from Ctrl-C to exit"
    assert "Traceback" not in log and "KeyboardInterrupt" not in log  # the workers ignore Ctrl-C: the parent stops them
    assert _quiet_after(out)


def test_ctrl_c_during_teacher_training_stops_at_once(tmp_path, shared):
    data, _ = shared
    cache = tmp_path / "cache"  # empty: the teacher trains
    out = tmp_path / "run"
    proc = _start(_cmd(data, out, "method_overrides={teacher: {train.epochs: 400}}"), _env(cache), tmp_path / "run.log")
    _wait_until(proc, lambda: any(cache.glob("teachers/*.train.pt")))
    took = _interrupt(proc)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 130, log[-3000:]
    assert took < STOP_WITHIN, f"{took:.1f} s from Ctrl-C to exit"
    assert log.strip().splitlines()[-1].endswith(f"continue it with: mmhal run --resume --out {out}")
    assert "Traceback" not in log
    assert list(cache.glob("teachers/*.train.pt"))  # the teacher goes on from its last epoch next time


# A student that fails only inside a worker process, from a sitecustomize module on the PYTHONPATH of the test's
# processes: it patches mmhal where a spawned worker imports it, and leaves mmhal's code as it is.
# The mmh student fails at once in its worker; a unimodal student there first waits until it has (so that one
# worker cannot finish a unimodal student before the other has even started), then takes 10 s more, as a long
# job would: it ends only if the failure did not stop it.
FAIL_IN_WORKER = '''
import multiprocessing, os, time
import mmhal.engine.run as run

_train = run.JobContext.train_student
FLAG = {flag!r}

def train_student(self, name, seed, *args, **kwargs):
    if multiprocessing.parent_process() is not None:
        if name == "mmh":
            open(FLAG, "w").close()
            raise RuntimeError("injected failure of the mmh student")
        deadline = time.time() + 120
        while not os.path.exists(FLAG) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(10)
    return _train(self, name, seed, *args, **kwargs)

run.JobContext.train_student = train_student
'''


def test_a_failing_student_in_a_worker_stops_the_others_and_its_error_shows_once(tmp_path, shared):
    data, cache = shared
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAIL_IN_WORKER.format(flag=str(tmp_path / "mmh-failed")))
    out = tmp_path / "run"
    done = subprocess.run(_cmd(data, out), env=_env(cache, paths=[str(hook)]), capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    err = done.stderr
    assert "mmhal: error: student mmh seed 0 failed in a worker process:" in err
    assert err.count("Traceback (most recent call last)") == 1 and err.count("RuntimeError: injected failure") == 1, err
    assert not list(out.glob("jobs/*.pt")), "the other students were not stopped"
    assert _quiet_after(out)


def test_a_user_error_in_a_worker_stops_the_others_with_one_sentence(tmp_path, shared):
    data, cache = shared
    out = tmp_path / "run"
    proc = _start(_cmd(data, out), _env(cache), tmp_path / "run.log")
    _wait_until(proc, lambda: (out / "checkpoints" / "mmh-seed0.pt").is_file())
    _interrupt(proc)
    assert proc.returncode == 130
    (out / "checkpoints" / "mmh-seed0.pt").write_bytes(b"not a checkpoint")  # a damaged disk
    for other in out.glob("checkpoints/*.pt"):  # the other students start again from epoch 0: they cannot finish
        if other.name != "mmh-seed0.pt":        # in the moment the damaged job takes to fail (a late checkpoint could)
            other.unlink()
    finished = set(out.glob("jobs/*.pt"))
    done = subprocess.run(_cmd(data, out, "--resume"), env=_env(cache), capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"mmhal: error: checkpoint '{out / 'checkpoints' / 'mmh-seed0.pt'}' cannot be read (UnpicklingError); "
        "delete it to restart that job")
    assert set(out.glob("jobs/*.pt")) == finished, "the other students were not stopped"

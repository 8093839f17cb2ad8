"""``mmhal run --executor ray``: the student jobs as tasks on a local two-node Ray cluster that the test starts (a head
and a worker node on this machine, one CPU each), against the local executor; a Ray worker killed while it trains a
student is retried and resumes from the job's epoch checkpoint (engine.rayjobs)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmhal.cli import main

ray = pytest.importorskip("ray")

SETTINGS = ["--student", "weak", "--methods", "unimodal,kd,mmh", "--seeds", "2", "--epochs", "20", "--no-progress",
            "model.width=4", "train.batch_size=8", "train.patience=0", "workers=2"]


#: a cluster of this test only: no usage reports, no token (Ray's token authentication is for clusters others reach)
RAY_ENV_ONLY = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
RAY_ENV = {**os.environ, **RAY_ENV_ONLY}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head and a worker node on this machine (one CPU each), Ray's own test cluster (``ray.cluster_utils``):
    its processes are this fixture's and are stopped with it (``ray stop`` would stop every Ray on the machine)."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in RAY_ENV_ONLY}
    os.environ.update(RAY_ENV_ONLY)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        wait = ("import ray, time\n"
                f"ray.init(address='{cluster.address}', log_to_driver=False)\n"
                "t = time.time()\n"
                "while ray.cluster_resources().get('CPU', 0) < 2 and time.time() - t < 120: time.sleep(0.2)\n"
                "assert ray.cluster_resources().get('CPU', 0) == 2, ray.cluster_resources()\n")
        subprocess.run([sys.executable, "-c", wait], env=RAY_ENV, check=True, capture_output=True, timeout=180)
        yield cluster.address
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _task_pids() -> list[int]:
    """Processes running a student task (Ray names a worker process after the task it runs)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"ray::_train_on_ray" in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _accuracies(run: Path) -> dict:
    res = json.loads((run / "results.json").read_text())["results"]
    return {m: r["accuracy"]["per_seed"] for m, r in res.items()}


@pytest.mark.slow
def test_a_run_on_a_ray_cluster_equals_the_local_run_even_when_a_worker_is_killed(tmp_path, cluster):
    from test_cli_run import _tiny

    data = _tiny(tmp_path / "tiny.npz")
    local = tmp_path / "local"
    assert main(["run", "--data", str(data), "--out", str(local), *SETTINGS]) == 0
    on_ray = tmp_path / "ray"
    env = RAY_ENV
    proc = subprocess.Popen([sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(on_ray), *SETTINGS,
                             "--executor", "ray", "--ray-address", cluster], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.time() + 300
    while killed is None and proc.poll() is None and time.time() < deadline:
        # a student well into training (an epoch checkpoint written): kill the worker that trains it
        if any(on_ray.glob("**/checkpoints/*.pt")):
            for pid in _task_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
                    break
                except OSError:
                    pass
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert killed is not None, "no student task was seen running, so none was killed"
    assert _accuracies(on_ray) == _accuracies(local)
    for job in ("unimodal-seed0", "kd-seed1", "mmh-seed0", "mmh-seed1"):
        a = torch.load(local / "jobs" / f"{job}.pt", weights_only=True)
        b = torch.load(on_ray / "jobs" / f"{job}.pt", weights_only=True)
        assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["val_logits"], b["val_logits"]), job
    assert "Ray: 6 student tasks (1 CPU each) on a cluster of 2 CPUs" in out


def test_ray_mistakes_are_one_sentence(tmp_path, capsys):
    from test_cli_run import _tiny

    data = _tiny(tmp_path / "tiny.npz")
    port = _free_port()  # nothing listens there
    for args, said in ((["--executor", "ray", "--ray-address", f"127.0.0.1:{port}"], "no Ray cluster answers at"),
                       (["--ray-address", f"127.0.0.1:{port}"], "--ray-address is the Ray cluster of --executor ray"),
                       (["--executor", "ray", "--ray-address", "nowhere"], "--ray-address must be host:port")):
        rc = main(["run", "--data", str(data), "--student", "weak", "--out", str(tmp_path / "out"), "--no-progress",
                   *args])
        err = capsys.readouterr().err
        assert rc == 2 and said in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()  # refused before anything was made


def test_without_ray_installed_the_executor_says_how_to_install_it(monkeypatch):
    import builtins

    from mmhal.engine.rayjobs import check_cluster
    from mmhal.errors import UserError

    real = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(UserError, match=r'pip install "mmhal\[ray\]"'):
        check_cluster("")

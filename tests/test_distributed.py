"""Data-parallel `mmhal run` under torchrun (2 CPU processes, gloo): it completes, rank 0 alone writes, and
its first two steps match a single-process run on the same global batches (loss and gradient)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmhal.config import load_config
from mmhal.engine import distributed
from mmhal.engine.loader import EpochBatches
from mmhal.errors import UserError
from test_cli_run import _tiny

SRC = str(Path(__file__).resolve().parents[1] / "src")
ARGS = ["--student", "weak", "--methods", "mmh", "--seeds", "1", "--epochs", "2", "--no-progress",
        "model.width=4", "train.batch_size=32", "train.optimizer=sgd", "train.threads=1", "distill.dad_global=true",
        "learners=[]"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(log: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["MMHAL_LOG_FIRST_STEP"] = str(log)
    return env  # MMHAL_CACHE is this test's own (conftest): both runs share one teacher


def _torchrun(data, out, log, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *ARGS, *extra]
    return subprocess.run(cmd, env=_env(log), capture_output=True, text=True, timeout=300)


def _steps(log: Path, job: str) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["job"] == job]


@pytest.mark.slow
def test_two_process_run_completes_and_its_first_steps_match_one_process(tmp_path):
    data = _tiny(tmp_path / "tiny.npz")
    ddp_log, one_log = tmp_path / "ddp.jsonl", tmp_path / "one.jsonl"
    out = tmp_path / "ddp"
    # First the two-process run: it trains the teacher with DDP and caches it (rank 0) ...
    done = _torchrun(data, out, ddp_log)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher: trained" in done.stderr
    assert done.stderr.count("training 1 students") == 1  # rank 0 alone logs
    assert "on 2 DDP processes" in done.stderr
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) == {"teacher", "mmh"}
    assert (out / "models" / "mmh-seed0.pt").is_file() and (out / "jobs" / "mmh-seed0.pt").is_file()
    # ... then one process on the same global batches with the same teacher.
    # (The cache key holds the world size, so the two-process teacher is named by its file.)
    one = subprocess.run([sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(tmp_path / "one"),
                          *ARGS, "workers=1", f"teacher_path={out / 'models' / 'teacher.pt'}"],
                         env=_env(one_log), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "teacher: loaded from " + str(out / "models" / "teacher.pt") in one.stderr

    got, want = _steps(ddp_log, "mmh seed 0"), _steps(one_log, "mmh seed 0")
    assert [r["step"] for r in got] == [r["step"] for r in want] == [0, 1]  # one line per step: rank 0 writes
    assert got[0]["world_size"] == 2 and want[0]["world_size"] == 1
    for g, w in zip(got, want):
        assert set(g["losses"]) == {"ce", "rad", "dad"}
        assert abs(g["loss"] - w["loss"]) < 1e-5, (g, w)
        for k in w["losses"]:
            assert abs(g["losses"][k] - w["losses"][k]) < 1e-5, (k, g, w)
        # The rank-averaged gradient is the one-process gradient (DAD's gathered rows included);
        # the second step's loss, after an SGD step, checks it again.
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-5), (g, w)

    # --resume of the finished run under torchrun: rank 0 reads the job records, every rank gets them.
    again = _torchrun(data, out, tmp_path / "again.jsonl", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resume: 1 of 1 students already finished" in again.stderr
    assert json.loads((out / "results.json").read_text())["results"] == report["results"]


BASELINES = ["fitnet", "at", "sp", "pkt", "rkd", "crd", "dkd", "mars", "hallucination"]


@pytest.mark.slow
def test_every_baseline_runs_under_two_processes_and_its_first_steps_match_one_process(tmp_path):
    """Each baseline's first two steps (losses and rank-averaged gradient) under torchrun equal one process's:
    the relational losses gather the global batch, CRD draws, normalises and updates its memory as one process."""
    data = _tiny(tmp_path / "tiny.npz")
    args = [a if a != "mmh" else ",".join(BASELINES) for a in ARGS]
    args[args.index("--epochs") + 1] = "1"
    ddp_log, one_log, out = tmp_path / "ddp.jsonl", tmp_path / "one.jsonl", tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *args]
    done = subprocess.run(cmd, env=_env(ddp_log), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(BASELINES) <= set(json.loads((out / "results.json").read_text())["results"])
    one = subprocess.run([sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(tmp_path / "one"),
                          *args, "workers=1", f"teacher_path={out / 'models' / 'teacher.pt'}"],
                         env=_env(one_log), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    for name in BASELINES:
        got, want = _steps(ddp_log, f"{name} seed 0"), _steps(one_log, f"{name} seed 0")
        assert [r["step"] for r in got] == [r["step"] for r in want] == [0, 1], name
        for g, w in zip(got, want):
            assert set(g["losses"]) == set(w["losses"]), name
            for k in w["losses"]:
                # (float32 sums in another row order: a shard-only loss would be off by far more)
                assert g["losses"][k] == pytest.approx(w["losses"][k], rel=1e-4, abs=1e-6), (name, k, g, w)
            assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-4), (name, g, w)


def _steps_of(n, batch, world, seed=3, epoch=0):
    """Per step, the sorted union of the W ranks' batches."""
    ranks = [EpochBatches(n, batch, seed, r, world) for r in range(world)]
    for s in ranks:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and all(len(b) == len(s) for b, s in zip(per_rank, ranks))
    return [sorted(i for b in step for i in b) for step in zip(*per_rank)], per_rank


def test_the_ranks_batches_of_a_step_together_are_the_single_process_batch():
    one, _ = _steps_of(108, 32, 1)
    for world in (2, 4):
        steps, per_rank = _steps_of(108, 32, world)
        assert steps == one  # same samples in every global batch: [32, 32, 32, 12]
        assert all(len({len(b[k]) for b in per_rank}) == 1 for k in range(len(steps)))  # equal shares
    assert [len(b) for b in one] == [32, 32, 32, 12]
    steps, _ = _steps_of(109, 32, 4)  # 109 = 4 * 27 + 1: the one sample left over is not trained on
    assert [len(b) for b in steps] == [32, 32, 32, 12]
    assert len(set(i for b in steps for i in b)) == 108
    assert _steps_of(33, 32, 1)[0] == [_steps_of(33, 32, 1)[0][0]] and len(_steps_of(33, 32, 1)[0][0]) == 32  # 1 left: dropped
    assert [len(b) for b in _steps_of(34, 32, 2)[0]] == [32, 2]  # a last global batch of 2 (1 per rank) is kept


def test_evaluation_shards_cover_every_sample_once():
    for n in (0, 1, 7, 36):
        ranges = [distributed.eval_range(n, distributed.DistContext(r, 3, r)) for r in range(3)]
        assert [i for a, b in ranges for i in range(a, b)] == list(range(n))


def test_a_global_batch_that_does_not_split_over_the_ranks_is_a_user_error():
    distributed.check_batch_size(32, 1)
    distributed.check_batch_size(32, 4)
    with pytest.raises(UserError, match="must be divisible by the 3 processes"):
        distributed.check_batch_size(32, 3)


def test_without_torchrun_there_is_no_process_group(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    with distributed.session("cpu") as job:
        assert not job.enabled and job.is_main and not torch.distributed.is_initialized()


@pytest.mark.parametrize("value, want", [("auto", "auto"), ("true", "true"), ("False", "false"), ("maybe", None)])
def test_dad_global_accepts_auto_true_false(value, want):
    if want is None:
        with pytest.raises(UserError, match="distill.dad_global must be auto, true or false"):
            load_config(None, [f"distill.dad_global={value}"])
    else:
        assert load_config(None, [f"distill.dad_global={value}"]).distill.dad_global == want


@pytest.mark.slow
def test_the_documented_multi_node_command_runs_as_two_nodes_on_one_machine(tmp_path):
    """`torchrun --nnodes=2 --rdzv-backend=c10d ...` (docs/scaling.md), started twice as two 'nodes' of one
    process each, meets at one rendezvous and finishes one run: one table, one results.json."""
    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=mmhal-test", "-m", "mmhal", "run", "--data", str(data),
           "--out", str(out), *ARGS]
    nodes = [subprocess.Popen(cmd, env=_env(tmp_path / f"node{i}.jsonl"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in nodes]
    for p, (_, err) in zip(nodes, outputs):
        assert p.returncode == 0, err[-3000:]
    assert sum("results:" in o for o, _ in outputs) == 1  # rank 0, on whichever node it landed, prints
    assert sum("on 2 DDP processes" in e for _, e in outputs) == 1
    assert set(json.loads((out / "results.json").read_text())["results"]) == {"teacher", "mmh"}

"""Clip runs as a user starts them (`python -m mmhal run` on a clip manifest of frame folders, frames decoded in
DataLoader worker processes): a run killed mid-way (SIGKILL) resumes and ends bit for bit as the uninterrupted
run, and a two-process torchrun run's first steps are the single-process run's on the same global batches.

Both depend on the clip policy being a pure function of (seed, epoch, sample index): the resumed process and the
other rank draw the same clips and crops as the uninterrupted single process."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clip_fixtures import write_clip_manifest
from test_distributed import _free_port, _steps
from test_resume import kill_at_first_checkpoint

SRC = str(Path(__file__).resolve().parents[1] / "src")
CLIP = ["data.clip.length=4", "data.clip.size=16,16", "data.clip.num_test_clips=2", "data.depth_range=1000,3500"]
COMMON = ["--student", "rgb", "--no-progress", "model.width=4", "train.batch_size=4", "train.threads=1",
          "train.loader_workers=1", *CLIP]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_clip_manifest(tmp_path_factory.mktemp("clips") / "d", n_per_class=6, classes=4,
                               modalities=("rgb", "depth"), frames=6)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env  # MMHAL_CACHE is this test's own (conftest)


def _models(out: Path) -> dict:
    return {p.name: torch.load(p, map_location="cpu", weights_only=True) for p in sorted((out / "models").glob("*-seed*.pt"))}


EPOCHS = 4
# with dropout: a resumed training draws the masks the uninterrupted one drew (engine.loop.fit, samples.private_generator)
RESUME = ["--methods", "unimodal,mmh", "--seeds", "1", "--epochs", str(EPOCHS), "workers=1", "model.dropout=0.5", *COMMON]


def _run(data, out, *extra):
    return [sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *RESUME, *extra]


def test_a_killed_clip_run_resumes_and_ends_exactly_as_the_uninterrupted_run(tmp_path, manifest):
    ref = tmp_path / "ref"
    done = subprocess.run(_run(manifest, ref), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "run"
    kill_at_first_checkpoint(_run(manifest, out), _env(), out)
    time.sleep(1.0)  # the orphaned loader worker sees its parent gone and exits

    resumed = subprocess.run(_run(manifest, out, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "teacher: loaded from cache" in resumed.stderr
    line = next(l for l in resumed.stderr.splitlines() if l.startswith("resume:"))
    assert int(re.search(r"(\d+) continue from an epoch checkpoint", line).group(1)) >= 1, line

    report = json.loads((out / "results.json").read_text())["results"]
    expected = json.loads((ref / "results.json").read_text())["results"]
    assert set(report) == {"teacher", "unimodal", "mmh"}
    for name, r in expected.items():
        for metric in ("accuracy", "macro_f1", "top5_accuracy"):
            if metric in r:
                assert report[name][metric]["per_seed"] == r[metric]["per_seed"], (name, metric)
    got, want = _models(out), _models(ref)
    assert set(got) == set(want) == {f"{m}-seed{s}.pt" for m in ("unimodal", "mmh") for s in (0,)}
    for job, ck in want.items():
        assert [h["epoch"] for h in got[job]["history"]] == list(range(1, EPOCHS + 1)), job
        assert got[job]["history"] == ck["history"], job
        assert all(torch.equal(got[job]["model"][k], v) for k, v in ck["model"].items()), job
    # the per-view test logits (2 clips x the crops per sample, averaged) are the uninterrupted run's too
    for job in want:
        a = torch.load(out / "jobs" / job, weights_only=True)["logits"]
        b = torch.load(ref / "jobs" / job, weights_only=True)["logits"]
        assert torch.equal(a, b), job


DDP = ["--methods", "mmh", "--seeds", "1", "--epochs", "2", "train.optimizer=sgd", "distill.dad_global=true", *COMMON]


def test_a_two_process_clip_run_completes_and_its_first_steps_match_one_process(tmp_path, manifest):
    ddp_log, one_log, out = tmp_path / "ddp.jsonl", tmp_path / "one.jsonl", tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "-m", "mmhal", "run", "--data", str(manifest), "--out", str(out), *DDP]
    done = subprocess.run(cmd, env=_env(MMHAL_LOG_FIRST_STEP=str(ddp_log)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 DDP processes" in done.stderr
    assert done.stderr.count("training 1 students") == 1  # rank 0 alone logs
    res = json.loads((out / "results.json").read_text())["results"]
    assert set(res) == {"teacher", "mmh"} and "top5_accuracy" not in res["mmh"]  # 4 classes: no top-5

    one = subprocess.run([sys.executable, "-m", "mmhal", "run", "--data", str(manifest), "--out", str(tmp_path / "one"),
                          *DDP, "workers=1", f"teacher_path={out / 'models' / 'teacher.pt'}"],
                         env=_env(MMHAL_LOG_FIRST_STEP=str(one_log)), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    got, want = _steps(ddp_log, "mmh seed 0"), _steps(one_log, "mmh seed 0")
    assert [r["step"] for r in got] == [r["step"] for r in want] == [0, 1]
    assert got[0]["world_size"] == 2 and want[0]["world_size"] == 1
    for g, w in zip(got, want):
        assert set(g["losses"]) == {"ce", "rad", "dad"}
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-5), (g, w)
        for k in w["losses"]:
            assert g["losses"][k] == pytest.approx(w["losses"][k], rel=1e-5, abs=1e-6), (k, g, w)
        # (3-D convolutions sum many more products than the HAPT test's networks: seen 3e-6 apart, allowed 1e-4;
        # a rank's gradient left out or averaged wrongly moves the norm by far more)
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-4), (g, w)

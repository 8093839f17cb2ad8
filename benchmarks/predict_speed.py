"""How fast is ``mmhal predict``? Times it on N HAPT windows (default 10,000), after loading.

A run folder on HAPT (student gyro, the default model) is given with ``--run``; when that folder holds no
finished run (or without ``--run``: in a temporary folder), one is trained first with ``mmhal run --epochs 1
--seeds 1 --methods mmh`` (its accuracy does not matter here, its network's size does: the default
``model.width=12``). The first N windows of HAPT (every split) are
written to an ``.npz`` file, then:

  load     ``open_run`` + the saved networks + reading the ``.npz`` (only the student's modality)
  predict  the forward passes (``--batch-size``, default the CLI's 1024), softmax, the mean over seeds
  csv      formatting the CSV and writing it atomically
  cli      the whole ``mmhal predict RUN --data N.npz`` in this process (imports already done)

and checks that ``mmhal predict RUN --data hapt`` (every window) reproduces the run's saved test logits
(``jobs/<method>-seed<s>.pt``) on the test windows bit for bit. The target: predict + csv <= 5 s for
10,000 windows on the project's CPU.

    python benchmarks/predict_speed.py                       # trains a 1-epoch run first (~2-5 min on 2 cores)
    python benchmarks/predict_speed.py --run runs/bench-predict --threads 1 --json predict.json

Use ``--threads 1`` on a machine that other jobs share: two OpenMP threads on oversubscribed cores ran
this forward pass 3-12x slower than one thread here.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmhal.cli import main as cli_main
from mmhal.config import DataConfig
from mmhal.data.base import load_dataset
from mmhal.data.npz import save_npz
from mmhal.engine.artifacts import choose_method, open_run
from mmhal.engine.predict import (load_networks, open_inputs, pad_threshold, predict_logits, predictions_csv,
                                  probabilities)
from mmhal.utils import atomic_write_text


def train_tiny_run(out: Path) -> Path:
    rc = cli_main(["run", "--epochs", "1", "--seeds", "1", "--methods", "mmh", "--out", str(out), "--no-progress"])
    if rc != 0:
        raise SystemExit("the 1-epoch HAPT run failed")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a HAPT run folder; a 1-epoch run is trained into it when it holds no finished run "
                                 "(default: a temporary folder)")
    p.add_argument("--method", help="default: the run's recommendation")
    p.add_argument("--n", type=int, default=10_000, help="windows to predict (default 10,000)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (the best is reported)")
    p.add_argument("--json", help="write the figures to this file")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_path = Path(a.run) if a.run else folder / "run"
        if not (run_path / "results.json").is_file():
            train_tiny_run(run_path)
        data = load_dataset(DataConfig(name="hapt"))
        if a.n > len(data.labels):
            raise SystemExit(f"HAPT has {len(data.labels)} windows, fewer than --n {a.n}")
        npz = folder / f"hapt-{a.n}.npz"
        save_npz(npz, {m: x[:a.n] for m, x in data.modalities.items()}, data.labels[:a.n],
                 class_names=data.class_names)

        figures = {"load": [], "predict": [], "csv": [], "cli": []}
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            run = open_run(run_path)
            method = choose_method(run, a.method, ensembles=True)
            nets = load_networks(run, method)
            inputs = open_inputs(str(npz), None, run, nets)
            t1 = time.perf_counter()
            logits = predict_logits(nets, inputs, a.batch_size)
            probs = probabilities(logits)
            t2 = time.perf_counter()
            text = predictions_csv(nets, probs, inputs.labels, pad_threshold(run, nets))
            atomic_write_text(folder / "preds.csv", text)
            t3 = time.perf_counter()
            rc = cli_main(["predict", str(run_path), "--data", str(npz), "--out", str(folder / "cli.csv"),
                           "--overwrite", "--no-progress", "--batch-size", str(a.batch_size)]
                          + (["--method", a.method] if a.method else []))
            t4 = time.perf_counter()
            assert rc == 0
            for k, v in zip(figures, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                figures[k].append(v)

        # Reproduction: every HAPT window through `predict`, the test windows against the run's own logits.
        full = open_inputs("hapt", None, run, nets)
        z = predict_logits(nets, full, a.batch_size)
        test = data.indices("test")
        exact = []
        for i, s in enumerate(nets.seeds):
            job = run_path / "jobs" / f"{method}-seed{s}.pt"
            ref = torch.load(job, map_location="cpu", weights_only=True)["logits"]
            exact.append(bool(np.array_equal(z[i, test], ref.numpy())))

    best = {k: min(v) for k, v in figures.items()}
    result = {
        "n": a.n, "method": method, "seeds": nets.seeds, "batch_size": a.batch_size, "threads": torch.get_num_threads(),
        "seconds_best_of": a.repeats, **{f"{k}_s": round(v, 3) for k, v in best.items()},
        "predict_plus_csv_s": round(best["predict"] + best["csv"], 3),
        "windows_per_s": round(a.n / best["predict"]), "test_logits_reproduced_exactly": exact,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

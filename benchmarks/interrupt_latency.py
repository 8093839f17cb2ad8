"""Seconds from Ctrl-C (SIGINT) to the end of `mmhal run`, while students train in 2 worker processes.

    python benchmarks/interrupt_latency.py --repeats 3
    python benchmarks/interrupt_latency.py --repeats 3 --load 2 --signal TERM   # two busy processes beside it

Starts `python -m mmhal run` on a tiny synthetic .npz (3 classes; 2 methods x 2 seeds x 40 epochs, 2 workers: the
students train for well over 10 s), waits until a student has written its first epoch checkpoint, sends SIGINT to
the process as `kill -INT` would, and times until the process has ended. Prints one line per repeat (seconds and
exit code) and the median. The teacher is trained once, before the first repeat, into a temporary cache.
``--load N`` keeps N other processes spinning on the CPU for the whole measurement (a busy node); ``--signal TERM``
sends SIGTERM (a cluster scheduler's) instead of SIGINT (Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmhal.data.npz import save_npz

ARGS = ["--student", "weak", "--methods", "unimodal,mmh", "--seeds", "2", "--epochs", "40", "--no-progress",
        "model.width=4", "train.batch_size=32", "train.threads=1", "workers=2"]


def tiny(path: Path, n: int = 180) -> Path:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    weak = rng.normal(size=(n, 2, 16)).astype(np.float32)
    weak[:, 0] += 0.5 * y[:, None]
    strong = rng.normal(size=(n, 5)).astype(np.float32)
    strong[np.arange(n), y] += 3.0
    save_npz(path, {"weak": weak, "strong": strong}, y, groups=np.arange(n) // 6, class_names=["a", "b", "c"])
    return path


def one(data: Path, out: Path, env: dict, signum: int = signal.SIGINT) -> tuple[float, int]:
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(out), *ARGS],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while not any(out.glob("checkpoints/*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        raise SystemExit(f"the run ended before it could be interrupted (exit {proc.returncode}); see {out}.log")
    t0 = time.perf_counter()
    os.kill(proc.pid, signum)
    proc.wait(timeout=120)
    return time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--load", type=int, default=0, help="other CPU-bound processes running meanwhile")
    ap.add_argument("--signal", choices=["INT", "TERM"], default="INT")
    args = ap.parse_args()
    signum = getattr(signal, f"SIG{args.signal}")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        measure(args.repeats, signum)
    finally:
        for p in spinners:
            p.kill()


def measure(repeats: int, signum: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "MMHAL_CACHE": str(tmp / "cache")}
        data = tiny(tmp / "tiny.npz")
        # the teacher once, so that every repeat interrupts the students
        warm = [a for a in ARGS if a != "workers=2"]
        warm[warm.index("--methods") + 1], warm[warm.index("--seeds") + 1] = "unimodal", "1"
        subprocess.run([sys.executable, "-m", "mmhal", "run", "--data", str(data), "--out", str(tmp / "warm"),
                        *warm, "workers=1"], env=env, check=True, capture_output=True)
        times = []
        for i in range(repeats):
            took, code = one(data, tmp / f"run{i}", env, signum)
            times.append(took)
            print(f"repeat {i}: {took:.2f} s from {signal.Signals(signum).name} to exit, exit code {code}, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        print(f"median {statistics.median(times):.2f} s over {len(times)} repeats; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

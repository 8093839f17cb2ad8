"""Which torch thread count trains fastest, on an idle machine and on one whose cores other jobs keep busy?

Times whole ``mmhal run`` commands (a fresh teacher cache each time, so the teacher trains too, as for a new
user) under each thread setting, in two conditions:

  idle   nothing else runs (check ``uptime`` first: the script prints the load average before each run)
  busy   ``--busy K`` other processes keep the cores busy for the whole run: each a one-thread PyTorch job
         multiplying 256x256 matrices in a loop (another training on the same machine); K = 2 on 2 cores
         gives a load average of about 4 with mmhal's own two processes

Settings (``--settings``, comma-separated): ``default`` (mmhal's own choice: no thread setting), ``before``
(the default of another checkout, ``--before DIR``: e.g. a worktree of an earlier commit, run with its own ``src``),
``t1`` (``train.threads=1``: every training process, the student workers too, on one thread), ``t2``
(``train.threads=2``), ``omp1`` (``OMP_NUM_THREADS=1`` in the environment), ``tN`` for any N, and
``nolearners`` (``learners=[]``: without the standard learners, to measure what they add to a run). The runs of one repetition go in alternation (default, t1, t2, default, t1, t2, ...) so that a
change of the machine's speed during the benchmark hits every setting alike; ``--repeats R`` repetitions,
median and range reported per (condition, setting), with the ratio to the fastest setting of that condition.

    python benchmarks/threads.py                                   # the default demo, idle and busy, 1 repeat
    python benchmarks/threads.py --args "--seeds 2" --repeats 3    # a shorter run (teacher + 6 students)
    python benchmarks/threads.py --conditions busy --busy 3 --settings default,t1
    python benchmarks/threads.py --json threads.json
    python benchmarks/threads.py --settings default,nolearners --conditions idle --repeats 3 \
        --args "--data data/mfeat.npz --student fou"                # what the standard learners add
    git worktree add /tmp/before c4cdea5 && python benchmarks/threads.py --settings default,before --before /tmp/before

Prints the CPU, torch's version and build, and the machine's load before each run. Figures depend on the CPU
and on what else the machine does: compare settings only within one invocation.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOG = """
import torch
torch.set_num_threads(1)
a = torch.randn(256, 256)
while True:
    a = (a @ a).tanh_()
"""


def _backend(torch) -> str:
    """torch's intra-op parallel backend, e.g. 'OpenMP 201511'."""
    info = torch.__config__.parallel_info()
    found = re.search(r"^(OpenMP [^\n]+|Intel\(R\) oneAPI TBB[^\n]*|native thread pool[^\n]*)$", info, re.M)
    return found.group(1).strip() if found else "parallel backend unknown"


def start_hogs(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(k)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for h in hogs:
        h.kill()
    for h in hogs:
        h.wait()


BEFORE: dict = {"src": None}


def setting_args(setting: str) -> tuple[list[str], dict]:
    """(extra overrides, extra environment) of a setting name."""
    if setting == "default":
        return [], {}
    if setting == "before":
        if BEFORE["src"] is None:
            raise SystemExit("the setting 'before' needs --before DIR (a checkout of the mmhal to compare with)")
        return [], {"PYTHONPATH": str(Path(BEFORE["src"]) / "src")}
    if setting == "omp1":
        return [], {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if setting == "nolearners":
        return ["learners=[]"], {}
    m = re.fullmatch(r"t(\d+)", setting)
    if not m:
        raise SystemExit(f"unknown setting '{setting}': use default, omp1, nolearners or tN (e.g. t1, t2)")
    return [f"train.threads={m.group(1)}"], {}


def one_run(run_args: list[str], setting: str, workdir: Path) -> dict:
    extra, env_extra = setting_args(setting)
    out = Path(tempfile.mkdtemp(dir=workdir)) / "run"
    cache = Path(tempfile.mkdtemp(dir=workdir))
    env = {**os.environ, "MMHAL_CACHE": str(cache), **env_extra}
    from mmhal.config import default_cache_dir

    for converted in Path(default_cache_dir()).glob("*.npz"):  # converted datasets are reused, teachers are not
        (cache / converted.name).symlink_to(converted)
    cmd = [sys.executable, "-m", "mmhal", "run", "--out", str(out), "--no-progress", *run_args, *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({setting}):\n{done.stderr[-2000:]}")
    teacher = re.search(r"teacher: trained in ([\d.]+)s", done.stderr)
    # the run's printed table and recommendation, kept in --json (what README's example output is taken from)
    return {"seconds": seconds, "teacher_seconds": float(teacher.group(1)) if teacher else None, "stdout": done.stdout}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="default,t1,t2")
    ap.add_argument("--conditions", default="idle,busy")
    ap.add_argument("--busy", type=int, default=2, help="processes that keep the cores busy in 'busy' (default 2)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--args", default="", help="arguments for mmhal run (default: none, the default demo)")
    ap.add_argument("--json", help="write every timing to this file")
    ap.add_argument("--before", help="a checkout of another mmhal (e.g. a worktree of an earlier commit), for 'before'")
    a = ap.parse_args()
    BEFORE["src"] = a.before
    import torch
    from step_overhead import device_name  # this folder: the CPU's model name

    cpu = device_name(torch.device("cpu"))
    settings = a.settings.split(",")
    from mmhal.config import RunConfig
    from mmhal.data.base import load_dataset

    load_dataset(RunConfig().data)  # converts and caches the default dataset once, outside the timed runs
    print(f"CPU: {cpu}; {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} allowed; torch "
          f"{torch.__version__} ({_backend(torch)}); default threads "
          f"{torch.get_num_threads()}; python {platform.python_version()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for condition in a.conditions.split(","):
            hogs = start_hogs(a.busy) if condition == "busy" else []
            try:
                time.sleep(2 if hogs else 0)
                for r in range(a.repeats):
                    for s in settings:
                        load = os.getloadavg()[0]
                        res = one_run(a.args.split(), s, Path(tmp))
                        rows.append({"condition": condition, "setting": s, "repeat": r, "load_before": load, **res})
                        t = res["teacher_seconds"]
                        print(f"{condition:>5} {s:>8} repeat {r}: {res['seconds']:7.1f} s (teacher "
                              f"{'-' if t is None else f'{t:.1f} s'}; load before {load:.2f})", flush=True)
            finally:
                stop_hogs(hogs)
    print("\ncondition  setting     median s   range s            teacher s   x fastest")
    for condition in a.conditions.split(","):
        med = {s: statistics.median(x["seconds"] for x in rows if x["condition"] == condition and x["setting"] == s)
               for s in settings}
        best = min(med.values())
        for s in settings:
            xs = [x for x in rows if x["condition"] == condition and x["setting"] == s]
            ts = [x["teacher_seconds"] for x in xs if x["teacher_seconds"] is not None]
            lo, hi = min(x["seconds"] for x in xs), max(x["seconds"] for x in xs)
            print(f"{condition:<10} {s:<10} {med[s]:9.1f}   {lo:7.1f}-{hi:<7.1f}   "
                  f"{statistics.median(ts) if ts else float('nan'):9.1f}   {med[s] / best:8.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu, "torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    mp.freeze_support()
    sys.exit(main())

"""How long ``mmhal report`` takes on a finished HAPT run (target: at most 20 s on a 2-core CPU).

Makes the run once if it is not there (HAPT is the built-in default; about 2 minutes on 2 idle cores):

    mmhal run --epochs 2 --seeds 2 --methods all --out /tmp/hapt-report-run --no-progress

then times ``mmhal report`` on it ``--repeats`` times (each a fresh process, as a user runs it, into a new
folder) and prints the wall-clock time, the CPU time of the process (user + system, all threads), and the
load average: on a shared machine the wall time grows with the load, the CPU time much less.

    python benchmarks/report_speed.py [--run /tmp/hapt-report-run] [--repeats 3] [--no-regions]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def mmhal(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmhal", *args]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="/tmp/hapt-report-run", help="the finished run to report on (made when missing)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-regions", action="store_true", help="time the report without the region figure")
    args = p.parse_args()
    run = Path(args.run)
    if not (run / "results.json").is_file():
        print(f"making the run {run} ...", flush=True)
        subprocess.run(mmhal("run", "--epochs", "2", "--seeds", "2", "--methods", "all", "--out", str(run),
                             "--no-progress"), check=True)
    walls, cpus = [], []
    for i in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="mmhal-report-speed-")) / "report"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(mmhal("report", str(run), "--out", str(out), "--no-progress",
                             *(["--no-regions"] if args.no_regions else [])), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        walls.append(wall)
        cpus.append(cpu)
        print(f"repeat {i + 1}: wall {wall:.1f} s, CPU {cpu:.1f} s, load average {os.getloadavg()[0]:.1f} "
              f"({os.cpu_count()} cores)", flush=True)
        shutil.rmtree(out.parent, ignore_errors=True)
    print(f"best of {args.repeats}: wall {min(walls):.1f} s, CPU {min(cpus):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

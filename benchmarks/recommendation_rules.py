"""Judge the recommendation rules by what they would have deployed.

For every finished run folder given (its ``results.json``), each rule of ``mmhal.engine.results.recommend`` picks
a method on validation alone; the table shows that pick and its **test** difference against ``unimodal`` (paired
by seed, 95 % t-interval with n - 1 d.f.; ``*`` = significant). A rule that deploys harm shows a significant
negative difference; one that throws gains away shows ``unimodal`` where a method was significantly better on
test. The last rows count, per rule, the settings where its pick was significantly better, not significantly
different, and significantly worse than ``unimodal`` on test.

    python benchmarks/recommendation_rules.py runs/sci/*-base-s5
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mmhal.engine.results import RULES, recommend  # noqa: E402


def _diff(r: dict) -> str:
    vs = r.get("vs_unimodal")
    if vs is None:
        return "0 (unimodal)"
    if vs["ci95"] is None:
        return f"{100 * vs['mean_diff']:+.2f}"
    return (f"{100 * vs['mean_diff']:+.2f} [{100 * vs['ci95'][0]:+.2f}, {100 * vs['ci95'][1]:+.2f}]"
            + ("*" if vs["significant"] else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="finished run folders")
    a = ap.parse_args()
    lines = ["| run | methods | " + " | ".join(f"rule `{r}`: pick, test difference [95 % CI]" for r in RULES) + " |",
             "|---|---|" + "---|" * len(RULES)]
    tally = {r: [0, 0, 0] for r in RULES}
    for folder in a.runs:
        report = json.loads((Path(folder) / "results.json").read_text())
        res = report["results"]
        cells = []
        for rule in RULES:
            rec = recommend(res, rule)
            r = res[rec["method"]]
            cells.append(f"{rec['method']}: {_diff(r)}")
            vs = r.get("vs_unimodal")
            k = 1 if vs is None or not vs["significant"] else (0 if vs["mean_diff"] > 0 else 2)
            tally[rule][k] += 1
        methods = ",".join(n for n in res if n != "teacher")
        lines.append(f"| {Path(folder).name} | {methods} | " + " | ".join(cells) + " |")
    for rule in RULES:
        b, n, w = tally[rule]
        lines.append(f"| rule `{rule}` | | significantly better {b}, not significantly different {n}, "
                     f"significantly worse {w} |" + " |" * (len(RULES) - 1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

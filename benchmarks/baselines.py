"""MMH against the field's baselines, every method with the same tuning budget; writes the tables of BASELINES.md.

For each setting (a dataset and a deployed student, ``science.SETTINGS``) in ``--root/<setting>/``:

1. **Tune** (validation only): ``mmhal tune --methods M --trials T --tune-seeds 2`` for every method of
   ``--methods`` that no ``tune*/tune.json`` of the setting's folder has tuned yet (one call for all of
   them; a folder tuned earlier, e.g. before a method was added, is kept and the new methods go to
   ``tune-2/`` ...). Every method gets trial 0 = its defaults plus T - 1 random draws of the schedule and
   its own ``tune_space``, each trial 2 students (seeds 1000, 1001, never the reporting seeds).
2. **Recipe**: the resolved configuration of the first tune folder with ``method_overrides`` = each
   method's best trial (by mean validation accuracy over the tuning seeds) -> ``recipe.yaml``.
   ``--transfer-from SETTING`` uses that setting's best trials instead of tuning (same budget for every
   method, spent on the other setting's validation split; the tables say so).
3. **Run**: ``mmhal run --config recipe.yaml --methods M,hallucination-fusion,unimodal-ensemble --seeds N``
   -> ``run/`` (reporting seeds 0..N-1; ``results.json`` reused when present).
4. **Table**: per method, validation accuracy and its paired difference against the tuned unimodal
   student, test accuracy (mean +- sd), the paired test difference with its 95 % t-interval (n - 1 d.f.),
   p, wins/ties/losses over seeds, the share of the teacher-unimodal gap recovered, and which trial won.

    python benchmarks/baselines.py --settings hapt-gyro --seeds 10 --root runs/baselines
    python benchmarks/baselines.py --settings cellseg-tubulin,mfeat-fou --seeds 5 --root runs/baselines --data-dir data
    python benchmarks/baselines.py --settings hapt-gyro,hapt-acc --root runs/baselines --table-only --md out.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from science import SETTINGS  # noqa: E402

from mmhal import stats  # noqa: E402

METHODS = "unimodal,kd,mmh,fitnet,at,sp,pkt,rkd,crd,dkd,mars,hallucination"
EXTRA = ["hallucination-fusion", "unimodal-ensemble"]  # reported too: both are two networks


def _mmhal(args: list[str], what: str) -> None:
    t0 = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] mmhal {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "mmhal", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    print(f"    {time.time() - t0:.0f} s", flush=True)


def data_args(setting: str, data_dir: Path) -> list[str]:
    data, student, extra = SETTINGS[setting]
    return ["--data", data if data == "hapt" else str(data_dir / data), "--student", student, *extra]


def tuned(folder: Path) -> dict[str, dict]:
    """method -> its best trial ({"trial", "settings", "mean_val_accuracy", "folder"}) over the tune folders."""
    best: dict[str, dict] = {}
    for t in sorted(folder.glob("tune*/tune.json")):
        for method, b in json.loads(t.read_text())["best"].items():
            best.setdefault(method, {**b, "folder": t.parent.name})
    return best


def applicable(setting: str, methods: list[str], args) -> list[str]:
    """``methods`` without those that cannot run on the setting's data (``at`` on vectors, ``dkd`` on 2
    classes), as ``mmhal run --methods all`` decides it (``engine.run.applicable_methods``)."""
    from mmhal.config import load_config
    from mmhal.engine.run import applicable_methods, load_run_data

    data, student = SETTINGS[setting][0], SETTINGS[setting][1]
    path = data if data == "hapt" else str(args.data_dir / data)
    cfg = load_config(None, [f"data.name={path}", f"student={student}"])
    cfg.methods = ["all"]
    data_obj, _, student_mods, _ = load_run_data(cfg)
    keep, _ = applicable_methods(cfg, data_obj, student_mods, list(methods), list(methods),
                                 lambda line: print(f"    {setting}: {line}", flush=True))
    return keep


def tune(setting: str, methods: list[str], args) -> dict[str, dict]:
    folder = args.root / setting
    have = tuned(folder)
    missing = [m for m in methods if m not in have]
    if missing:
        n = len(list(folder.glob("tune*/tune.json")))
        out = folder / ("tune" if n == 0 else f"tune-{n + 1}")
        _mmhal(["tune", *data_args(setting, args.data_dir), "--methods", ",".join(missing), "--trials",
                str(args.trials), "--tune-seeds", "2", "--out", str(out), "--no-progress"],
               f"{setting}: tuning {', '.join(missing)}")
        have = tuned(folder)
    return {m: have[m] for m in methods}


def recipe(setting: str, best: dict[str, dict], source: str, args) -> Path:
    folder = args.root / source
    first = sorted(folder.glob("tune*/tuned.yaml"))[0]
    cfg = yaml.safe_load(first.read_text())
    cfg["method_overrides"] = {m: b["settings"] for m, b in best.items() if b["settings"]}
    path = args.root / setting / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(setting: str, methods: list[str], args) -> dict:
    folder = args.root / setting
    res = folder / "run" / "results.json"
    if not res.is_file():
        methods = applicable(setting, methods, args)
        source = args.transfer_from or setting
        best = tuned(args.root / source) if args.transfer_from else tune(setting, methods, args)
        missing = [m for m in methods if m not in best]
        if missing:
            raise SystemExit(f"{source} has no tuning of {', '.join(missing)}")
        path = recipe(setting, {m: best[m] for m in methods}, source, args)
        (folder / "tuned_on").write_text(source + "\n")
        extra = [e for e in args.extra.split(",") if e]
        _mmhal(["run", "--config", str(path), *data_args(setting, args.data_dir), "--methods",
                ",".join(methods + extra), "--seeds", str(args.seeds), "--out", str(folder / "run"), "--no-progress",
                "--overwrite"], f"{setting}: the run")
    return json.loads(res.read_text())


def _pct(x) -> str:
    return f"{100 * x:+.2f}"


def _diff(vs) -> str:
    if vs["ci95"] is None:
        return _pct(vs["mean_diff"])
    star = "*" if vs["significant"] else ""
    return f"{_pct(vs['mean_diff'])} [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]{star}"


def _gap(g) -> str:
    return "undef." if g is None else f"{100 * g['mean']:.0f} % [{100 * g['ci95'][0]:.0f}, {100 * g['ci95'][1]:.0f}]"


def table(setting: str, report: dict, best: dict[str, dict], source: str) -> str:
    r = report["results"]
    uni, t = r["unimodal"], r["teacher"]
    n = len(report["seeds"])
    lines = [f"### {setting} ({n} seeds; settings tuned on {source}'s validation split)", "",
             f"Teacher: validation {100 * t['val_accuracy']['mean']:.2f} %, test {100 * t['accuracy']['mean']:.2f} %.", "",
             "| method | nets | tuned trial | val acc % | val diff vs unimodal [95 % CI] | test acc % (mean ± sd) | "
             "test diff vs unimodal [95 % CI] | p | W/T/L | gap recovered (test) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted((m for m in r if m != "teacher"), key=lambda m: (m != "unimodal", -r[m]["val_accuracy"]["mean"]))
    for m in order:
        e = r[m]
        trial = best.get(m, {}).get("trial")
        trial = "-" if trial is None else ("0 (defaults)" if trial == 0 else str(trial))
        acc = e["accuracy"]
        if m == "unimodal":
            val, test, p, wtl, gap = "", "", "", "", ""
        else:
            vs_val = stats.paired(e["val_accuracy"]["per_seed"], uni["val_accuracy"]["per_seed"])
            vs = e["vs_unimodal"]
            val, test = _diff(vs_val), _diff(vs)
            p = "" if vs["p_value"] is None else f"{vs['p_value']:.3f}"
            wtl = f"{vs['wins']}/{vs['ties']}/{vs['losses']}"
            gap = _gap(e.get("gap_recovered"))
        lines.append(f"| {m} | {e.get('networks', 1)} | {trial} | {100 * e['val_accuracy']['mean']:.2f} | {val} | "
                     f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} | {test} | {p} | {wtl} | {gap} |")
    rec = report.get("recommendation") or {}
    lines += ["", f"Validation-only recommendation of the run: `{rec.get('method')}`.", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="hapt-gyro", help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--extra", default=",".join(EXTRA),
                   help="two-network models reported beside --methods ('' for none)")
    p.add_argument("--trials", type=int, default=4, help="tuning trials per method (trial 0 = defaults)")
    p.add_argument("--root", type=Path, default=Path("runs/baselines"))
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the .npz files of datasets/ are")
    p.add_argument("--transfer-from", help="use this setting's tuned settings instead of tuning (same budget)")
    p.add_argument("--table-only", action="store_true", help="tabulate the finished runs only")
    p.add_argument("--md", type=Path, help="also write the tables to this file")
    args = p.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = []
    for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
        if setting not in SETTINGS:
            print(f"baselines: unknown setting '{setting}'; known: {', '.join(SETTINGS)}", file=sys.stderr)
            return 2
        if args.table_only:
            res = args.root / setting / "run" / "results.json"
            if not res.is_file():
                print(f"baselines: {res} does not exist yet", file=sys.stderr)
                continue
            report = json.loads(res.read_text())
        else:
            report = run(setting, methods, args)
        marker = args.root / setting / "tuned_on"
        source = marker.read_text().strip() if marker.is_file() else setting
        out.append(table(setting, report, tuned(args.root / source), source))
        print(out[-1], flush=True)
    if args.md:
        args.md.write_text("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

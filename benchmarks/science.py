"""What makes privileged distillation pay off: run variants of the default recipe and tabulate them.

Each experiment is one ``mmhal run`` (a dataset, a student, a variant = ``key=value`` overrides) into
``--root/<dataset>-<student>-<variant>/``; an existing ``results.json`` there is reused, so the script can
be stopped and started again. The table puts **validation** figures first (what a variant is chosen
by) and test figures after (what is reported), each a mean paired difference against the unimodal
student of the same run with its 95 % t-interval (n - 1 d.f.), and the share of the gap recovered.

    python benchmarks/science.py --plan screen --root runs/science            # run and tabulate
    python benchmarks/science.py --plan screen --root runs/science --table-only --md benchmarks/SCIENCE_TABLE.md

Datasets other than HAPT are the ``.npz`` files of ``benchmarks/datasets/`` (``--data-dir``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mmhal import stats  # noqa: E402

# (dataset, student, extra args) — dataset is "hapt" or a file name in --data-dir
SETTINGS = {
    "hapt-gyro": ("hapt", "gyro", []),
    "hapt-acc": ("hapt", "acc", []),
    "satellite-visible": ("satellite.npz", "visible", []),
    "cellseg-tubulin": ("cellseg.npz", "tubulin", []),
    "mfeat-fou": ("mfeat.npz", "fou", []),
}
VARIANTS = {
    "base": [],
    "init": ["distill.init_from_teacher=true"],
    "teacher30": ["method_overrides={teacher: {train.epochs: 30}}"],
    "teacher30-ls": ["method_overrides={teacher: {train.epochs: 30, distill.label_smoothing: 0.1}}"],
    "init-teacher30": ["distill.init_from_teacher=true", "method_overrides={teacher: {train.epochs: 30}}"],
    "epochs24": ["--epochs", "24"],
    "init-epochs24": ["distill.init_from_teacher=true", "--epochs", "24"],
    "ema": ["train.ema=0.99"],
    "init-ema": ["distill.init_from_teacher=true", "train.ema=0.99"],
    # issue 20: DAD as the abstract describes it (inter-sample distances, RKD-normalised) instead of the authors'
    # similarities; on the trunk maps or on the pooled embedding; RAD weighted uniformly instead of by confidence
    "dist": ["distill.dad_relation=distance", "distill.dad_lambda=25"],
    "dist-emb": ["distill.dad_relation=distance", "distill.dad_lambda=25", "distill.dad_features=embedding"],
    "dist-uniform": ["distill.dad_relation=distance", "distill.dad_lambda=25", "distill.rad_weighting=uniform"],
    "dist-emb-uniform": ["distill.dad_relation=distance", "distill.dad_lambda=25", "distill.dad_features=embedding",
                         "distill.rad_weighting=uniform"],
    "dist-local": ["distill.dad_relation=distance", "distill.dad_lambda=25", "distill.dad_variant=local"],
    # issue 24: sequence networks pool f4 by its mean and its maximum (model.pool=meanmax), with the defaults above
    "dist-emb-uniform-meanmax": ["distill.dad_relation=distance", "distill.dad_lambda=25",
                                 "distill.dad_features=embedding", "distill.rad_weighting=uniform", "model.pool=meanmax"],
    # issue 20 (SCIENCE.md §12): the default DAD plus RKD's angle term at RKD's weight, on the same pooled features
    "angle50": ["distill.dad_angle=50"],
}
PLANS = {
    "screen": {"settings": list(SETTINGS), "variants": ["base", "init", "teacher30", "init-teacher30"], "seeds": 3},
}


def run_one(root: Path, data_dir: Path, setting: str, variant: str, seeds: int, methods: str, extra: list[str]) -> dict:
    data, student, args = SETTINGS[setting]
    out = root / f"{setting}-{variant}-s{seeds}"
    res = out / "results.json"
    if not res.is_file():
        data_arg = data if data == "hapt" else str(data_dir / data)
        cmd = [sys.executable, "-m", "mmhal", "run", "--data", data_arg, "--student", student, "--methods", methods,
               "--seeds", str(seeds), "--out", str(out), "--no-progress", "--overwrite", *args, *VARIANTS[variant], *extra]
        t0 = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd[3:])}", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{setting} {variant} failed:\n{done.stderr[-2000:]}")
        print(f"    {time.time() - t0:.0f} s", flush=True)
    return json.loads(res.read_text())


def _fmt(vs) -> str:
    if vs["ci95"] is None:
        return f"{100 * vs['mean_diff']:+.2f}"
    star = "*" if vs["significant"] else ""
    return f"{100 * vs['mean_diff']:+.2f} [{100 * vs['ci95'][0]:+.1f}, {100 * vs['ci95'][1]:+.1f}]{star}"


def _gap(g) -> str:
    return "undef." if g is None else f"{100 * g['mean']:.0f}% [{100 * g['ci95'][0]:.0f}, {100 * g['ci95'][1]:.0f}]"


def rows(report: dict, setting: str, variant: str) -> list[str]:
    r = report["results"]
    uni = r["unimodal"]
    t = r["teacher"]
    out = []
    for name, e in r.items():
        if name in ("teacher", "unimodal"):
            continue
        val = stats.paired(e["val_accuracy"]["per_seed"], uni["val_accuracy"]["per_seed"])
        gval = stats.gap_recovered(e["val_accuracy"]["per_seed"], uni["val_accuracy"]["per_seed"],
                                   t["val_accuracy"]["per_seed"])
        out.append(f"| {setting} | {variant} | {len(report['seeds'])} | {name} | {100 * t['val_accuracy']['mean']:.2f} | "
                   f"{100 * uni['val_accuracy']['mean']:.2f} | {_fmt(val)} | {_gap(gval)} | "
                   f"{100 * t['accuracy']['mean']:.2f} | {100 * uni['accuracy']['mean']:.2f} | "
                   f"{_fmt(e['vs_unimodal'])} | {_gap(e.get('gap_recovered'))} |")
    return out


HEADER = ("| setting | variant | seeds | method | teacher val % | unimodal val % | val diff [95% CI] | val gap rec. | "
          "teacher test % | unimodal test % | test diff [95% CI] | test gap rec. |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", default="screen", help=f"one of {', '.join(PLANS)}, or 'custom' with the flags below")
    p.add_argument("--settings", help="comma-separated settings (custom plan)")
    p.add_argument("--variants", help="comma-separated variants (custom plan)")
    p.add_argument("--seeds", type=int, help="seeds per run (custom plan)")
    p.add_argument("--methods", default="unimodal,kd,mmh")
    p.add_argument("--root", default="runs/science")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--md", help="also write the table to this markdown file")
    p.add_argument("--table-only", action="store_true", help="tabulate the runs already in --root")
    p.add_argument("extra", nargs="*", help="further key=value overrides for every run")
    a = p.parse_args()
    plan = dict(PLANS.get(a.plan, {}))
    if a.settings:
        plan["settings"] = a.settings.split(",")
    if a.variants:
        plan["variants"] = a.variants.split(",")
    if a.seeds:
        plan["seeds"] = a.seeds
    root, data_dir = Path(a.root), Path(a.data_dir)
    lines = [HEADER]
    for setting in plan["settings"]:
        for variant in plan["variants"]:
            out = root / f"{setting}-{variant}-s{plan['seeds']}"
            if a.table_only and not (out / "results.json").is_file():
                continue
            report = run_one(root, data_dir, setting, variant, plan["seeds"], a.methods, a.extra)
            lines += rows(report, setting, variant)
    text = "\n".join(lines)
    print(text)
    if a.md:
        Path(a.md).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Screen training defaults for the networks themselves: the unimodal student and the teacher, trained alone.

For each setting (``science.SETTINGS``: a dataset and its deployed student) and each variant (overrides of
``train.*`` / ``model.*``), this trains ``--seeds`` networks with mmhal's own training loop on mmhal's own split
and records validation and test accuracy per seed, the epochs trained and the seconds. **Variants are judged on
validation only**; test is reported, never used to choose. One process, one torch thread (as small networks
train in a run); results are appended to ``OUT`` as JSON lines, and a second call skips what is there.

    python benchmarks/training_defaults.py --out runs/defaults.jsonl --settings hapt-gyro,satellite-visible \\
        --who unimodal --variants base,ema-wd
    python benchmarks/training_defaults.py --out runs/defaults.jsonl --table-only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from science import SETTINGS  # noqa: E402

VARIANTS = {
    "base": [],
    "ema": ["train.ema=0.99"],
    "steps1k": ["train.min_steps=1000"],
    "steps1k-ema": ["train.min_steps=1000", "train.ema=0.99"],
    "steps1k-ema-wd": ["train.min_steps=1000", "train.ema=0.99", "train.weight_decay=5e-2"],
    "steps1k-ema-drop": ["train.min_steps=1000", "train.ema=0.99", "model.dropout=0.3"],
    "steps1k-ema-w24": ["train.min_steps=1000", "train.ema=0.99", "model.width=24"],
    "steps3k-pat15-ema": ["train.min_steps=3000", "train.patience=15", "train.ema=0.99"],
    "ema-wd": ["train.ema=0.99", "train.weight_decay=5e-2"],
    "steps500-ema-wd": ["train.min_steps=500", "train.ema=0.99", "train.weight_decay=5e-2"],
    "steps500": ["train.min_steps=500"],
    "steps500-wd": ["train.min_steps=500", "train.weight_decay=5e-2"],
    "steps500-ema-drop": ["train.min_steps=500", "train.ema=0.99", "model.dropout=0.3"],
    "steps500-wd-drop": ["train.min_steps=500", "train.weight_decay=5e-2", "model.dropout=0.3"],
    "w48": ["model.width=48"],
    "drop5": ["model.dropout=0.5"],
    "steps1k-wd5e-1": ["train.min_steps=1000", "train.weight_decay=0.5"],
    "steps1k-ema-wd-drop": ["train.min_steps=1000", "train.ema=0.99", "train.weight_decay=5e-2", "model.dropout=0.3"],
    "steps1k-ema-wd-w48-drop5": ["train.min_steps=1000", "train.ema=0.99", "train.weight_decay=5e-2", "model.width=48",
                                 "model.dropout=0.5"],
    "lr1e-3": ["train.lr=1e-3"],
    "w48-steps1k": ["model.width=48", "train.min_steps=1000"],
    "w24": ["model.width=24"],
    "sel-acc": ["train.select_on=val_acc"],
    "steps1k-lr1e-3-ema-wd": ["train.min_steps=1000", "train.lr=1e-3", "train.ema=0.99", "train.weight_decay=5e-2"],
    "ls": ["distill.label_smoothing=0.1"],
    "steps1k-ema-wd-ls": ["train.min_steps=1000", "train.ema=0.99", "train.weight_decay=5e-2",
                          "distill.label_smoothing=0.1"],
}


#: students not used to choose the vector network's layout, to see whether what was chosen holds beyond the
#: settings it was chosen on
SETTINGS = {**SETTINGS, "mfeat-kar": ("mfeat.npz", "kar", []), "mfeat-zer": ("mfeat.npz", "zer", []),
            "mfeat-pix": ("mfeat.npz", "pix", []), "cellseg-actin": ("cellseg.npz", "actin", []),
            "cellseg-body": ("cellseg.npz", "body", [])}


def train(setting: str, who: str, variant: str, seeds: int, data_dir: Path) -> dict:
    import torch

    from mmhal.config import load_config
    from mmhal.distill import METHODS
    from mmhal.engine.loop import fit, predict
    from mmhal.engine.run import _build, build_splits, load_run_data, normalization_stats
    from mmhal.metrics import accuracy
    from mmhal.utils import derive_seed, seed_everything

    torch.set_num_threads(1)
    data_name, student, _ = SETTINGS[setting]
    name = data_name if data_name == "hapt" else str(data_dir / data_name)
    cfg = load_config(None, [f"data.name={name}", f"student=[{student}]", "progress=false", *VARIANTS[variant]])
    data, _, _, all_mods = load_run_data(cfg)
    mods = sorted(data.modalities) if who == "teacher" else [student]
    stats = normalization_stats(data, all_mods)
    splits = build_splits(cfg, data, all_mods, torch.device("cpu"))
    rec = {"setting": setting, "who": who, "variant": variant, "overrides": VARIANTS[variant], "val": [], "test": [],
           "best_epoch": [], "epochs": [], "seconds": []}
    for seed in range(seeds):
        seed_everything(derive_seed(seed, "init", "student"))
        net = _build(cfg, data, mods, stats)
        t0 = time.time()
        res = fit(METHODS.get("unimodal")(net, None, cfg.distill), splits["train"], splits["val"], cfg.train, seed,
                  progress=False)
        rec["seconds"].append(round(time.time() - t0, 1))
        for split in ("val", "test"):
            rec[split].append(accuracy(splits[split].labels.numpy(), predict(net, splits[split]).argmax(1).numpy()))
        rec["best_epoch"].append(res.best_epoch)
        rec["epochs"].append(len(res.history))
    return rec


def table(records: list[dict]) -> str:
    """Mean validation (test) accuracy per setting and variant, and the mean over settings of each variant's
    validation difference from ``base`` (where both ran)."""
    cols = list(dict.fromkeys((r["setting"], r["who"]) for r in records))
    variants = list(dict.fromkeys(r["variant"] for r in records))
    by = {(r["setting"], r["who"], r["variant"]): r for r in records}
    lines = ["| variant | " + " | ".join(f"{s} {w}" for s, w in cols) + " | mean val gain over base |",
             "|---|" + "---|" * (len(cols) + 1)]
    for v in variants:
        cells, gains = [], []
        for s, w in cols:
            r = by.get((s, w, v))
            if r is None:
                cells.append("")
                continue
            cells.append(f"{100 * np.mean(r['val']):.2f} ({100 * np.mean(r['test']):.2f}; {np.mean(r['epochs']):.0f} ep)")
            b = by.get((s, w, "base"))
            if b is not None:
                gains.append(100 * (np.mean(r["val"]) - np.mean(b["val"])))
        gain = f"{np.mean(gains):+.2f} ({len(gains)})" if gains else ""
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines)


def paired_table(before: list[dict], after: list[dict]) -> str:
    """Each (setting, who) in both record lists, ``after`` against ``before`` paired by seed: validation (the
    figure that decides) and test means, the validation and test differences with 95 % t-intervals (n - 1 d.f.)
    and the seeds won, tied and lost on validation."""
    from mmhal.stats import paired

    old = {(r["setting"], r["who"]): r for r in before if r["variant"] == "base"}
    lines = ["| setting | who | before val % | after val % | val difference [95 % CI] | W/T/L | test difference "
             "[95 % CI] |", "|---|---|---|---|---|---|---|"]
    for r in after:
        b = old.get((r["setting"], r["who"]))
        if r["variant"] != "base" or b is None:
            continue
        n = min(len(r["val"]), len(b["val"]))
        pv = paired([100 * x for x in r["val"][:n]], [100 * x for x in b["val"][:n]])
        pt = paired([100 * x for x in r["test"][:n]], [100 * x for x in b["test"][:n]])
        ci = lambda p: (f"{p['mean_diff']:+.2f} [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]"  # noqa: E731
                        + ("*" if p["significant"] else ""))
        lines.append(f"| {r['setting']} | {r['who']} | {100 * np.mean(b['val'][:n]):.2f} | "
                     f"{100 * np.mean(r['val'][:n]):.2f} | {ci(pv)} | {pv['wins']}/{pv['ties']}/{pv['losses']} | "
                     f"{ci(pt)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="a .jsonl file (appended to)")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--who", default="unimodal", help="unimodal, teacher or both (comma-separated)")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--paired", metavar="BEFORE", help="print OUT's base records against those of the .jsonl file "
                    "BEFORE (written by the code before a change), paired by seed, and train nothing")
    a = ap.parse_args()
    out = Path(a.out)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
    if a.paired:
        before = [json.loads(line) for line in Path(a.paired).read_text().splitlines()]
        print(paired_table(before, records))
        return 0
    if not a.table_only:
        done = {(r["setting"], r["who"], r["variant"]) for r in records}
        for setting in a.settings.split(","):
            for who in a.who.split(","):
                for variant in a.variants.split(","):
                    if (setting, who, variant) in done:
                        continue
                    rec = train(setting, who, variant, a.seeds, Path(a.data_dir))
                    with open(out, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    records.append(rec)
                    print(f"{setting:18s} {who:8s} {variant:20s} val {100 * np.mean(rec['val']):6.2f} "
                          f"test {100 * np.mean(rec['test']):6.2f} epochs {rec['epochs']} {sum(rec['seconds']):.0f} s",
                          flush=True)
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())

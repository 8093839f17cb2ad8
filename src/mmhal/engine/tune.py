"""``mmhal tune``: the same tuning budget for every method, on the validation split only.

For every method asked for (ensembles stand for their members), ``trials`` configurations are tried:
trial 0 is the method's current settings, trials 1.. are drawn at random (seeded) from the method's own
search space (``Method.tune_space``: KD's alpha and T; RAD's lambda, T and region weighting; DAD's lambda
and variant; MMH's union of both) together with the schedule every method shares (``COMMON_SPACE``:
learning rate and weight decay, so the unimodal baseline's schedule is tuned as well). Every trial of
every method trains ``len(tune seeds)`` students on the train split with the same teacher, data and
epoch budget, and is scored by its students' mean validation accuracy (ties: lower validation loss).
The test split is never loaded into a batch, predicted or read.

Tuning seeds are not the reporting seeds (by default 1000, 1001, ...): the run that reports test
figures then draws students that played no part in choosing the settings.

Writes into the tune folder: ``trials.csv`` and ``tune.json`` (every trial: its settings, per-seed
validation accuracy and loss), and ``tuned.yaml``, a recipe (the resolved configuration with
``method_overrides`` = each method's best trial) for ``mmhal run --config DIR/tuned.yaml``.

A trial with a student that diverged (its loss became NaN or infinite) is scored as failed: no mean, a
``failed`` note in tune.json and trials.csv, never chosen. A method whose every trial failed keeps its
current settings in tuned.yaml (``best`` is null, ``failed`` lists it); when that is every method,
``mmhal tune`` exits with code 3.
"""
from __future__ import annotations

import copy
import csv
import io
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from .. import __version__
from ..config import RunConfig, absolute_paths, to_dict
from ..distill import METHODS
from ..errors import UserError
from ..metrics import accuracy
from ..utils import atomic_write_json, atomic_write_text, derive_seed, return_freed_memory
from . import distributed
from .run import (JobContext, RunInterrupted, _run_jobs, applicable_methods, build_splits, check_augment, get_teacher,
                  load_run_data, normalization_stats, out_path, plan_folder, reads_samples, set_threads, train_threads,
                  resolve_methods, resolve_workers, split_job_name)
from .samples import close_splits, stop_workers

#: searched for every method alike (the schedule), on top of the method's own ``tune_space``
COMMON_SPACE = {"train.lr": ("log", 1e-3, 1e-2), "train.weight_decay": ("log", 1e-5, 1e-2)}
TUNE_SEED_BASE = 1000


def _round(x: float) -> float:
    """Three significant digits: settings a person can read and type again."""
    return float(f"{x:.3g}")


def draw(space: dict, rng: np.random.Generator) -> dict:
    """One configuration from a search space (``("log"|"uniform", lo, hi)`` or ``("choice", values)``)."""
    out = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "log":
            out[key] = _round(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
        elif kind == "uniform":
            out[key] = _round(rng.uniform(spec[1], spec[2]))
        elif kind == "choice":
            out[key] = spec[1][int(rng.integers(len(spec[1])))]
        else:
            raise ValueError(f"unknown search-space kind {kind!r} for {key}")
    return out


def method_trials(method: str, trials: int, seed: int) -> list[dict]:
    """The ``trials`` configurations tried for ``method``: {} (its current settings), then random draws."""
    space = {**COMMON_SPACE, **METHODS.get(method).tune_space}
    rng = np.random.default_rng(derive_seed(seed, "tune", method))
    return [{}] + [draw(space, rng) for _ in range(trials - 1)]


def tune_methods(methods) -> list[str]:
    """The methods to tune for a list of reported methods: ensembles stand for their members' methods."""
    train, _ = resolve_methods(methods)
    out: list[str] = []
    for job in train:
        m = split_job_name(job)[0]
        if m not in out:
            out.append(m)
    return out


def tune(cfg: RunConfig, trials: int, tune_seeds: list[int], log=None) -> dict:
    """Tune every method of ``cfg.methods`` with ``trials`` trials of ``len(tune_seeds)`` students each, on
    validation; write trials.csv, tune.json and tuned.yaml into ``cfg.out``; return the summary."""
    log = log or (lambda s: tqdm.write(s))
    if trials < 1:
        raise UserError("--trials must be at least 1")
    if distributed.current().enabled:
        raise UserError("mmhal tune runs in one process (its trials run in parallel workers); start it without torchrun")
    t_start = time.time()
    torch.set_num_threads(train_threads(cfg))  # while the data load; set again for the network (set_threads)
    device = distributed.job_device(cfg.device, distributed.current())
    cfg.out = str(out_path(cfg.out))  # '~/runs/x' is the home folder's, never a folder named '~'
    out = Path(cfg.out)
    folder = plan_folder(out, "tune")  # a new or empty folder, or an unfinished tuning's (it starts again)
    splits: dict = {}
    try:
        try:
            data, teacher_mods, student_mods, all_mods = load_run_data(cfg)
            methods = tune_methods(cfg.methods)
            methods, _ = applicable_methods(cfg, data, student_mods, methods, methods, log)
            check_augment(cfg, data)
            folder.open(log)  # every check of the input has passed
            summary = _tune(cfg, trials, tune_seeds, log, out, data, teacher_mods, student_mods, all_mods, methods,
                            device, splits, t_start)
        except KeyboardInterrupt:
            stop_workers()
            close_splits(splits)
            folder.discard(log, interrupted=True)
            raise RunInterrupted(folder.interrupted()) from None
        except BaseException:
            stop_workers()
            close_splits(splits)
            folder.discard(log, interrupted=False)
            raise
        close_splits(splits)  # worker processes of data read from files
    finally:
        folder.release()  # the folder's lock: another command may write there now
    return summary


def _tune(cfg, trials, tune_seeds, log, out, data, teacher_mods, student_mods, all_mods, methods, device, splits,
          t_start) -> dict:
    """The body of ``tune`` once the folder ``out`` is ready (``splits`` is filled for the caller to close)."""
    if reads_samples(cfg, data):
        return_freed_memory()
    macs = set_threads(cfg, data, teacher_mods)
    stats = normalization_stats(data, all_mods, cfg.train.loader_workers, cfg.progress)
    splits.update(build_splits(cfg, data, all_mods, device, ("train", "val")))  # never test
    teacher, _ = get_teacher(cfg, data, teacher_mods, stats, splits, device, log, data.fingerprint())

    job_cfg = copy.deepcopy(cfg)
    job_cfg.out = str(out)
    job_cfg.method_overrides = {}  # each trial states its settings in full on top of the common ones
    ctx = JobContext(job_cfg, data, stats, teacher.state_dict(), teacher_mods, student_mods, all_mods, "val",
                     macs=macs)
    table: dict[str, list[dict]] = {}
    for m in methods:
        base = cfg.method_overrides.get(m, {})
        table[m] = [{"trial": i, "settings": {**base, **t}} for i, t in enumerate(method_trials(m, trials, cfg.teacher_seed))]
        for row in table[m]:
            ctx.trials[f"{m}-trial{row['trial']}"] = row["settings"]
            ctx.job_config(m, f"{m}-trial{row['trial']}")  # an invalid drawn setting fails now, not in a worker
    jobs = [(m, s, f"{m}-trial{row['trial']}") for m in methods for row in table[m] for s in tune_seeds]
    workers = resolve_workers(cfg, device, len(jobs), data.in_memory)
    log(f"tuning {', '.join(methods)}: {trials} trial(s) each x {len(tune_seeds)} seed(s) {tune_seeds} = {len(jobs)} "
        f"students on the validation split, {workers} worker process(es)")
    if workers == 1:
        ctx.prime(splits, teacher)
    y_val = splits["val"].labels.cpu().numpy()
    done = _run_jobs(ctx, jobs, workers, device, log, y_val)

    best: dict[str, Optional[dict]] = {}
    for m in methods:
        for row in table[m]:
            recs = [done[(m, s, f"{m}-trial{row['trial']}")] for s in tune_seeds]
            ok = ["diverged" not in r for r in recs]
            row["val_accuracy"] = [accuracy(y_val, r["val_logits"].argmax(1)) if k else None for r, k in zip(recs, ok)]
            row["val_loss"] = [float(r["val_loss"]) if k else None for r, k in zip(recs, ok)]
            row["best_epoch"] = [int(r["best_epoch"]) if k else None for r, k in zip(recs, ok)]
            if all(ok):
                row["mean_val_accuracy"] = float(np.mean(row["val_accuracy"]))
                continue
            # A trial with a diverged student is failed: no score (a mean over the other seeds would not be
            # comparable), and never chosen.
            row["mean_val_accuracy"] = None
            row["failed"] = "diverged: " + ", ".join(f"seed {s} at epoch {r['diverged']['epoch']}"
                                                     for s, r, k in zip(tune_seeds, recs, ok) if not k)
            log(f"note: {m} trial {row['trial']} is scored as failed and never chosen ({row['failed']})")
        scored = [r for r in table[m] if r["mean_val_accuracy"] is not None]
        best[m] = (min(scored, key=lambda r: (-r["mean_val_accuracy"], float(np.mean(r["val_loss"])), r["trial"]))
                   if scored else None)
    failed = [m for m in methods if best[m] is None]
    for m in failed:
        log(f"warning: every trial of {m} diverged, so tuned.yaml keeps its current settings; lower its train.lr "
            "or loss weights and tune it again")

    tuned = copy.deepcopy(cfg)
    tuned.method_overrides = {m: dict(best[m]["settings"]) for m in methods if best[m] and best[m]["settings"]}
    tuned.method_overrides.update({m: dict(cfg.method_overrides[m]) for m in failed if cfg.method_overrides.get(m)})
    tuned.out = ""  # the run that uses the recipe names its own folder
    header = (f"# written by mmhal tune {__version__}: {trials} trial(s) per method ({', '.join(methods)}), each "
              f"{len(tune_seeds)} student(s) (seeds {tune_seeds}), chosen by mean validation accuracy; test never "
              f"used.\n# run it: mmhal run --config {out / 'tuned.yaml'}\n")
    if failed:
        header += f"# every trial of {', '.join(failed)} diverged: kept at the current settings, not tuned\n"
    atomic_write_text(out / "tuned.yaml", header + yaml.safe_dump(to_dict(absolute_paths(tuned)), sort_keys=False))
    summary = {"methods": methods, "trials": trials, "tune_seeds": list(tune_seeds), "selected_on": "val",
               "best": {m: {"trial": best[m]["trial"], "settings": best[m]["settings"],
                            "mean_val_accuracy": best[m]["mean_val_accuracy"]} if best[m] else None for m in methods},
               "failed": failed,
               "table": table, "seconds": round(time.time() - t_start, 1), "mmhal": __version__}
    atomic_write_json(out / "tune.json", summary)
    atomic_write_text(out / "trials.csv", trials_csv(summary))
    for job in jobs:  # the trials' finished-job records served their purpose
        path = out / "trials" / job[2] / "jobs" / f"{job[0]}-seed{job[1]}.pt"
        path.unlink(missing_ok=True)
    return summary


def trials_csv(summary: dict) -> str:
    """One row per trial; when a trial failed (a student diverged), a last column ``failed`` says where, and
    its score cells are empty (``diverged`` for the seeds that diverged)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    rows_all = [r for rows in summary["table"].values() for r in rows]
    any_failed = any("failed" in r for r in rows_all)
    w.writerow(["method", "trial", "mean_val_accuracy", "val_accuracy_per_seed", "mean_val_loss", "settings"]
               + (["failed"] if any_failed else []))
    for m, rows in summary["table"].items():
        for r in rows:
            mean = r["mean_val_accuracy"]
            w.writerow([m, r["trial"], "" if mean is None else f"{mean:.6f}",
                        " ".join("diverged" if a is None else f"{a:.4f}" for a in r["val_accuracy"]),
                        "" if mean is None else f"{np.mean(r['val_loss']):.6f}",
                        " ".join(f"{k}={v}" for k, v in r["settings"].items())]
                       + ([r.get("failed", "")] if any_failed else []))
    return buf.getvalue()


def format_tune(summary: dict) -> str:
    lines = [f"{'method':<10} {'best trial':>10} {'mean val acc %':>15}  settings"]
    for m in summary["methods"]:
        b = summary["best"][m]
        if b is None:
            lines.append(f"{m:<10} {'none':>10} {'':>15}  every trial diverged: kept at its current settings")
            continue
        shown = ", ".join(f"{k}={v}" for k, v in b["settings"].items()) or "(the current settings)"
        lines.append(f"{m:<10} {b['trial']:>10} {100 * b['mean_val_accuracy']:>15.2f}  {shown}")
    lines.append(f"{summary['trials']} trial(s) per method, {len(summary['tune_seeds'])} seed(s) each, validation only.")
    return "\n".join(lines)

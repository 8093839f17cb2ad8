"""``mmhal tune``: the same tuning budget for every method, on the validation split only, on Optuna.

For every method asked for (ensembles stand for their members), ``trials`` configurations are tried, each an
Optuna trial of the method's own study: trial 0 is the method's current settings, the others are drawn by the
sampler (``random``, the default, or ``tpe``, Optuna's TPE) from the method's own search space (``Method.tune_space``: KD's
alpha and T; RAD's lambda, T and region weighting; DAD's lambda and variant; MMH's union of both) together with
the schedule every method shares (``COMMON_SPACE``: learning rate and weight decay, so the unimodal baseline's
schedule is tuned as well). Every trial of every method trains ``len(tune seeds)`` students on the train split
with the same teacher, data and epoch budget, and is scored by its students' mean validation accuracy (ties:
lower validation loss). The test split is never loaded into a batch, predicted or read.

The pruner (``none``, the default, or ``median``, Optuna's MedianPruner) sees a trial's mean validation accuracy over its seeds
after every epoch and stops the trial when it is below the median of the finished trials at that epoch (not
before 2 trials have finished, nor in the first third of the epochs): its students stop, it gets no score and is
never chosen. The budget is the same for every method: its trials numbered 0 .. ``trials`` - 1 are evaluated,
each once, whichever process asks for it.

The studies live in an Optuna storage: by default ``study.db`` (SQLite) in the tune folder; with ``storage`` a
database URL (``postgresql://user@host/db``) that several ``mmhal tune`` processes, on one machine or several,
share: each started with the same data, settings, ``trials``, ``storage`` and ``study`` name evaluates trials
until the method's budget is taken, then waits for the others' to finish, and writes the same recipe into its
own tune folder.

Tuning seeds are not the reporting seeds (by default 1000, 1001, ...): the run that reports test
figures then draws students that played no part in choosing the settings.

Writes into the tune folder: ``trials.csv`` and ``tune.json`` (every trial: its settings, per-seed
validation accuracy and loss, pruned or failed), and ``tuned.yaml``, a recipe (the resolved configuration with
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
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from .. import __version__
from ..config import RunConfig, absolute_paths, method_config, to_dict
from ..distill import METHODS
from ..errors import UserError
from ..metrics import accuracy
from ..utils import atomic_write_json, atomic_write_text, derive_seed, return_freed_memory
from . import distributed
from .jobs import WorkerPool, run_jobs
from .run import (JobContext, RunInterrupted, applicable_methods, build_splits, check_augment, get_teacher,
                  load_run_data, normalization_stats, out_path, plan_folder, reads_samples, set_threads, train_threads,
                  resolve_methods, resolve_workers, split_job_name)
from .samples import close_splits, stop_workers

#: searched for every method alike (the schedule), on top of the method's own ``tune_space``
COMMON_SPACE = {"train.lr": ("log", 1e-3, 1e-2), "train.weight_decay": ("log", 1e-5, 1e-2)}
TUNE_SEED_BASE = 1000


def _round(x: float) -> float:
    """Three significant digits: settings a person can read and type again."""
    return float(f"{x:.3g}")


# Defaults random and none: on HAPT, TPE with the median pruner tuned in 69 % of the time, but its RKD recipe was
# significantly worse on validation (benchmarks/SCIENCE.md §11).
SAMPLERS = ("random", "tpe")
PRUNERS = ("none", "median")
STUDY_FILE = "study.db"
CURRENT = "mmhal.current"  # the user attribute of a method's trial 0: its current settings, nothing drawn


def require_optuna():
    try:
        import optuna
    except ImportError:  # a dependency of mmhal; missing only in a broken environment
        raise UserError("mmhal tune needs Optuna, which is not installed (pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # mmhal says what happens; Optuna's INFO lines repeat it
    return optuna


def suggest(trial, space: dict) -> dict:
    """One configuration of a search space (``("log"|"uniform", lo, hi)`` or ``("choice", values)``) drawn through
    Optuna's ``trial`` (its sampler decides), floats rounded to three significant digits (settings a person can
    read and type again)."""
    out = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind in ("log", "uniform"):
            out[key] = _round(trial.suggest_float(key, spec[1], spec[2], log=kind == "log"))
        elif kind == "choice":
            out[key] = trial.suggest_categorical(key, list(spec[1]))
        else:
            raise ValueError(f"unknown search-space kind {kind!r} for {key}")
    return out


def method_space(method: str) -> dict:
    return {**COMMON_SPACE, **METHODS.get(method).tune_space}


def _sampler(optuna, name: str, seed: int, trials: int):
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE models the finished trials once a third of the budget is drawn (its default waits for 10)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, trials // 3), constant_liar=True)


def _pruner(optuna, name: str, epochs: int):
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 3))


def study_storage(url: Optional[str], out: Path) -> str:
    """The Optuna storage URL: ``url``, or the SQLite file ``study.db`` in the tune folder ``out``."""
    return url or f"sqlite:///{(out / STUDY_FILE).resolve()}"


def heartbeat_seconds() -> tuple[int, int]:
    """(interval, grace period) in seconds of the trials' heartbeats: every process records one for each trial it
    evaluates every ``interval`` seconds, and a trial RUNNING without one for ``grace`` seconds was left by a process
    that died (killed outright, a lost node): it is marked failed, and those waiting for it go on.
    ``MMHAL_TUNE_HEARTBEAT=interval,grace`` sets them (the tests use short ones)."""
    text = os.environ.get("MMHAL_TUNE_HEARTBEAT", "")
    try:
        interval, grace = (int(v) for v in text.split(",")) if text else HEARTBEAT
    except ValueError:
        raise UserError(f"MMHAL_TUNE_HEARTBEAT must be two whole numbers of seconds, interval,grace; got {text!r}") from None
    if not 0 < interval < grace:
        raise UserError(f"MMHAL_TUNE_HEARTBEAT needs 0 < interval < grace, got {text!r}")
    return interval, grace


#: the default (interval, grace period) of the trials' heartbeats, in seconds (``heartbeat_seconds``)
HEARTBEAT = (30, 120)


def open_storage(optuna, url: str):
    """Optuna's storage of the database ``url``, with heartbeats (``heartbeat_seconds``); a UserError (one sentence)
    when it cannot be opened."""
    interval, grace = heartbeat_seconds()
    try:
        with warnings.catch_warnings():  # Optuna calls its heartbeat options experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=grace)
    except ImportError:
        raise UserError(f"the Optuna storage '{_hide_password(url)}' needs a database driver that is not "
                        "installed (PostgreSQL: pip install 'mmhal[postgres]')") from None
    except Exception as exc:  # a URL that names no reachable database: one sentence, not SQLAlchemy's traceback
        if isinstance(exc, UserError):
            raise
        raise UserError(f"the Optuna storage '{_hide_password(url)}' cannot be opened "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def open_studies(optuna, methods, db, study: str, sampler: str, pruner: str, trials: int, epochs: int,
                 seed: int, shared: bool) -> dict:
    """One Optuna study per method (``<study>.<method>``, maximising mean validation accuracy), created or joined in
    the storage ``db`` (``open_storage``)."""
    out = {}
    for m in methods:
        # Samplers of processes that share a study draw from different seeds (the same seed would draw the same
        # configurations); alone, a tuning draws from one seed and repeats itself.
        s = derive_seed(seed, "tune", m) + (os.getpid() if shared else 0)
        draw, stop = _sampler(optuna, sampler, s % 2**32, trials), _pruner(optuna, pruner, epochs)
        out[m] = optuna.create_study(storage=db, study_name=f"{study}.{m}", direction="maximize", sampler=draw,
                                     pruner=stop, load_if_exists=True)
    return out


class Heartbeat:
    """Records a heartbeat in ``storage`` every ``interval`` seconds for each trial this process evaluates (those
    ``add`` gave and ``remove`` has not taken back), on a thread, so that processes sharing the study can tell a
    trial that is still being evaluated from one whose process died (``optuna.storages.fail_stale_trials``)."""

    def __init__(self, storage, interval: float):
        self.storage, self.interval = storage, interval
        self.trials: dict = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="tune-heartbeat", daemon=True)
        self.thread.start()

    def add(self, trial) -> None:
        trial_id = trial._trial_id  # Optuna's id of the trial in its storage (no public accessor)
        with self.lock:
            self.trials[trial.number, trial.study.study_name] = trial_id
        self.storage.record_heartbeat(trial_id)

    def remove(self, trial) -> None:
        with self.lock:
            self.trials.pop((trial.number, trial.study.study_name), None)

    def _beat(self) -> None:
        while not self.done.wait(self.interval):
            with self.lock:
                ids = list(self.trials.values())
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a trial finished meanwhile, or the database is briefly away: the next beat
                    pass

    def stop(self) -> None:
        self.done.set()


def _hide_password(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def tune_methods(methods) -> list[str]:
    """The methods to tune for a list of reported methods: ensembles stand for their members' methods."""
    train, _ = resolve_methods(methods)
    out: list[str] = []
    for job in train:
        m = split_job_name(job)[0]
        if m not in out:
            out.append(m)
    return out


def tune(cfg: RunConfig, trials: int, tune_seeds: list[int], log=None, sampler: str = "random", pruner: str = "none",
         storage: Optional[str] = None, study: str = "mmhal") -> dict:
    """Tune every method of ``cfg.methods`` with ``trials`` trials of ``len(tune_seeds)`` students each, on
    validation, drawn by ``sampler`` and stopped early by ``pruner``, in the Optuna ``storage`` (default: SQLite in
    the tune folder) under the study name ``study``; write trials.csv, tune.json and tuned.yaml into ``cfg.out``;
    return the summary."""
    log = log or (lambda s: tqdm.write(s))
    if trials < 1:
        raise UserError("--trials must be at least 1")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler must be {' or '.join(SAMPLERS)}, got '{sampler}'")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner must be {' or '.join(PRUNERS)}, got '{pruner}'")
    if not study or any(c in study for c in "\n\r\t"):
        raise UserError(f"--study must be a name of one line, got {study!r}")
    if storage is not None and "://" not in storage:
        raise UserError(f"--storage must be a database URL such as postgresql://user@host/db or sqlite:///path, got "
                        f"'{storage}'")
    optuna = require_optuna()
    opened = None
    if storage is not None:  # a database that cannot be reached is said now, not after the teacher has trained
        opened = open_storage(optuna, storage)
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
                            device, splits, t_start, (sampler, pruner, storage, study, opened))
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
          t_start, how) -> dict:
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
    sampler, pruner, storage, study, opened = how
    optuna = require_optuna()
    url = study_storage(storage, out)
    db = opened if opened is not None else open_storage(optuna, url)  # the storage is opened once
    epochs = max(method_config(cfg, m).train.epochs for m in methods)
    studies = open_studies(optuna, methods, db, study, sampler, pruner, trials, epochs, cfg.teacher_seed,
                           shared=storage is not None)
    heartbeat = Heartbeat(db, heartbeat_seconds()[0])
    n_jobs = len(methods) * trials * len(tune_seeds)
    workers = resolve_workers(cfg, device, n_jobs, data.in_memory)
    log(f"tuning {', '.join(methods)}: {trials} trial(s) each x {len(tune_seeds)} seed(s) {tune_seeds} on the "
        f"validation split, {workers} worker process(es); sampler {sampler}, pruner {pruner}, Optuna storage "
        f"{_hide_password(url)} (study {study})")
    if workers == 1:
        ctx.prime(splits, teacher)
    y_val = splits["val"].labels.cpu().numpy()
    # Trials go in waves: each wave asks every method for as many trials as keep the workers busy, trains their
    # students in parallel (the pruner watching their curves), and tells Optuna the scores before the next wave.
    per_wave = max(1, -(-workers // (len(methods) * len(tune_seeds))))
    mine: dict = {}  # (method, trial number) -> {"trial": optuna trial, "settings", "curves": {seed: {epoch: acc}}}
    open_methods = list(methods)
    # one pool of worker processes for every wave (starting one costs seconds: spawn, torch, the data)
    pool = WorkerPool(ctx, workers, cfg.progress or pruner != "none") if workers > 1 else None
    try:
        while open_methods:
            wave, settings = [], {}
            for m in list(open_methods):
                for _ in range(per_wave):
                    with warnings.catch_warnings():  # the heartbeats are mmhal's (Heartbeat), not Study.optimize's
                        warnings.filterwarnings("ignore", message="Heartbeat of storage")
                        t = studies[m].ask()
                    if t.number >= trials:  # the budget is taken (by this process or another): not evaluated
                        t.set_user_attr("mmhal.over_budget", True)
                        studies[m].tell(t, state=optuna.trial.TrialState.FAIL)
                        open_methods.remove(m)
                        break
                    base = dict(cfg.method_overrides.get(m, {}))
                    if t.number == 0:
                        t.set_user_attr(CURRENT, True)
                        drawn = {}
                    else:
                        drawn = suggest(t, method_space(m))
                    tag = f"{m}-trial{t.number}"
                    settings[tag] = {**base, **drawn}
                    ctx.trials[tag] = settings[tag]
                    ctx.job_config(m, tag)  # an invalid drawn setting fails now, not in a worker
                    mine[(m, t.number)] = {"trial": t, "settings": settings[tag], "curves": {}}
                    heartbeat.add(t)
                    wave += [(m, s, tag) for s in tune_seeds]
            if not wave:
                break

            def on_epoch(job, epoch, val_acc):
                m, seed, tag = job
                rec = mine[(m, int(tag.rsplit("trial", 1)[1]))]
                if "state" in rec:  # a late report of a trial already told (the pool's queue outlives a wave)
                    return False
                rec["curves"].setdefault(epoch, {})[seed] = val_acc
                if len(rec["curves"][epoch]) < len(tune_seeds) or rec.get("pruned"):
                    return bool(rec.get("pruned"))
                rec["trial"].report(float(np.mean(list(rec["curves"][epoch].values()))), epoch)
                if rec["trial"].should_prune():
                    rec["pruned"] = epoch
                return bool(rec.get("pruned"))

            done = run_jobs(ctx, wave, workers, device, log, y_val, trials=settings,
                            on_epoch=None if pruner == "none" else on_epoch, pool=pool)
            for (m, number), rec in mine.items():
                if "state" in rec:
                    continue
                recs = [done[(m, s, f"{m}-trial{number}")] for s in tune_seeds]
                _tell(optuna, studies[m], rec, recs, y_val, log, m, number, tune_seeds)
                heartbeat.remove(rec["trial"])
    except BaseException:
        heartbeat.stop()
        if pool is not None:
            pool.stop()
        for rec in mine.values():  # trials of this process left unfinished: failed, never chosen
            if "state" not in rec:
                try:
                    rec["trial"].set_user_attr("mmhal.interrupted", True)
                    rec["trial"].study.tell(rec["trial"], state=optuna.trial.TrialState.FAIL)
                except Exception:  # the storage itself may be what failed
                    pass
        raise
    heartbeat.stop()
    if pool is not None:
        pool.close()
    table = _wait_for_table(optuna, studies, methods, trials, tune_seeds, log)
    best: dict[str, Optional[dict]] = {}
    for m in methods:
        scored = [r for r in table[m] if r["mean_val_accuracy"] is not None]
        best[m] = (min(scored, key=lambda r: (-r["mean_val_accuracy"], float(np.mean(r["val_loss"])), r["trial"]))
                   if scored else None)
    failed = [m for m in methods if best[m] is None]
    for m in failed:
        log(f"warning: no trial of {m} finished with a score (each diverged or stopped), so tuned.yaml keeps its "
            "current settings; lower its train.lr or loss weights and tune it again")

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
               "sampler": sampler, "pruner": pruner, "storage": _hide_password(url), "study": study,
               "pruned": {m: [r["trial"] for r in table[m] if "pruned" in r] for m in methods},
               "best": {m: {"trial": best[m]["trial"], "settings": best[m]["settings"],
                            "mean_val_accuracy": best[m]["mean_val_accuracy"]} if best[m] else None for m in methods},
               "failed": failed,
               "table": table, "seconds": round(time.time() - t_start, 1), "mmhal": __version__}
    atomic_write_json(out / "tune.json", summary)
    atomic_write_text(out / "trials.csv", trials_csv(summary))
    for m, number in mine:  # the trials' finished-job records and stop marks served their purpose
        folder = out / "trials" / f"{m}-trial{number}"
        for seed in tune_seeds:
            (folder / "jobs" / f"{m}-seed{seed}.pt").unlink(missing_ok=True)
        (folder / "PRUNED").unlink(missing_ok=True)
    return summary


def _tell(optuna, study, rec: dict, recs: list, y_val, log, m: str, number: int, tune_seeds) -> None:
    """Tell ``study`` how trial ``number`` of ``m`` ended (its students' records ``recs``, one per tuning seed):
    its mean validation accuracy, or pruned, or failed (a student diverged); what the table needs goes into the
    trial's user attributes, so that every process sharing the study can build it."""
    t = rec["trial"]
    t.set_user_attr("mmhal.settings", rec["settings"])
    if rec.get("pruned") or any("pruned" in r for r in recs):
        epoch = rec.get("pruned") or min(r["pruned"]["epoch"] for r in recs if "pruned" in r)
        t.set_user_attr("mmhal.pruned", int(epoch))
        study.tell(t, state=optuna.trial.TrialState.PRUNED)
        rec["state"] = "pruned"
        log(f"note: {m} trial {number} was pruned after epoch {epoch} (its mean validation accuracy was below the "
            "median of the finished trials); it is never chosen")
        return
    ok = ["diverged" not in r for r in recs]
    t.set_user_attr("mmhal.val_accuracy", [accuracy(y_val, r["val_logits"].argmax(1)) if k else None
                                           for r, k in zip(recs, ok)])
    t.set_user_attr("mmhal.val_loss", [float(r["val_loss"]) if k else None for r, k in zip(recs, ok)])
    t.set_user_attr("mmhal.best_epoch", [int(r["best_epoch"]) if k else None for r, k in zip(recs, ok)])
    if all(ok):
        study.tell(t, float(np.mean(t.user_attrs["mmhal.val_accuracy"])))
        rec["state"] = "complete"
        return
    # A trial with a diverged student is failed: no score (a mean over the other seeds would not be comparable),
    # and never chosen.
    failed = "diverged: " + ", ".join(f"seed {s} at epoch {r['diverged']['epoch']}"
                                      for s, r, k in zip(tune_seeds, recs, ok) if not k)
    t.set_user_attr("mmhal.failed", failed)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    rec["state"] = "failed"
    log(f"note: {m} trial {number} is scored as failed and never chosen ({failed})")


#: how often a process that has taken its share of the budget looks whether the other processes' trials finished
WAIT_SECONDS = 2.0


def _wait_for_table(optuna, studies: dict, methods, trials: int, tune_seeds, log) -> dict:
    """method -> one row per trial 0 .. ``trials`` - 1 of its study, once none is still running (trials that other
    processes sharing the study evaluate are waited for)."""
    said = False
    while True:
        table, running = {}, {}  # running: method -> numbers of its trials still running or waiting
        for m in methods:
            rows = []
            for t in studies[m].get_trials(deepcopy=False):
                if t.number >= trials:
                    continue
                if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
                    running.setdefault(m, set()).add(t.number)
                    continue
                rows.append(_row(optuna, t))
            table[m] = sorted(rows, key=lambda r: r["trial"])
        if not running:
            return table
        if not said:
            log(f"waiting for {sum(map(len, running.values()))} trial(s) that other processes sharing the study are evaluating (a trial "
                f"whose process sends no heartbeat for {heartbeat_seconds()[1]} s is marked failed)")
            said = True
        time.sleep(WAIT_SECONDS)
        for m, numbers in running.items():  # the trials of a process that died (no heartbeat in the grace period)
            optuna.storages.fail_stale_trials(studies[m])
            for t in studies[m].get_trials(deepcopy=False):
                if t.number in numbers and t.state == optuna.trial.TrialState.FAIL:
                    log(f"{m} trial {t.number}: its process stopped sending heartbeats (killed, or its machine lost), "
                        "so it is marked failed")


def _row(optuna, t) -> dict:
    """A trial of a study as a row of the table (tune.json, trials.csv)."""
    ua = t.user_attrs
    row = {"trial": t.number, "settings": dict(ua.get("mmhal.settings", {})),
           "val_accuracy": list(ua.get("mmhal.val_accuracy", [])), "val_loss": list(ua.get("mmhal.val_loss", [])),
           "best_epoch": list(ua.get("mmhal.best_epoch", []))}
    row["mean_val_accuracy"] = float(t.value) if t.state == optuna.trial.TrialState.COMPLETE else None
    if t.state == optuna.trial.TrialState.PRUNED:
        row["pruned"] = int(ua.get("mmhal.pruned", 0))
        row["failed"] = f"pruned after epoch {row['pruned']}"
    elif t.state == optuna.trial.TrialState.FAIL:
        row["failed"] = ua.get("mmhal.failed") or ("interrupted: the process that evaluated it stopped"
                                                  if ua.get("mmhal.interrupted") else "failed")
    return row


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
    pruned = sum(len(v) for v in summary.get("pruned", {}).values())
    lines.append(f"{summary['trials']} trial(s) per method, {len(summary['tune_seeds'])} seed(s) each, validation only"
                 + (f"; sampler {summary['sampler']}, pruner {summary['pruner']}" if "sampler" in summary else "")
                 + (f", {pruned} trial(s) pruned" if pruned else "") + ".")
    return "\n".join(lines)

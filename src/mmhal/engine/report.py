"""``mmhal report RUN``: one self-contained HTML page and its PNG figures, from a finished run folder.

The page answers "which method do I deploy, and why" at the top (the recommendation, chosen on the
validation split only, with its paired validation difference against unimodal, what to expect on the
evaluation split, the modalities, the inference cost, the run's warnings, and a plain-language table), then
shows the evidence:

* ``accuracy.png``: validation and evaluation accuracy per method, 95 % t-intervals over seeds;
* ``differences.png``: paired differences against unimodal (validation, evaluation; ACER for PAD data);
* ``per_class.png``: per-class accuracy of the teacher, unimodal and every method, and per class the
  teacher's margin over unimodal (the gap) beside what each method recovers;
* ``confusion.png``: row-normalised confusion matrices of the teacher, unimodal and the recommended method;
* ``curves.png``: training loss terms, validation loss and accuracy per epoch of every trained student;
* ``regions.png``: for students trained with RAD, the mean region weight and the teacher/student argmax
  agreement per region of the pyramid, on the validation split (needs the data; ``--no-regions`` skips it);
* ``roc_det.png``: for presentation-attack data, ROC and DET curves with the validation-chosen threshold.

Everything but the region figure is drawn from the run folder alone: ``results.json``, ``evaluation.pt``
(labels and the teacher's logits), ``jobs/`` (each student's logits) and ``models/`` (training histories).
A figure whose input is missing is skipped with a note on the page and on stderr, never silently.

The report is written into a hidden sibling folder and moved into place when complete, so ``OUT`` is
never half-written; an existing ``OUT`` is replaced only when it is a report folder mmhal wrote
(``REPORT_MARKER``, listing its files and their SHA-256) holding nothing else, and never a run's own folder
(``engine.outputs``, the rule of every writing command). matplotlib (and, for anti-spoofing runs, scikit-learn) are optional:
``pip install "mmhal[report]"``.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import __version__, stats
from ..config import method_config
from ..distill import member_job
from ..errors import UserError
from ..utils import load_mapped
from . import artifacts, outputs
from .results import (LEARNER_TITLES, TEACHER, UNIMODAL, UNIMODAL_ENSEMBLE, bona_fide_scores, ensemble_scales,
                      learner_line, members)

REPORT_MARKER = outputs.FOLDER_MARKERS["report"]
INDEX = "index.html"
REGION_SAMPLES = 512  # validation samples the region figure is computed on at most (evenly spaced): a mean over
# 512 samples is within ~2 points of the full split's, at a fraction of the forward passes
REGION_BATCH = 256

#: One line per method in plain language, for the table at the top of the page (other methods: the first
#: line of their class's docstring).
DESCRIPTIONS = {
    TEACHER: "the multimodal teacher: sees every privileged modality, so it cannot be deployed without them",
    UNIMODAL: "plain student: trained on the available modalities alone, with no teacher (the baseline)",
    "kd": "knowledge distillation: the student matches the teacher's softened predictions",
    "rad": "region-aware distillation: the student matches the teacher's predictions region by region",
    "dad": "discrepancy-aware distillation: the student matches how the teacher relates samples to each other",
    "mmh": "MMH: RAD and DAD together in one student (one network at inference)",
    "mmh-ensemble": "a RAD student and a DAD student, predictions summed (the paper's final model; two networks)",
    UNIMODAL_ENSEMBLE: "two plain students, predictions summed (the fair baseline for two-network ensembles)",
    "hallucination-fusion": "Hoffman et al.'s test-time model: the hallucination network and the RGB network "
                            "trained with it, predictions summed (two networks)",
}


EVALUATION_KEYS = ("y_eval", "y_val", "teacher_logits", "teacher_val_logits")  # what evaluation.pt must hold


class Skipped(Exception):
    """A figure cannot be drawn from what the run folder (or the data) holds; the message says why."""


@dataclasses.dataclass
class Figure:
    name: str  # file stem: OUT/<name>.png
    title: str
    caption: str  # HTML: what the figure shows and how to read it
    png: bytes


def require_plotting(pad: bool = False) -> None:
    """A UserError in one sentence when matplotlib (or, for the ROC/DET curves of anti-spoofing data, ``pad``,
    scikit-learn) is missing: the ``report`` extra."""
    import importlib.util

    needed = [("matplotlib", "matplotlib")] + ([("sklearn", "scikit-learn")] if pad else [])
    for module, package in needed:
        try:
            found = importlib.util.find_spec(module) is not None  # found, not imported: the figures import it
        except (ImportError, ValueError):
            found = False
        if not found:
            raise UserError(f"mmhal report draws its figures with {package}, which is not installed; install it "
                            'with: pip install "mmhal[report]"') from None


# ---------------------------------------------------------------------------------------------- the OUT folder


def check_out(out: Path) -> outputs.Output:
    """The report folder ``out``, checked before any work (``outputs.plan_output``): a UserError in one sentence
    unless it does not exist, is an empty folder, or is a report folder mmhal wrote holding only what it wrote
    (a user's file in it is never deleted); an earlier report is replaced without ``--overwrite``."""
    return outputs.plan_output(out, "report", overwrite=True)


def write_report(out: Path, files: dict[str, bytes], run_path: Path) -> None:
    """Write ``files`` (name -> bytes) and the marker into a hidden sibling of ``out``, then move it into place
    (replacing an earlier report, which ``check_out`` allows; ``outputs.write_folder``)."""

    def fill(folder: Path) -> None:
        for name, data in files.items():
            with open(folder / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    outputs.write_folder(check_out(out), fill, files, {"run": str(run_path.resolve())})


# ------------------------------------------------------------------------------------ what the figures read


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


class Evidence:
    """What the figures are drawn from, read from the run folder on demand: ``evaluation.pt``, the students'
    logits (``jobs/``), their training histories (``models/``). A missing or unreadable file raises
    ``Skipped`` naming it."""

    def __init__(self, run: artifacts.RunFolder):
        self.run = run
        self.results = run.results
        self._evaluation: Optional[dict] = None
        self._jobs: dict = {}

    @property
    def evaluation(self) -> dict:
        if self._evaluation is None:
            path = self.run.path / "evaluation.pt"
            if not path.is_file():
                raise Skipped("the run folder has no evaluation.pt (a run of an older mmhal), which holds the "
                              "labels and the teacher's logits")
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
                evaluation = {k: (_np(v) if isinstance(v, torch.Tensor) else v) for k, v in raw.items()}
            except Exception as exc:  # damaged or foreign; never relay torch's weights_only advice
                raise Skipped(f"'{path}' cannot be read ({type(exc).__name__})") from None
            missing = [k for k in EVALUATION_KEYS if k not in evaluation]
            if missing:
                raise Skipped(f"'{path}' lacks '{missing[0]}', so it is not an mmhal evaluation file")
            self._evaluation = evaluation
        return self._evaluation

    def job(self, job: str, seed: int) -> dict:
        key = (job, seed)
        if key not in self._jobs:
            path = self.run.path / "jobs" / f"{job}-seed{seed}.pt"
            if not path.is_file():
                raise Skipped(f"the logits of student {job} seed {seed} ({path.relative_to(self.run.path)}) are missing")
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
                self._jobs[key] = {k: _np(raw[k]) for k in ("logits", "val_logits")}
            except Exception as exc:  # damaged, foreign, or without the logits a finished job records
                raise Skipped(f"'{path}' cannot be read as a finished student's record ({type(exc).__name__})") from None
        return self._jobs[key]

    def logits(self, name: str, seed: int, split: str = "eval") -> np.ndarray:
        """(N, K) logits of reported method ``name`` (an ensemble: its members' logits summed, the second times its
        learned weight where the run fitted one, ``results.ensemble_scales``; the teacher:
        its logits, whatever the seed) on the evaluation split or (``split="val"``) the validation split."""
        if name == TEACHER:
            return self.evaluation["teacher_logits" if split == "eval" else "teacher_val_logits"]
        key = "logits" if split == "eval" else "val_logits"
        scales = ensemble_scales(self.results, name, seed)
        return sum(c * self.job(part, seed)[key] for c, part in zip(scales, members(name)))

    def history(self, job: str, seed: int) -> tuple[list[dict], int]:
        """(per-epoch history, selected epoch) of a student job, from its model file (memory-mapped: the
        weights are not read)."""
        path = self.run.model_file(job, seed)
        if not path.is_file():
            raise Skipped(f"the model file of student {job} seed {seed} (models/{path.name}) is missing")
        try:
            ckpt = load_mapped(path)  # a path the locale cannot encode too
        except Exception as exc:
            raise Skipped(f"'{path}' cannot be read ({type(exc).__name__})") from None
        hist = ckpt.get("history") if isinstance(ckpt, dict) else None
        if not hist:
            raise Skipped(f"the model file '{path}' holds no training history")
        return list(hist), int(ckpt.get("best_epoch", 0) or 0)


# ---------------------------------------------------------------------------------------------- text helpers


def _pct(x: Optional[float], digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def _pts(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def _ci(ci: Optional[list], signed: bool = True) -> str:
    if ci is None:
        return "(no interval with one seed)"
    f = _pts if signed else _pct
    return f"[{f(ci[0])}, {f(ci[1])}]"


def _interval(ci: Optional[list], signed: bool = True) -> str:
    return "no interval with one seed" if ci is None else f"95 % interval {_ci(ci, signed)}"


def _mods(mods) -> str:
    return "+".join(mods)


def _esc(x) -> str:
    return html.escape(str(x))


def _description(name: str, entry: Optional[dict] = None) -> str:
    """What ``name`` is, in one phrase; for an ensemble whose run scaled its members' logits (``member_scales``:
    distill.ensemble_weight mean or learned), with the factors of its first seed."""
    if name in DESCRIPTIONS:
        text = DESCRIPTIONS[name]
        scales = (entry or {}).get("member_scales")
        if scales:
            first = ", ".join(f"{c:.3g}" for c in scales["per_seed"][0])
            text = text.replace("predictions summed", f"predictions weighted ({first} on the first seed) and summed")
        return text
    from ..distill import METHODS

    try:
        doc = METHODS.get(name.partition("@")[0]).__doc__ or ""
    except UserError:
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _verdict(vs: Optional[dict], lower_is_better: bool = False) -> str:
    """A paired difference against unimodal in words."""
    if vs is None:
        return ""
    if vs.get("ci95") is None:
        return "one seed: no interval, cannot tell"
    better = vs["mean_diff"] < 0 if lower_is_better else vs["mean_diff"] > 0
    if not vs["significant"]:
        return "no clear difference from unimodal (within seed noise)"
    return "better than unimodal (significant)" if better else "worse than unimodal (significant)"


# ---------------------------------------------------------------------------------------------- the figures


def _names(results: dict) -> list[str]:
    """The teacher first, then every reported method in results.json's order."""
    return [TEACHER, *[n for n in results if n != TEACHER]] if TEACHER in results else list(results)


def accuracy_fig(ev: Evidence, colors: dict) -> Figure:
    from .figures import accuracy_figure

    res, split = ev.results["results"], ev.results.get("evaluated_on", "test")
    rows = [{"name": n, "networks": res[n].get("networks", 1), "val": res[n]["val_accuracy"], "eval": res[n]["accuracy"]}
            for n in _names(res)]
    rec = (ev.results.get("recommendation") or {}).get("method")
    png = accuracy_figure(rows, split, rec, colors)
    caption = (f"Accuracy of every method on the validation split (left: what chose the recommendation) and on the "
               f"{_esc(split)} split (right: what to expect). Diamond = mean over the {len(ev.run.seeds)} seeds, "
               "bar = its 95 % t-interval, small dots = single seeds; the dashed line is unimodal's mean. The teacher "
               "is one model shared by all seeds (no spread) and needs every privileged modality. \u2605 = recommended; "
               "'2 nets' = an ensemble that runs two networks at inference.")
    return Figure("accuracy", "Accuracy per method", caption, png)


def differences_fig(ev: Evidence, colors: dict) -> Figure:
    from .figures import differences_figure

    res, split = ev.results["results"], ev.results.get("evaluated_on", "test")
    if UNIMODAL not in res:
        if UNIMODAL in (ev.results.get("diverged") or {}):
            raise Skipped("the unimodal students diverged (results.json lists them under 'diverged'), so there is "
                          "nothing to compare against")
        raise Skipped("the run has no unimodal student, so there is nothing to compare against")
    names = [n for n in _names(res) if n != UNIMODAL]
    uni_val = res[UNIMODAL]["val_accuracy"]["per_seed"]
    val_rows = {n: stats.paired(res[n]["val_accuracy"]["per_seed"], uni_val) for n in names}
    panels = [{"title": "validation accuracy: method - unimodal", "xlabel": "difference (points)", "rows": val_rows},
              {"title": f"{split} accuracy: method - unimodal", "xlabel": "difference (points)",
               "rows": {n: res[n].get("vs_unimodal") for n in names}}]
    if any("acer_vs_unimodal" in res[n] for n in names):
        panels.append({"title": f"{split} ACER: method - unimodal (negative = better)", "xlabel": "difference (points)",
                       "rows": {n: res[n].get("acer_vs_unimodal") for n in names}})
    rec = (ev.results.get("recommendation") or {}).get("method")
    png = differences_figure(panels, names, rec, colors)
    caption = ("Paired differences against the unimodal student, seed by seed (the same seed gives every method the "
               "same initialisation and data order), in percentage points: dot = mean difference, bar = 95 % "
               "t-interval. A filled dot (and *) is significant: its interval excludes 0. A hollow dot is within "
               "the seed noise. A cross: one seed, no interval. The teacher's row is its margin over unimodal: the "
               "most a student could gain. The recommendation looks at the left panel only"
               + ("; for ACER (lower is better) a negative difference is an improvement." if len(panels) > 2 else "."))
    return Figure("differences", "Paired differences against unimodal", caption, png)


def per_class_fig(ev: Evidence, colors: dict) -> Figure:
    from .figures import per_class_figure

    res, seeds = ev.results["results"], ev.run.seeds
    y = ev.evaluation["y_eval"]
    k = len(ev.results.get("class_names") or []) or int(ev.evaluation["teacher_logits"].shape[1])
    class_names = list(ev.results.get("class_names") or [str(i) for i in range(k)])
    acc = {}
    for name in _names(res):
        per_seed = [_per_class(y, ev.logits(name, s).argmax(1), k) for s in (seeds[:1] if name == TEACHER else seeds)]
        with np.errstate(invalid="ignore"):
            acc[name] = np.mean(per_seed, axis=0)
    png = per_class_figure(class_names, acc, colors)
    split = ev.results.get("evaluated_on", "test")
    caption = (f"Top: accuracy of every class on the {_esc(split)} split, mean over seeds (ensembles: their members' "
               "logits summed). Bottom: per class, the teacher's margin over unimodal (grey bars: where the privileged "
               "modalities help, the gap a student could close) and each method's difference from unimodal (markers: "
               "what distillation recovered). A marker near the top of its grey bar recovered the gap for that class; "
               "one below 0 lost accuracy there.")
    return Figure("per_class", "Per-class accuracy: where the gap is, what distillation recovers", caption, png)


def _per_class(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(y, minlength=k).astype(float)
    hits = np.bincount(y[pred == y], minlength=k).astype(float)
    return np.where(counts > 0, hits / np.where(counts > 0, counts, 1), np.nan)


def confusion_fig(ev: Evidence, colors: dict) -> Figure:
    from .figures import confusion_figure

    res, seeds = ev.results["results"], ev.run.seeds
    y = ev.evaluation["y_eval"]
    k = int(ev.evaluation["teacher_logits"].shape[1])
    class_names = list(ev.results.get("class_names") or [str(i) for i in range(k)])
    rec = (ev.results.get("recommendation") or {}).get("method")
    shown = [n for n in dict.fromkeys([TEACHER, UNIMODAL, rec]) if n is not None and n in res]
    panels = []
    for name in shown:
        counts = np.zeros((k, k))
        for s in seeds[:1] if name == TEACHER else seeds:
            np.add.at(counts, (y, ev.logits(name, s).argmax(1)), 1)
        label = f"{name} ({_mods(res[name]['modalities'])})" + (" \u2605 recommended" if name == rec else "")
        panels.append((label, counts))
    png = confusion_figure(panels, class_names)
    split = ev.results.get("evaluated_on", "test")
    caption = (f"Confusion matrices on the {_esc(split)} split (rows: true class, columns: predicted class; each row "
               "sums to 100 %; students pooled over seeds). The diagonal is per-class accuracy; an off-diagonal cell "
               "says which class a class is mistaken for. Compare the recommended student with unimodal to see which "
               "confusions distillation removed, and with the teacher to see which need the privileged modalities.")
    return Figure("confusion", "Confusion matrices", caption, png)


def _trained_jobs(results: dict) -> list[tuple[str, str]]:
    """(student job, the reported method whose colour it takes) of every reported method's members, in order."""
    out: dict[str, str] = {}
    for name in results:
        if name == TEACHER:
            continue
        for part in members(name):
            if member_job(part) == part:  # a companion network (job.part) shares its job's training curves
                out.setdefault(part, part if part in results else name)
    return list(out.items())


def curves_fig(ev: Evidence, colors: dict, notes: list[str]) -> Figure:
    from .figures import curves_figure

    curves = []
    for job, color_of in _trained_jobs(ev.results["results"]):
        try:
            got = [ev.history(job, s) for s in ev.run.seeds]
        except Skipped as exc:
            notes.append(f"training curves: {job} left out: {exc}")
            continue
        label = job if job in ev.results["results"] else f"{job}\n(in {color_of})"
        curves.append({"name": label, "color_of": color_of, "histories": [h for h, _ in got],
                       "best_epochs": sorted({b for _, b in got if b > 0})})
    if not curves:
        if not _trained_jobs(ev.results["results"]) and ev.results.get("diverged"):
            raise Skipped("every student of this run diverged, so none saved a model or a training history")
        raise Skipped("no student's training history could be read")
    png = curves_figure(curves, colors)
    caption = ("One row per trained student (members of an ensemble included). Left: the training loss terms per "
               "epoch, each already multiplied by its weight (ce = cross-entropy; kd, rad, dad = distillation terms), "
               "so their sum is what was minimised. Middle and right: validation loss and accuracy. Thin lines are "
               "single seeds, thick lines their mean; dotted vertical lines mark the epoch each seed kept (chosen on "
               "validation). A validation loss that rises while the training loss falls is overfitting; curves still "
               "falling at the last epoch suggest more epochs would help.")
    return Figure("curves", "Training and validation curves", caption, png)


def roc_fig(ev: Evidence, colors: dict, notes: list[str]) -> Figure:
    from sklearn.metrics import roc_curve

    from .figures import roc_det_figure

    res = ev.results["results"]
    if "eval_bona_fide" not in ev.evaluation:
        raise Skipped("evaluation.pt holds no bona fide flags (eval_bona_fide)")
    bf = np.asarray(ev.evaluation["eval_bona_fide"]).astype(bool)
    if bf.all() or not bf.any():
        raise Skipped("the evaluation split does not hold both bona fide and attack samples, so there is no curve")
    seed = ev.run.seeds[0]
    rec = (ev.results.get("recommendation") or {}).get("method")
    curves = []
    for name in _names(res):
        scores = bona_fide_scores(ev.logits(name, seed))
        fpr, tpr, _ = roc_curve(bf, scores)
        pad = res[name].get("pad") or {}
        thresholds = (pad.get("threshold") or {}).get("per_seed") or []
        t = thresholds[0] if thresholds else None
        point = None
        if t is not None and np.isfinite(t):
            point = (float(np.mean(scores[~bf] >= t)), float(np.mean(scores[bf] < t)))
        curves.append({"name": name, "apcer": fpr, "bpcer": 1 - tpr, "point": point, "n_attack": int((~bf).sum()),
                       "n_bona_fide": int(bf.sum()), "highlight": name == rec})
    png = roc_det_figure(curves, colors)
    first = next((r["pad"] for r in res.values() if "pad" in r), {})
    split = ev.results.get("evaluated_on", "test")
    caption = (f"Presentation-attack detection on the {_esc(split)} split, seed {seed}'s student of every method (one "
               "model per curve: pooling seeds would mix differently calibrated scores). Score = P(bona fide) = "
               "softmax of the logits, class 1; a sample is accepted as bona fide when its score reaches the "
               "threshold. APCER = attacks accepted (all species pooled here), BPCER = bona fide rejected. The dot on "
               f"each curve is the threshold chosen on the validation split (criterion '{_esc(first.get('criterion', ''))}'),"
               f" applied to {_esc(split)}: the operating point the reported ACER comes from. ROC: up and left is "
               "better; DET (normal deviate axes, which spread out the low error rates): down and left is better. "
               f"{int(bf.sum())} bona fide and {int((~bf).sum())} attack samples: with few samples the curves are steps.")
    if first.get("scoring") == "video":
        caption += (" This run scores each video by its frames' mean score; the curves here are per frame (the run "
                    "folder keeps no video ids), so the dots can sit off the reported per-video figures.")
        notes.append("ROC/DET: the run scores per video, the curves are drawn per frame (the run folder keeps no video ids)")
    return Figure("roc_det", "ROC and DET curves (presentation-attack detection)", caption, png)


# ---------------------------------------------------------------------------------------- regions (the data)


def _rad_jobs(ev: Evidence) -> tuple[list[str], list[str]]:
    """(the student jobs trained with a RAD term: their history records a ``rad`` loss term, the jobs whose
    history could not be read, so that whether they did is not known)."""
    out, unread = [], []
    for job, _ in _trained_jobs(ev.results["results"]):
        try:
            hist, _ = ev.history(job, ev.run.seeds[0])
        except Skipped:
            unread.append(job)
            continue
        if "rad" in hist[0]:
            out.append(job)
    return out, unread


def _load_data(run: artifacts.RunFolder, data_root: Optional[str]):
    """The run's data, read with its saved configuration; ``data_root`` replaces ``data.path`` (a dataset
    read from a folder), or names the moved ``.npz`` / manifest ``.csv`` (the file itself, or a folder holding
    a file of the same name). Raises ``Skipped`` when it cannot be read."""
    from ..data.base import load_dataset

    cfg = dataclasses.replace(run.config.data)
    name = str(cfg.name)
    is_file = name.endswith((".npz", ".csv")) or "/" in name
    if data_root:
        root = Path(data_root)
        if not root.exists():
            raise Skipped(f"--data-root '{data_root}' does not exist")
        if is_file:
            cfg.name = str(root if root.is_file() else root / Path(name).name)
        else:
            cfg.path = str(root)
    try:
        return load_dataset(cfg)
    except (UserError, OSError) as exc:
        where = cfg.name if is_file else (cfg.path or f"the {cfg.name} dataset")
        msg = str(exc).rstrip(".")
        raise Skipped(f"the run's data ({where}) cannot be read: {msg}; give its new place with --data-root") from None


@torch.no_grad()
def region_blocks(ev: Evidence, data_root: Optional[str], log: Callable[[str], None]) -> tuple[list[dict], int, int, int]:
    """(blocks for ``figures.regions_figure``, sample count, spatial dims of the trunk, seed) for every RAD student
    of the run's first seed: per pyramid level the mean region weight (``distill.rad.region_weights``, with the
    student's own weighting, temperature and levels) and the fraction of samples whose region argmax agrees
    between the teacher and the student, on the validation split (at most ``REGION_SAMPLES`` samples, evenly
    spaced)."""
    from ..distill import kl_at_temperature, region_weights
    from .loop import Split, eval_batches
    from .samples import SampleSplit

    run = ev.run
    jobs, unread = _rad_jobs(ev)
    if not jobs:
        if unread:
            raise Skipped(f"the training history of {unread[0]} (and any other student) could not be read, so the "
                          "students trained with RAD cannot be told")
        if not _trained_jobs(ev.results["results"]) and ev.results.get("diverged"):
            raise Skipped("every student of this run diverged, so no student trained with RAD was saved")
        raise Skipped("no student of this run was trained with RAD")
    data = _load_data(run, data_root)
    val = data.indices("val")
    y_run = ev.evaluation.get("y_val")
    if y_run is not None and (len(val) != len(y_run) or not np.array_equal(np.asarray(data.labels)[val], y_run)):
        raise Skipped("the data found is not the run's: its validation labels differ from those in evaluation.pt")
    if len(val) > REGION_SAMPLES:  # evenly spaced, deterministic
        val = val[np.linspace(0, len(val) - 1, REGION_SAMPLES).round().astype(int)]
    seed = run.seeds[0]  # one student per method: the figure shows where RAD looks, not a seed average
    try:
        teacher, _ = artifacts.load_network(artifacts.model_files(run, TEACHER)[0][1])
        students = {job: artifacts.load_network(artifacts.model_files(run, job, seed)[0][1])[0] for job in jobs}
    except UserError as exc:  # a missing or damaged model file: this figure cannot be drawn, the others can
        raise Skipped(str(exc)) from None
    mods = sorted({*teacher.modalities, *(m for net in students.values() for m in net.modalities)})
    if data.in_memory:
        split = Split({m: torch.from_numpy(np.ascontiguousarray(data.modalities[m][val])).float() for m in mods},
                      torch.from_numpy(np.asarray(data.labels)[val]).long())
    else:
        split = SampleSplit(data, val, mods, "cpu", workers=0)
    settings = {job: method_config(run.config, job.partition("@")[0]).distill for job in jobs}
    learned = [job for job in jobs if settings[job].rad_weighting == "authors"]
    students = {job: net for job, net in students.items() if job not in learned}
    if not students:  # the attention the weighting learned is the method's, not saved with the student
        raise Skipped(f"{learned[0]} weighted its regions with the 'authors' attention, which is learned during "
                      "training and not saved with the student, so its region weights cannot be shown")
    sums = {key: None for key in students}
    dims = None
    for start in range(0, len(split), REGION_BATCH):
        stop = min(start + REGION_BATCH, len(split))
        inputs = next(eval_batches(split, mods, start, stop, REGION_BATCH))
        target = split.labels[start:stop]
        t_fmap = teacher(inputs).fmap
        dims = getattr(teacher, "region_dims", t_fmap.dim() - 2)  # video nets pool time before the pyramid
        for job, net in students.items():
            c = settings[job]
            how = {"from_finest": c.rad_pool == "finest", "remap": c.rad_remap == "square"}
            t_reg = teacher.region_logits(t_fmap, c.rad_levels, **how)
            s_reg = net.region_logits(net(inputs).fmap, c.rad_levels, **how)
            w = region_weights(kl_at_temperature(t_reg, s_reg, c.temperature), t_reg, target, c.rad_weighting)
            agree = (t_reg.argmax(-1) == s_reg.argmax(-1)).double()
            part = torch.stack([w.double().sum(0), agree.sum(0)])
            sums[job] = part if sums[job] is None else sums[job] + part
    n = len(split)
    if isinstance(split, SampleSplit):
        split.close()
    blocks = []
    for job in jobs:
        c = settings[job]
        mean = sums[job].numpy() / n  # (2, R)
        levels = [1] if dims == 0 else list(c.rad_levels)
        grids = {"weights": [], "agree": []}
        at = 0
        for lv in levels:
            size = 1 if dims == 0 else lv**dims  # regions of this level, row-major (models.pyramid.region_pool)
            shape = (1, size) if dims <= 1 else (lv**(dims - 1), lv)
            for key, row in (("weights", mean[0]), ("agree", mean[1])):
                grids[key].append(row[at:at + size].reshape(shape))
            at += size
        blocks.append({"name": job, "weighting": c.rad_weighting, "levels": levels, **grids})
    log(f"regions: {len(jobs)} RAD student(s) of seed {seed} on {n} validation samples")
    return blocks, n, dims, seed


def regions_fig(ev: Evidence, data_root: Optional[str], log) -> Figure:
    from .figures import regions_figure

    blocks, n, dims, seed = region_blocks(ev, data_root, log)
    png = regions_figure(blocks, dims)
    grid = {0: "one region (the trunk's features are a vector)", 1: "a 1 x n strip per level (a 1-D series: time runs "
            "left to right)", 2: "an n x n grid per level (rows top to bottom, columns left to right, as the image)"}
    weighting = {"uniform": "uniform: every region weighs 1/R",
                 "attention": "attention: parameter-free attention over the per-region losses",
                 "confidence": "confidence: the teacher's region probability of the true class, 0 where the teacher's "
                               "region is wrong"}
    used = sorted({b["weighting"] for b in blocks})
    caption = (f"For each student trained with region-aware distillation (RAD) (seed {seed}'s, with the teacher), on "
               f"{n} validation samples; the pyramid is drawn as {grid.get(dims, 'a grid per level')}. First row: the "
               "mean weight RAD gives each region of the last trunk feature map, relative to uniform: 1.00 = the "
               "uniform weight 1/R (R = regions of all levels together), red above it (regions the student was taught "
               "most from), blue below. For each sample the weights sum to 1 over the R regions, or to 0 under "
               "'confidence' when the teacher is wrong in every region, which pulls every cell below 1 ("
               + "; ".join(_esc(weighting.get(w, w)) for w in used) + "). Second row: the fraction of samples whose region prediction "
               "(the region's pooled feature through the network's own head) names the same class for the teacher and "
               "the student: how far the student hallucinates the teacher region by region. Low agreement with high "
               "weight marks regions where the student still differs from the teacher where it counts.")
    return Figure("regions", "RAD: region weights and teacher/student agreement", caption, png)


# ------------------------------------------------------------------------------------------------- the page

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1250px;margin:1.5em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .55em;
vertical-align:top;text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.decision{border:2px solid #2e7d32;background:#f1f8f1;padding:.8em 1.2em;border-radius:6px}
.decision h2{margin-top:.2em;border:none}
.warn{border:2px solid #c62828;background:#fdecea;padding:.6em 1em;border-radius:6px;margin:.8em 0}
.note{border:1px solid #b0b0b0;background:#f7f7f7;padding:.5em 1em;border-radius:6px;margin:.6em 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.93em;color:#333;max-width:1100px}tr.rec td{background:#eef7ee;font-weight:600}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}.small{font-size:.85em;color:#555}
"""


def _summary_cell(s: Optional[dict], digits: int = 2) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    sd = f" ± {100 * s['std']:.{digits}f}" if s.get("std") is not None else ""
    return f"{100 * s['mean']:.{digits}f}{sd}"


def decision_html(results: dict, run: artifacts.RunFolder) -> str:
    """The box at the top: what to deploy, why, what to expect, at what cost."""
    res = results["results"]
    split = results.get("evaluated_on", "test")
    rec = results.get("recommendation")
    seeds = run.seeds
    t_mods, s_mods = results.get("teacher_modalities", []), results.get("student_modalities", [])
    parts = ['<div class="decision"><h2>Which method to deploy, and why</h2>']
    if rec is None and results.get("diverged"):
        parts.append(f"<p><b>No recommendation</b>: the students of {_esc(', '.join(results['diverged']))} diverged "
                     "(their loss became NaN or infinite), and no other single-network student finished; lower "
                     "train.lr or the distillation loss weights and run it again.</p>")
    elif rec is None:
        parts.append("<p><b>No recommendation</b>: this run trained no single-network student.</p>")
    else:
        m = rec["method"]
        r = res[m]
        parts.append(f"<p style='font-size:1.25em'>Deploy <b>{_esc(m)}</b>: one network that sees "
                     f"<b>{_esc(_mods(r['modalities']))}</b> only.</p>")
        vs = rec.get("vs_unimodal_val")
        held_out = (f"the {_esc(split)} split played no part" if split != "val" else
                    "there is no separate test split, so the figures below are on this same split and optimistic")
        over = rec.get("passed_over")
        if rec.get("rule", "best") == "significant" and UNIMODAL in res:
            rule = ("the distilled single-network student with the highest mean validation accuracy among those whose "
                    "gain over unimodal is significant, else unimodal")
        else:
            rule = "the highest mean validation accuracy among single-network students"
        why = (f"Chosen on the <b>validation split only</b> ({held_out}) by the rule: {rule}; "
               f"{_pct(rec['val_accuracy'])} % over {len(seeds)} seed(s)")
        if over is not None:
            ov = over["vs_unimodal_val"]
            gain = (f"{_pts(ov['mean_diff'])} points on one seed, with no interval" if ov.get("ci95") is None else
                    f"{_pts(ov['mean_diff'])} points, 95 % interval {_ci(ov['ci95'])}")
            instead = ("the plain student, which needs no teacher, is deployed" if m == UNIMODAL else
                       f"<b>{_esc(m)}</b>, whose gain is significant, is deployed")
            why += (f". The best on validation, <b>{_esc(over['method'])}</b>, was {gain} over unimodal: <b>not "
                    f"significant</b>, within seed noise, so {instead} (<code>recommend=best</code> would take "
                    f"{_esc(over['method'])})")
        if over is not None and m == UNIMODAL:
            why += "."
        elif UNIMODAL not in res:
            why += (". This run trained no unimodal student, so there is no baseline to tell whether distillation "
                    "helped: add unimodal to --methods.")
        elif m == UNIMODAL:
            why += (". No distilled student beat the plain unimodal student on validation, so distillation did not pay "
                    "off here: deploy the simplest model, which needs no teacher to retrain.")
        elif vs is None:
            why += "."
        elif vs.get("ci95") is None:
            why += (f"; {_pts(vs['mean_diff'])} points over unimodal on validation, but with one seed there is no "
                    "interval: run more seeds before trusting the difference.")
        else:
            sig = ("<b>significant</b> (the interval excludes 0)" if vs["significant"] else
                   "<b>not significant</b> (the interval includes 0: within seed noise, so unimodal, which needs no "
                   "teacher, is an equally defensible choice)")
            why += (f"; paired by seed it is {_pts(vs['mean_diff'])} points over unimodal on validation, 95 % "
                    f"interval {_ci(vs['ci95'])}, {sig}; it won {vs['wins']}, tied {vs['ties']} and lost "
                    f"{vs['losses']} of {vs['n']} seeds.")
        parts.append(f"<p>{why}</p>")
        a = r["accuracy"]
        where = f"the {_esc(split)} split" if split != "val" else "the validation split (optimistic: it also chose the epochs and the method)"
        expect = (f"What to expect: on {where} <b>{_esc(m)}</b> reached {_summary_cell(a)} % accuracy "
                  f"(mean ± sd over seeds; {_interval(a.get('ci95'), signed=False)})")
        if UNIMODAL in res and m != UNIMODAL:
            vt = r.get("vs_unimodal")
            expect += f", unimodal {_summary_cell(res[UNIMODAL]['accuracy'])} %"
            if vt is not None:
                expect += (f" (paired difference {_pts(vt['mean_diff'])} points, {_interval(vt.get('ci95'))}, "
                           f"{'significant' if vt['significant'] else 'not significant'})")
        if TEACHER in res:
            expect += (f"; the teacher, which also needs {_esc(_mods(t_mods))}, reached "
                       f"{_pct(res[TEACHER]['accuracy']['mean'])} %")
        expect += f"; macro-F1 {_summary_cell(r['macro_f1'])} %."
        pad = r.get("pad")
        if pad and pad.get("acer", {}).get("mean") is not None:
            expect += (f" Anti-spoofing: ACER {_summary_cell(pad['acer'])} %, APCER {_summary_cell(pad['apcer'])} %, "
                       f"BPCER {_summary_cell(pad['bpcer'])} % at the threshold chosen on validation.")
        gap = r.get("gap_recovered")
        if gap is not None:
            expect += (f" It recovered {100 * gap['mean']:.0f} % of the teacher's margin over unimodal (95 % interval "
                       f"[{100 * gap['ci95'][0]:.0f}, {100 * gap['ci95'][1]:.0f}] %).")
        parts.append(f"<p>{expect}</p>")
        parts.append(f"<p>Modalities: the teacher saw <b>{_esc(_mods(t_mods))}</b> (training only); the deployed "
                     f"student sees <b>{_esc(_mods(s_mods))}</b>.</p>")
    ens = [n for n in res if res[n].get("networks", 1) > 1]
    cost = ("Inference cost: the recommended student is <b>one network</b>." if rec is not None else
            "Inference cost: a single-network student is <b>one network</b>.")
    if ens:
        best = max(ens, key=lambda n: res[n]["val_accuracy"]["mean"])
        b = res[best]
        cost += (f" Ensembles run <b>{b.get('networks', 2)} networks</b> (twice the compute and memory) and are not "
                 f"recommended on that account; the best on validation, {_esc(best)}, reached "
                 f"{_pct(b['val_accuracy']['mean'])} % on validation and {_summary_cell(b['accuracy'])} % on "
                 f"{_esc(split)}")
        ve = b.get("vs_unimodal_ensemble")
        if ve is not None and ve.get("ci95") is not None:
            cost += (f"; against {UNIMODAL_ENSEMBLE} (the same cost) {_pts(ve['mean_diff'])} points, 95 % interval "
                     f"{_ci(ve['ci95'])}, {'significant' if ve['significant'] else 'not significant'}")
        cost += "."
    parts.append(f"<p>{cost}</p>")
    advice = (rec or {}).get("standard_learner")
    if advice is not None:
        line = learner_line(advice, rec["method"]).split(": ", 1)[1]  # the sentence without its "but ...:" lead
        parts.append(f"<p><b>But a standard learner does better on validation</b>: {_esc(line)}"
                     ". See <a href='#learners'>Standard learners</a> below.</p>")
    if rec is not None:
        parts.append(f"<p class='small'>Next: <code>mmhal export {_esc(run.path)} --method {_esc(rec['method'])}</code> "
                     f"writes it for deployment; <code>mmhal predict {_esc(run.path)} --data NEW_DATA</code> applies it.</p>")
    parts.append("</div>")
    return "\n".join(parts)


def learners_html(results: dict) -> str:
    """The section of standard learners (reference rows beside the methods; ``engine.learners``), or one line on why
    there are none; nothing for a run of an mmhal that fitted none."""
    standard = results.get("standard_learners")
    if not standard:
        return ""
    head = ("<h2 id='learners'>Standard learners on the same split</h2><p>What a learner a practitioner fits first "
            "reaches on the same train, validation and evaluation samples: each learner's settings and inputs chosen "
            "on validation; reference rows, not distillation methods (mmhal exports networks only).</p>")
    if standard.get("skipped"):
        return head + f"<p class='small'>None fitted: {_esc(standard['skipped'])}.</p>"
    split = results.get("evaluated_on", "test")
    rows = []
    for r in standard.get("rows", []):
        vs = r.get("vs_unimodal")
        vs_s = "" if vs is None else f"{_pts(vs['mean_diff'])} {_interval(vs.get('ci95'))}"
        rows.append(f"<tr><td>{_esc(LEARNER_TITLES.get(r['learner'], r['learner']))}</td>"
                    f"<td>{_esc(_mods(r['modalities']))}</td><td>{_esc(r['view'])}</td>"
                    f"<td>{_summary_cell(r['accuracy'])}</td><td>{_summary_cell(r['val_accuracy'])}</td>"
                    f"<td>{_esc(vs_s)}</td></tr>")
    left = "".join(f"<li>{_esc(n)}: {_esc(w)}</li>" for n, w in (standard.get("left_out") or {}).items())
    return (head + f"<table><tr><th>learner</th><th>modalities</th><th>inputs</th><th>{_esc(split)} accuracy %</th>"
            "<th>validation accuracy %</th><th>vs unimodal (points, 95 % interval)</th></tr>" + "".join(rows)
            + "</table>" + (f"<p class='small'>Left out:</p><ul>{left}</ul>" if left else "")
            + f"<p class='small'>Fitted in {standard.get('seconds', 0):.0f} s. Inputs: raw = every value; statistics = "
            "per-channel summary statistics of sequences. Generalized distillation fits the student-input learner to "
            "the teacher-input learner's cross-fitted probabilities mixed with the labels.</p>")


def warnings_html(results: dict) -> str:
    parts = []
    if results.get("evaluated_on", "test") != "test":
        parts.append("<div class='warn'><b>Evaluated on the validation split.</b> The data has no test split, so every "
                     "figure labelled 'val' is on the split that also chose each student's epoch and the "
                     "recommendation: those figures are optimistic. Hold out a test split for an unbiased estimate."
                     "</div>")
    for w in results.get("warnings", []):
        if parts and "no test split" in w:  # said in the box above
            continue
        parts.append(f"<div class='warn'><b>Warning:</b> {_esc(w)}</div>")
    return "\n".join(parts)


def methods_table_html(results: dict) -> str:
    """The plain-language table: one row per method."""
    res = results["results"]
    split = results.get("evaluated_on", "test")
    rec = (results.get("recommendation") or {}).get("method")
    has_pad = any("pad" in r for r in res.values())
    head = ["method", "what it is", "networks at inference", "sees", "validation acc. %", f"{split} acc. %",
            f"{split}: vs unimodal (points, 95 % interval)", "in words"]
    if has_pad:
        head += [f"{split} ACER %", "ACER vs unimodal (points; negative = better)"]
    rows = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for name in _names(res):
        r = res[name]
        vs = r.get("vs_unimodal")
        if name == TEACHER:
            diff, words = (f"{_pts(vs['mean_diff'])} {_ci(vs.get('ci95'))}" if vs else ""), "the upper reference (not deployable)"
        elif name == UNIMODAL:
            diff, words = "", "the baseline"
        else:
            diff = f"{_pts(vs['mean_diff'])} {_ci(vs.get('ci95'))}" if vs else ""
            words = _verdict(vs)
        if name == rec:
            words = "\u2605 recommended (validation)" + (f"; {words}" if words else "")
        cells = [f"<b>{_esc(name)}</b>", _esc(_description(name, r)), str(r.get("networks", 1)),
                 _esc(_mods(r["modalities"])), _summary_cell(r["val_accuracy"]), _summary_cell(r["accuracy"]),
                 _esc(diff), _esc(words)]
        if has_pad:
            pad = r.get("pad") or {}
            av = r.get("acer_vs_unimodal")
            cells += [_summary_cell(pad.get("acer")),
                      _esc(f"{_pts(av['mean_diff'])} {_ci(av.get('ci95'))} ({_verdict(av, lower_is_better=True)})")
                      if av else ""]
        cls = " class='rec'" if name == rec else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    rows.append("</table>")
    n = len(results.get("seeds", []))
    rows.append(f"<p class='small'>Accuracy: mean ± sd over {n} seed(s). 'vs unimodal': the mean of the per-seed "
                "differences with its 95 % t-interval; significant when the interval excludes 0. The teacher's "
                "difference is its margin over unimodal.</p>")
    return "\n".join(rows)


def _saved_shapes(run: artifacts.RunFolder) -> dict:
    """The per-sample shape of every modality as the teacher's model file records it ({} when it cannot be read)."""
    try:
        ckpt = load_mapped(run.path / "models" / artifacts.TEACHER_FILE)
        return dict(ckpt.get("shapes") or {})
    except Exception:  # the row of the facts table stays empty; every figure reads its own files
        return {}


def facts_html(results: dict, run: artifacts.RunFolder) -> str:
    cfg = run.config
    info = results.get("data_info") or {}
    shapes = info.get("modalities") or _saved_shapes(run)
    classes = results.get("class_names") or []
    split = results.get("evaluated_on", "test")
    epochs = str(cfg.train.epochs)
    per_method = {m: o for m, o in cfg.method_overrides.items() if "train.epochs" in o}
    if per_method:
        epochs += " (" + ", ".join(f"{m}: {o['train.epochs']}" for m, o in per_method.items()) + ")"
    facts = [
        ("dataset", f"{results.get('dataset', cfg.data.name)}" + (f" ({info['source']})" if info.get("source") else "")),
        ("classes", f"{len(classes)}: {', '.join(map(str, classes[:30]))}{' ...' if len(classes) > 30 else ''}"),
        ("modalities (per-sample shape)", ", ".join(f"{m} {list(s)}" for m, s in shapes.items())),
        ("teacher / student modalities", f"{_mods(results.get('teacher_modalities', []))} / "
                                         f"{_mods(results.get('student_modalities', []))}"),
        ("split", f"{info.get('split', '')} {('(' + info['split_sizes'] + ')') if info.get('split_sizes') else ''}"),
        ("evaluated on", split + ("" if split == "test" else "  \u26a0 the validation split (no test split)")),
        ("seeds", ", ".join(map(str, results.get("seeds", [])))),
        ("epochs", epochs),
        ("model", f"{cfg.model.backbone}, width {cfg.model.width}, {cfg.model.blocks} block(s) per stage"),
        ("distillation settings", f"T = {cfg.distill.temperature}, RAD: lambda {cfg.distill.rad_lambda}, weighting "
                                  f"{cfg.distill.rad_weighting}, levels {list(cfg.distill.rad_levels)}; DAD: lambda "
                                  f"{cfg.distill.dad_lambda}, {cfg.distill.dad_variant}; KD alpha {cfg.distill.kd_alpha}"),
        ("teacher", f"weights {results.get('teacher', {}).get('digest', '?')}, from the "
                    f"{results.get('teacher', {}).get('source', '?')}"),
        ("run", f"{run.path} ({results.get('seconds', '?')} s, mmhal {results.get('mmhal', '?')})"),
    ]
    if cfg.method_overrides:
        facts.append(("per-method settings", "; ".join(f"{m}: {o}" for m, o in cfg.method_overrides.items())))
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    return f"<h2>Run facts</h2><table>{rows}</table>"


def page_html(results: dict, run: artifacts.RunFolder, figures: list[Figure], notes: list[str]) -> str:
    dataset = results.get("dataset", "")
    title = f"mmhal report: {dataset}, student {_mods(results.get('student_modalities', []))}"
    body = [f"<h1>{_esc(title)}</h1>",
            f"<p class='small'>Run folder <code>{_esc(run.path)}</code>; report made "
            f"{datetime.datetime.now().isoformat(timespec='seconds')} by mmhal {__version__}.</p>",
            warnings_html(results), decision_html(results, run),
            "<h2>All methods in plain words</h2>", methods_table_html(results), learners_html(results),
            facts_html(results, run)]
    if notes:
        body.append("<h2>Figures left out</h2><div class='note'><ul>"
                    + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul></div>")
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        body.append(f"<h2 id='{f.name}'>{_esc(f.title)}</h2><figure><img id='fig-{f.name}' alt='{_esc(f.title)}' "
                    f"src='data:image/png;base64,{data}'><figcaption>{f.caption} <span class='small'>(also "
                    f"<a href='{f.name}.png'>{f.name}.png</a>)</span></figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------------------------------------ the command


def build(run: artifacts.RunFolder, data_root: Optional[str] = None, regions: bool = True, progress: bool = True,
          log: Callable[[str], None] = print) -> tuple[dict[str, bytes], list[Figure], list[str]]:
    """(files to write: index.html and the PNGs, the figures, notes on what was left out) of the report on ``run``."""
    from tqdm.auto import tqdm

    from .figures import MISSING_GLYPHS, method_colors

    MISSING_GLYPHS.clear()
    ev = Evidence(run)
    res = run.results["results"]
    colors = method_colors(_names(res))
    steps: list[tuple[str, Callable[[list[str]], Figure]]] = [
        ("accuracy", lambda notes: accuracy_fig(ev, colors)),
        ("paired differences", lambda notes: differences_fig(ev, colors)),
        ("per-class accuracy", lambda notes: per_class_fig(ev, colors)),
        ("confusion matrices", lambda notes: confusion_fig(ev, colors)),
        ("training curves", lambda notes: curves_fig(ev, colors, notes)),
    ]
    notes: list[str] = []
    if regions:
        steps.append(("RAD regions", lambda notes: regions_fig(ev, data_root, log)))
    else:
        notes.append("RAD regions: left out, as asked (--no-regions)")
    if any("pad" in r for r in res.values()):
        steps.append(("ROC/DET", lambda notes: roc_fig(ev, colors, notes)))
    figures = []
    bar = tqdm(steps, desc="report", unit="figure", disable=not progress, file=sys.stderr, leave=False)
    for what, make in bar:
        bar.set_postfix_str(what)
        try:
            figures.append(make(notes))
        except Skipped as exc:
            notes.append(f"{what}: left out: {exc}")
    bar.close()
    if MISSING_GLYPHS:
        shown = " ".join(sorted(MISSING_GLYPHS)[:8]) + (" ..." if len(MISSING_GLYPHS) > 8 else "")
        notes.append(f"figures: {len(MISSING_GLYPHS)} character(s) of the names ({shown}) are not in the figures' "
                     "font and show as empty boxes; index.html shows the names in full")
    files = {f"{f.name}.png": f.png for f in figures}
    files[INDEX] = page_html(run.results, run, figures, notes).encode("utf-8", "surrogateescape")
    return files, figures, notes


def report_run(run_path, out=None, data_root: Optional[str] = None, regions: bool = True, progress: bool = True,
               log: Optional[Callable[[str], None]] = None) -> tuple[Path, list[str], list[str], float]:
    """``mmhal report``: an HTML page and PNG figures of the finished run in ``run_path``, written to ``out``
    (default RUN/report). Returns (the page, the figures' names, notes on what was left out, seconds)."""
    t0 = time.time()
    run = artifacts.open_run(str(run_path))
    require_plotting(pad=any("pad" in r for r in run.results["results"].values()))
    folder = outputs.out_path(str(out)) if out else run.path / "report"
    check_out(folder)
    files, figures, notes = build(run, data_root, regions=regions, progress=progress,
                                  log=log or (lambda msg: print(msg, file=sys.stderr)))
    write_report(folder, files, run.path)
    return folder / INDEX, [f.name for f in figures], notes, time.time() - t0


def main(args) -> int:
    """``mmhal report RUN [--out DIR] [--data-root DIR] [--no-regions] [--no-progress]``: 0 on success."""
    page, figures, notes, seconds = report_run(args.run, args.out, args.data_root, regions=not args.no_regions,
                                               progress=not args.no_progress)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"report: {page} ({len(figures)} figures, {seconds:.1f} s)")
    return 0

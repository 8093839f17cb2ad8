"""Standard learners beside every comparison: what scikit-learn (and LightGBM, where it is installed) reach on the
same split, from the student's modalities and from all the teacher's.

A distilled network is worth deploying only if it beats what a practitioner would fit first. For data whose
modalities are vectors, sequences or small images (at most ``MAX_IMAGE_VALUES`` values per sample), held in memory,
``mmhal run`` fits these learners on the same train split, chooses each one's settings and inputs on the
validation split alone, and reports their accuracy on the evaluation split as reference rows, apart from the
distillation methods:

* ``hgb``: ``HistGradientBoostingClassifier`` (gradient-boosted trees);
* ``logreg``: ``LogisticRegression`` on standardised inputs;
* ``lgbm``: ``LGBMClassifier`` (without bagging), only where ``lightgbm`` is installed (not a dependency of mmhal);
* ``gd``: generalized distillation (Lopez-Paz, Bottou, Schölkopf, Vapnik, ICLR 2016) with the learners above: the
  teacher learner (the best on all the teacher's modalities) gives *cross-fitted* class probabilities on the
  train split (each sample's from a model fitted on the other folds, so they are not its own memorised label),
  softened with temperature T; the student learner (on the student's modalities) is fitted to
  ``(1 - lambda) * label + lambda * soft probabilities``, through sample weights: each train sample appears once per
  class with the weight of that class in its target, which a learner minimising the log-loss fits exactly.

Inputs (``feature_views``): ``raw`` (every value of the modalities, flattened; for sequences only up to
``MAX_RAW_VALUES`` values per sample) and, where a modality is a sequence (C, L), ``statistics``: per channel mean, standard
deviation, minimum, maximum, the 10/25/50/75/90 % quantiles, the mean absolute difference of neighbouring steps
and the rate of crossings of the channel's own mean, and over the channels (a 3-axis sensor's magnitude) the
mean and standard deviation of the Euclidean norm per step (``summary_statistics``). Vectors and small images
enter the statistics view as their values.

Every learner's settings and view are chosen on validation accuracy among a fixed, small grid (``GRIDS``, the
same for every dataset), so that they stay cheap (4 s of the default HAPT run); none draws random numbers, so
each is fitted once and its figure is shared by every seed, like the teacher's. They run on one thread
(``threadpoolctl``), as small networks train. ``benchmarks/peers.py`` tunes a wider set of learners with a larger
budget, outside a run.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

MAX_IMAGE_VALUES = 256  # an image modality with more values per sample is not for these learners (use a network)
# The raw view of sequences with more values per sample than this is left out of a run (boosting on hundreds of
# raw time steps takes minutes, and their statistics are what a practitioner fits first); vectors are always raw.
MAX_RAW_VALUES = 256
GD_TEMPERATURE = 2.0
GD_LAMBDA = 0.5
GD_FOLDS = 3


# ----------------------------------------------------------------------------------------------- inputs


def summary_statistics(x: np.ndarray) -> np.ndarray:
    """(N, C, L) sequences -> (N, 11 C + 2) features: per channel mean, sd, min, max, quantiles 10/25/50/75/90 %,
    mean |x[t+1] - x[t]|, rate of crossings of the channel's mean; then mean and sd of the norm over channels."""
    x = np.asarray(x, dtype=np.float64)
    q = np.quantile(x, [0.1, 0.25, 0.5, 0.75, 0.9], axis=2)  # (5, N, C)
    centred = x - x.mean(axis=2, keepdims=True)
    crossings = (np.diff(np.signbit(centred), axis=2)).mean(axis=2) if x.shape[2] > 1 else np.zeros(x.shape[:2])
    steps = np.abs(np.diff(x, axis=2)).mean(axis=2) if x.shape[2] > 1 else np.zeros(x.shape[:2])
    norm = np.sqrt((x ** 2).sum(axis=1))  # (N, L)
    parts = [x.mean(2), x.std(2), x.min(2), x.max(2), *q, steps, crossings, norm.mean(1, keepdims=True),
             norm.std(1, keepdims=True)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def applicable(shapes: dict[str, tuple[int, ...]], modalities, in_memory: bool = True) -> Optional[str]:
    """None when the learners apply to ``modalities`` (per-sample ``shapes``); else why not, as a clause."""
    if not in_memory:
        return "the data are read from files"
    for m in modalities:
        s = tuple(shapes[m])
        if len(s) == 3 and int(np.prod(s)) > MAX_IMAGE_VALUES:
            return f"'{m}' is an image of {int(np.prod(s))} values per sample (over {MAX_IMAGE_VALUES})"
        if len(s) > 3:
            return f"'{m}' is a clip"
    return None


def feature_views(arrays: dict[str, np.ndarray], modalities, max_raw: int = MAX_RAW_VALUES) -> dict[str, np.ndarray]:
    """The learners' inputs from the modalities' arrays (``arrays[m]`` of shape (N, *sample)): ``raw`` (every
    value, flattened) unless a sequence makes it longer than ``max_raw`` values, and ``statistics`` where a
    modality is a sequence (its ``summary_statistics``; the other modalities' values as they are)."""
    mods = list(modalities)
    n = len(arrays[mods[0]])
    flat = {m: np.asarray(arrays[m], dtype=np.float32).reshape(n, -1) for m in mods}
    sequences = [m for m in mods if arrays[m].ndim == 3]
    views = {}
    if not sequences or sum(flat[m].shape[1] for m in mods) <= max_raw:
        views["raw"] = np.concatenate([flat[m] for m in mods], axis=1)
    if sequences:
        views["statistics"] = np.concatenate([summary_statistics(arrays[m]) if m in sequences else flat[m]
                                              for m in mods], axis=1)
    return views


# ----------------------------------------------------------------------------------------------- learners


def has_lightgbm() -> bool:
    return importlib.util.find_spec("lightgbm") is not None


def _hgb(params: dict, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **params)


def _logreg(params: dict, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, **params))


def _lgbm(params: dict, seed: int):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1, **params)


@dataclass(frozen=True)
class Learner:
    name: str
    make: Callable[[dict, int], object]
    grid: tuple[dict, ...]


#: Each learner's grid: tried on every view, chosen on validation accuracy. Small on purpose: the learners of a
#: run take seconds (``benchmarks/peers.py`` tunes them with a larger budget). LightGBM without bagging (its
#: column sampling draws from a fixed seed), so each learner is fitted once and its figure is shared by every seed.
#: Trees of 15 leaves, and LightGBM on half the features per tree, were chosen over 31 leaves (and 80 % of the
#: features) on validation (benchmarks/SCIENCE.md §9): as accurate on average over 8 inputs, 28 % and 45 % faster.
GRIDS = {
    "hgb": ({"learning_rate": 0.2, "max_iter": 50, "max_leaf_nodes": 15, "max_bins": 32},),
    "logreg": ({"C": 1.0}, {"C": 0.1}),
    "lgbm": ({"learning_rate": 0.2, "n_estimators": 50, "num_leaves": 15, "max_bin": 32, "colsample_bytree": 0.5},),
}


def learners() -> list[Learner]:
    """The standard learners of a run: hgb and logreg, and lgbm where lightgbm is installed."""
    out = [Learner("hgb", _hgb, GRIDS["hgb"]), Learner("logreg", _logreg, GRIDS["logreg"])]
    if has_lightgbm():
        out.append(Learner("lgbm", _lgbm, GRIDS["lgbm"]))
    return out


def _fit(learner: Learner, params: dict, seed: int, X, y, sample_weight=None):
    model = learner.make(params, seed)
    if sample_weight is None:
        return model.fit(X, y)
    last = model.steps[-1][0] if hasattr(model, "steps") else None  # a pipeline: the weight goes to its classifier
    key = f"{last}__sample_weight" if last else "sample_weight"
    return model.fit(X, y, **{key: sample_weight})


def _proba(model, X, num_classes: int) -> np.ndarray:
    """Class probabilities (N, K), with a zero column for a class the model never saw."""
    p = model.predict_proba(X)
    out = np.zeros((len(X), num_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out


@dataclass
class Choice:
    """A learner's chosen settings and view, and its figures (per seed: one entry per run seed)."""

    learner: str
    inputs: str  # "student" or "teacher"
    modalities: list[str]
    view: str
    params: dict
    val_accuracy: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


def choose(learner: Learner, views: dict, y: dict, num_classes: int, seed: int = 0) -> tuple[str, dict, float, object]:
    """(view, params, validation accuracy, fitted model) of ``learner``'s best grid point over ``views`` on
    validation (the first of a tie)."""
    best = None
    for view, X in views.items():
        for params in learner.grid:
            model = _fit(learner, params, seed, X["train"], y["train"])
            acc = float((_proba(model, X["val"], num_classes).argmax(1) == y["val"]).mean())
            if best is None or acc > best[2]:
                best = (view, params, acc, model)
    return best


def split_views(data, modalities, splits=("train", "val", "eval"), eval_split: str = "test") -> dict:
    """view -> {split: features} of ``modalities`` of in-memory ``data`` (``eval`` is ``eval_split``)."""
    idx = {s: data.indices(eval_split if s == "eval" else s) for s in splits}
    out: dict = {}
    for s, i in idx.items():
        for view, X in feature_views({m: data.modalities[m][i] for m in modalities}, modalities).items():
            out.setdefault(view, {})[s] = X
    return out


def fit_reference(learner: Learner, views: dict, y: dict, seeds, num_classes: int, inputs: str, modalities) -> Choice:
    """Choose ``learner`` on validation; its chosen model's figures, shared by every seed."""
    t0 = time.perf_counter()
    view, params, _, model = choose(learner, views, y, num_classes)
    c = Choice(learner.name, inputs, list(modalities), view, dict(params))
    _score(c, model, seeds, views[view], y, num_classes)
    c.seconds = time.perf_counter() - t0
    return c


def _score(c: Choice, model, seeds, X: dict, y: dict, k: int) -> None:
    """Fill ``c``'s accuracies on validation and evaluation, one entry per seed: ``model`` draws no random numbers,
    so every seed has its figure (as the teacher's)."""
    val = float((_proba(model, X["val"], k).argmax(1) == y["val"]).mean())
    ev = float((_proba(model, X["eval"], k).argmax(1) == y["eval"]).mean())
    c.val_accuracy.extend([val] * len(seeds))
    c.accuracy.extend([ev] * len(seeds))


def cross_fitted_proba(learner: Learner, params: dict, X: np.ndarray, y: np.ndarray, num_classes: int,
                       folds: int = GD_FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities on the train split: each sample's from a model fitted without its fold
    (stratified, seeded folds)."""
    from sklearn.model_selection import StratifiedKFold

    import warnings

    out = np.zeros((len(y), num_classes))
    n_splits = max(2, min(folds, int(np.bincount(y).min()) if len(np.unique(y)) > 1 else 2))
    with warnings.catch_warnings():  # a class with one sample in train: mmhal's own warning has said so
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(X, y))
    for fit_idx, held in splits:
        model = _fit(learner, params, seed, X[fit_idx], y[fit_idx])
        out[held] = _proba(model, X[held], num_classes)
    return out


def distillation_targets(labels: np.ndarray, teacher_proba: np.ndarray, temperature: float = GD_TEMPERATURE,
                         lam: float = GD_LAMBDA) -> np.ndarray:
    """(N, K) targets of generalized distillation: ``(1 - lam) * one-hot(labels) + lam * softmax(log p / T)``."""
    k = teacher_proba.shape[1]
    logp = np.log(np.clip(teacher_proba, 1e-12, 1.0)) / temperature
    soft = np.exp(logp - logp.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    return (1.0 - lam) * np.eye(k)[labels] + lam * soft


def expand_soft(X: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X repeated once per class, the class of each copy, its target weight): a learner minimising the weighted
    log-loss on these fits the soft targets exactly. Copies of weight 0 are dropped."""
    n, k = targets.shape
    rows = np.repeat(np.arange(n), k)
    cls = np.tile(np.arange(k), n)
    w = targets.reshape(-1)
    keep = w > 0
    return X[rows[keep]], cls[keep], w[keep]


GD_MIN_WEIGHT = 0.02  # a soft target's class weight below this is dropped (and the rest renormalised): rows stay few


def _row(c: Choice, num_classes: int) -> dict:
    from ..metrics import mean_std
    from .. import stats

    def summary(values):
        m, sd = mean_std(values)
        return {"mean": m, "std": sd, "ci95": stats.mean_ci(values), "per_seed": [float(v) for v in values]}

    return {"learner": c.learner, "inputs": c.inputs, "modalities": c.modalities, "view": c.view, "params": c.params,
            "accuracy": summary(c.accuracy), "val_accuracy": summary(c.val_accuracy), "seconds": round(c.seconds, 2)}


def reference(data, student_mods, teacher_mods, eval_split: str, seeds, names, log=None) -> dict:
    """The standard learners of ``names`` (``hgb``, ``logreg``, ``lgbm``, ``gd``) on the student's and the teacher's
    modalities of in-memory ``data``: ``{"rows": [...], "seconds", "skipped", "left_out"}``, each row with its
    settings and view (chosen on validation) and its accuracy on ``eval_split`` and on validation per seed.
    ``skipped`` says why there are no rows at all (the data do not suit them, scikit-learn is missing, none was
    asked for); ``left_out`` names a learner asked for that cannot run here (``lgbm`` without lightgbm) and why."""
    t0 = time.perf_counter()
    names = list(names)
    out = {"rows": [], "seconds": 0.0, "skipped": None, "left_out": {}}
    if not names:
        return {**out, "skipped": "learners=[] asks for none"}
    why = applicable(data.shapes, sorted(set(student_mods) | set(teacher_mods)), data.in_memory)
    if why is not None:
        return {**out, "skipped": f"they do not suit this data: {why}"}
    if importlib.util.find_spec("sklearn") is None:
        return {**out, "skipped": "scikit-learn is not installed (pip install scikit-learn)"}
    if "lgbm" in names and not has_lightgbm():
        out["left_out"]["lgbm"] = "lightgbm is not installed (pip install lightgbm)"
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    with threadpool_limits(1):  # one thread, as small networks train: several contend badly on a busy machine
        return _reference(data, student_mods, teacher_mods, eval_split, seeds, names, log, out, t0)


class Background:
    """``reference(...)`` fitted on a daemon thread while this process waits for other work (the students train in
    worker processes): the learners' fits run on one thread and release the GIL in their compiled parts, so they
    take a core the students leave free and add about their CPU time divided by the cores to a run, not all of it.
    A daemon thread, so that an interrupted run does not wait for it. ``result()`` waits and returns what
    ``reference`` returned (or raises what it raised)."""

    def __init__(self, *args, **kwargs):
        import threading

        self._out, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, name="mmhal-learners", daemon=True)
        self._thread.start()

    def _run(self, *args, **kwargs):
        try:
            self._out = reference(*args, **kwargs)
        except BaseException as exc:  # raised again in result(), in the caller's thread
            self._error = exc

    def result(self) -> dict:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out


def _reference(data, student_mods, teacher_mods, eval_split, seeds, names, log, out, t0) -> dict:
    y = {"train": data.labels[data.indices("train")], "val": data.labels[data.indices("val")],
         "eval": data.labels[data.indices(eval_split)]}
    k = int(data.num_classes)
    chosen: dict[tuple[str, str], Choice] = {}
    views = {}
    same = sorted(student_mods) == sorted(teacher_mods)
    for inputs, mods in (("student", list(student_mods)), ("teacher", list(teacher_mods))):
        if inputs == "teacher" and same:  # nothing privileged: the teacher's inputs are the student's
            continue
        views[inputs] = split_views(data, mods, eval_split=eval_split)
        for learner in learners():
            if learner.name in names:
                if log is not None:
                    log(f"standard learner {learner.name} on {'+'.join(mods)} ({', '.join(views[inputs])})")
                chosen[(inputs, learner.name)] = fit_reference(learner, views[inputs], y, seeds, k, inputs, mods)
    rows = [_row(c, k) for c in chosen.values()]
    if "gd" in names and any(i == "teacher" for i, _ in chosen) and any(i == "student" for i, _ in chosen):
        if log is not None:
            log("standard learner gd (generalized distillation) on " + "+".join(student_mods))
        rows.append(_row(_generalized_distillation(chosen, views, y, seeds, k, student_mods), k))
    elif "gd" in names:
        out["left_out"]["gd"] = ("the student sees every modality the teacher sees, so there is nothing to distil"
                                 if same else "it needs hgb, logreg or lgbm too (its teacher and student learners)")
    return {**out, "rows": rows, "seconds": round(time.perf_counter() - t0, 2)}


#: A tie on validation goes to the simpler learner (the linear model; cross-fitting it costs least).
SIMPLER_FIRST = ("logreg", "hgb", "lgbm")


def _best(chosen: dict, inputs: str) -> Choice:
    """The learner on ``inputs`` with the best mean validation accuracy (a tie goes to the first in
    ``SIMPLER_FIRST``)."""
    return max((c for (i, _), c in chosen.items() if i == inputs),
               key=lambda c: (float(np.mean(c.val_accuracy)), -SIMPLER_FIRST.index(c.learner)))


def _generalized_distillation(chosen: dict, views: dict, y: dict, seeds, k: int, student_mods) -> Choice:
    """The ``gd`` row: the best student learner (its settings and view) fitted to soft targets from the best
    teacher learner's cross-fitted probabilities (``distillation_targets``), fitted once (no learner draws random
    numbers)."""
    t0 = time.perf_counter()
    by_name = {lr.name: lr for lr in learners()}
    teacher, student = _best(chosen, "teacher"), _best(chosen, "student")
    t_learner, s_learner = by_name[teacher.learner], by_name[student.learner]
    soft = cross_fitted_proba(t_learner, teacher.params, views["teacher"][teacher.view]["train"], y["train"], k)
    targets = distillation_targets(y["train"], soft)
    targets = np.where(targets >= GD_MIN_WEIGHT, targets, 0.0)
    targets /= targets.sum(axis=1, keepdims=True)
    X = views["student"][student.view]
    Xs, ys, ws = expand_soft(X["train"], targets)
    c = Choice("gd", "student", list(student_mods), student.view,
               {"student_learner": student.learner, "teacher_learner": teacher.learner,
                "teacher_view": teacher.view, "temperature": GD_TEMPERATURE, "lambda": GD_LAMBDA,
                **{f"student.{p}": v for p, v in student.params.items()}})
    _score(c, _fit(s_learner, student.params, 0, Xs, ys, sample_weight=ws), seeds, X, y, k)
    c.seconds = time.perf_counter() - t0
    return c

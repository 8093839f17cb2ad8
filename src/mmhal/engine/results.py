"""What a finished run reports: per-method metrics, paired statistics, the recommendation, table and CSV.

Input: the labels of the evaluation split (test, or val when the data has none) and of the validation
split, the teacher's logits on both, and for every trained student job (method, seed) its logits on the
evaluation split at the selected epoch and at the last epoch, and on the validation split. Ensembles
(``distill.ENSEMBLES``) sum their members' logits per seed; with ``distill.ensemble_weight=mean`` they average them,
with ``learned`` a two-network ensemble is z1 + w z2 with w fitted per seed on the members' training-split logits
(``fit_ensemble_weight``; the authors' NW-UCLA ensemble); the factors are recorded in its entry as ``member_scales``.

Every comparison is paired by seed (``mmhal.stats``); the recommendation of what to deploy looks at the
validation split only.

A student job that diverged (its loss became NaN or infinite; ``engine.run.JobContext.train_student`` records
``diverged`` instead of logits) takes every reported method it belongs to out of the figures: a method with a
diverged seed (an ensemble: a member's) gets no entry in ``results``, so no mean, no paired statistic and no
recommendation, and is listed by ``diverged_methods`` instead (the table and the CSV show it as ``diverged:
seeds 1, 3 (epoch 2)``). Its other seeds are not reported on their own: a mean over the seeds that happened to
train would not be paired with the other methods' seeds. When ``unimodal`` diverged, no method is compared
with it.

For presentation-attack-detection data (labels 0 = attack, 1 = bona fide) ``build_results(..., pad=...)``
adds ISO/IEC 30107-3 figures per method (``mmhal.metrics.pad_metrics``): the score is softmax(logits)[:, 1],
the threshold is chosen on the validation scores and applied to the evaluation scores, per sample or on the
mean score per video.
"""
from __future__ import annotations

import csv
import io
from typing import Optional

import numpy as np

from .. import stats
from ..distill import ENSEMBLES, member_job
from ..metrics import (PAD_APCER_POINTS, VideoGroups, accuracy, macro_f1, mean_std, pad_legacy, pad_metrics,
                       per_class_accuracy, top_k_accuracy)

TEACHER = "teacher"
UNIMODAL = "unimodal"
UNIMODAL_ENSEMBLE = "unimodal-ensemble"


def _floats(a) -> list:
    """A list of floats for JSON, NaN (a class without samples) as None."""
    return [None if v != v else float(v) for v in np.asarray(a, dtype=float).ravel().tolist()]


TOP_K = 5  # top-k accuracy is reported as well when there are more than k classes


def _summary(values) -> dict:
    m, sd = mean_std(values)
    return {"mean": m, "std": sd, "ci95": stats.mean_ci(values), "per_seed": [float(v) for v in values]}


def _summary_or_none(values) -> dict:
    """``_summary`` when every value is finite; otherwise None for the non-finite seeds and no mean (a rate
    with an empty denominator, or an infinite threshold that rejects everything). Keeps results.json valid."""
    v = [float(x) for x in values]
    if all(np.isfinite(v)):
        return _summary(v)
    return {"mean": None, "std": None, "ci95": None, "per_seed": [x if np.isfinite(x) else None for x in v]}


def members(name: str) -> tuple[str, ...]:
    """The student jobs whose logits a reported method sums (one for a plain method)."""
    return ENSEMBLES.get(name, (name,))


#: the weight decay on an ensemble's learned weight: the authors' action ensemble trains w by SGD with weight decay
#: 5e-4 (``nw_ucla_cv/configuration/config_ucla_ensemble.py``), i.e. cross-entropy + (5e-4 / 2) w^2
ENSEMBLE_WEIGHT_DECAY = 5e-4


def fit_ensemble_weight(z1, z2, y, weight_decay: float = ENSEMBLE_WEIGHT_DECAY) -> float:
    """The w that minimises mean_i CE(z1_i + w z2_i, y_i) + (weight_decay / 2) w^2 for frozen members' (N, K)
    logits ``z1``, ``z2`` and labels ``y``: the authors' action ensemble (``spp_pred + w * cd_pred``, w from 1,
    trained by cross-entropy on the training set with the members frozen,
    ``nw_ucla_cv/models/model_ensemble_learning.py``), solved exactly instead of by their 40 000 SGD steps. The
    objective is convex in w (its second derivative is the mean variance of z2 under the ensemble's softmax plus
    weight_decay > 0): Newton's method from w = 1, halving a step that does not lower it."""
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    y = np.asarray(y, np.int64)
    rows = np.arange(len(y))

    def f_grad_hess(w: float):
        z = z1 + w * z2
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        p = np.exp(z - lse[:, None])
        ez2 = (p * z2).sum(axis=1)
        f = float(np.mean(lse - z[rows, y])) + 0.5 * weight_decay * w * w
        g = float(np.mean(ez2 - z2[rows, y])) + weight_decay * w
        h = float(np.mean((p * z2 * z2).sum(axis=1) - ez2 ** 2)) + weight_decay
        return f, g, h

    w = 1.0
    f, g, h = f_grad_hess(w)
    for _ in range(100):
        step = g / h
        while True:
            f_new, g_new, h_new = f_grad_hess(w - step)
            if f_new <= f or abs(step) < 1e-15:
                break
            step /= 2
        w, f, g, h = w - step, f_new, g_new, h_new
        if abs(step) < 1e-12 * max(1.0, abs(w)):
            break
    return float(w)


def ensemble_scales(report: dict, name: str, seed: Optional[int]) -> tuple[float, ...]:
    """The factors of reported method ``name``'s members' logits for ``seed``, from a run's results.json
    (``report``): those its entry records as ``member_scales`` (``distill.ensemble_weight`` mean or learned), else 1
    for every member."""
    recorded = report.get("results", {}).get(name, {}).get("member_scales")
    if recorded is None:
        return (1.0,) * len(members(name))
    return tuple(float(c) for c in recorded["per_seed"][[int(s) for s in report["seeds"]].index(seed)])


def diverged_methods(report_names, jobs, seeds, student_mods=()) -> dict:
    """``{method: {"modalities", "networks", "seeds", "jobs"}}`` for every reported method of which some member
    job diverged on some seed (``jobs[(job, seed)]`` holds ``diverged``): ``seeds`` lists those seeds, ``jobs``
    every such job (``job``, ``seed``, ``epoch``, ``what``, ``message``), in seed order."""
    out: dict[str, dict] = {}
    for name in report_names:
        hits = []
        for s in seeds:
            for p in dict.fromkeys(member_job(m) for m in members(name)):  # a companion is trained by its job
                d = (jobs.get((p, s)) or {}).get("diverged")
                if d is not None:
                    hits.append({"job": p, "seed": s, "epoch": int(d["epoch"]), "what": d.get("what", ""),
                                 "message": d.get("message", "")})
        if hits:
            out[name] = {"modalities": list(student_mods), "networks": len(members(name)),
                         "seeds": sorted({h["seed"] for h in hits}), "jobs": hits}
    return out


def diverged_text(name: str, entry: dict) -> str:
    """Where ``name``'s students diverged: ``seeds 1, 3 (epoch 2)``; with differing epochs, or a member job of an
    ensemble, ``seed 1 (epoch 2), rad seed 3 (epoch 1)``."""
    groups: dict[tuple[str, int], list] = {}
    for j in entry["jobs"]:
        groups.setdefault((j["job"], j["epoch"]), []).append(j["seed"])
    parts = [f"{'' if job == name else job + ' '}seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))} (epoch {e})"
             for (job, e), s in groups.items()]
    return ", ".join(parts)


def diverged_warning(diverged: dict) -> Optional[str]:
    """The warning of a run where some students diverged: which, and what that leaves out."""
    if not diverged:
        return None
    listed = "; ".join(f"{n} on {diverged_text(n, d)}" for n, d in diverged.items())
    text = (f"students diverged (their loss became NaN or infinite), so these methods are left out of the means, the "
            f"paired statistics and the recommendation: {listed}")
    if UNIMODAL in diverged:
        text += "; with unimodal left out, no method is compared with it"
    return text


def nothing_usable(report: dict) -> Optional[str]:
    """One sentence when every reported method diverged (``report["diverged"]``): the run has nothing to deploy."""
    diverged = report.get("diverged") or {}
    if not diverged or any(n != TEACHER for n in report["results"]):
        return None
    first = next(iter(diverged.values()))["jobs"][0]["message"]
    return (f"every student diverged, so this run has nothing to compare or deploy (results.json lists them under "
            f"'diverged'); the first: {first}")


def method_entry(mods, y_eval, y_val, eval_logits, last_logits, val_logits, num_classes) -> dict:
    """Metrics of one reported method from its per-seed logits (lists over seeds; last may hold None)."""
    preds = [z.argmax(1) for z in eval_logits]
    entry = {
        "modalities": list(mods),
        "accuracy": _summary([accuracy(y_eval, p) for p in preds]),
        "macro_f1": _summary([macro_f1(y_eval, p, num_classes) for p in preds]),
        "val_accuracy": _summary([accuracy(y_val, z.argmax(1)) for z in val_logits]),
    }
    if num_classes > TOP_K:  # e.g. the action datasets' top-5
        entry["top5_accuracy"] = _summary([top_k_accuracy(y_eval, z, TOP_K) for z in eval_logits])
    if all(z is not None for z in last_logits):  # selection-free control: the last epoch's weights
        entry["last_epoch_accuracy"] = _summary([accuracy(y_eval, z.argmax(1)) for z in last_logits])
    pc = np.array([per_class_accuracy(y_eval, p, num_classes) for p in preds])  # (seeds, K)
    # A class absent from the evaluation split is NaN on every seed (None in JSON).
    entry["per_class_accuracy"] = {"mean": _floats(pc.mean(axis=0)), "per_seed": [_floats(row) for row in pc]}
    return entry


def bona_fide_scores(logits) -> np.ndarray:
    """P(bona fide) = softmax(logits)[:, 1] of 2-way logits (class 0 = attack, 1 = bona fide), computed
    stably (the row maximum is subtracted before exponentiating)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"PAD figures need 2-way logits (attack, bona fide); got shape {tuple(z.shape)}.")
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e[:, 1] / e.sum(axis=1)


_PAD_RATES = ("apcer", "apcer_pooled", "bpcer", "acer", "hter", "eer", "auc", "threshold")
_LEGACY_KEYS = ("legacy_acc", "legacy_far", "legacy_frr", "legacy_hter", "legacy_apcer_star", "legacy_npcer_star",
                "legacy_acer_star")


class PadSetup:
    """The PAD options of a run, checked once, and the per-method figures built from them.

    ``pad``: ``val_bona_fide`` / ``eval_bona_fide`` (bool per sample; default: label == 1), ``eval_species``
    and optionally ``val_species`` (str per sample or None), ``val_video`` / ``eval_video`` (video id per
    sample or None; required for ``scoring == "video"``), ``scoring`` ("sample" | "video"), ``criterion``
    (see ``mmhal.metrics.pad_threshold``) and ``legacy`` (also the reference code's argmax figures)."""

    def __init__(self, pad: dict, y_eval=None, y_val=None):
        self.scoring = str(pad.get("scoring", "sample"))
        if self.scoring not in ("sample", "video"):
            raise ValueError(f"PAD scoring must be 'sample' or 'video', not '{self.scoring}'.")
        self.criterion = pad.get("criterion", "eer")
        self.legacy = bool(pad.get("legacy", False))
        self.split = {}
        for name, y in (("val", y_val), ("eval", y_eval)):
            bf = pad.get(f"{name}_bona_fide")
            if bf is None:
                if y is None:
                    raise ValueError(f"the PAD options lack {name}_bona_fide.")
                bf = np.asarray(y) == 1
            bf = np.asarray(bf).astype(bool).ravel()
            if y is not None and len(bf) != len(y):
                raise ValueError(f"{name}_bona_fide has {len(bf)} entries for {len(y)} samples.")
            sample_bf = bf
            sp = pad.get(f"{name}_species")
            sp = None if sp is None else np.asarray(sp).astype(str).ravel()
            groups = None
            if self.scoring == "video":
                video = pad.get(f"{name}_video")
                if video is None:
                    raise ValueError(f"per-video PAD scoring needs the video of every {name} sample.")
                groups = VideoGroups(video, bf, sp)
                bf, sp = groups.bona_fide, groups.species
            self.split[name] = {"bona_fide": bf, "species": sp, "groups": groups, "sample_bona_fide": sample_bf}

    def _unit_scores(self, name: str, logits) -> np.ndarray:
        s = bona_fide_scores(logits)
        g = self.split[name]["groups"]
        return s if g is None else g.mean(s)

    def metrics(self, eval_logits, val_logits) -> dict:
        """``pad_metrics`` of one model (one seed) in the scoring unit."""
        v, e = self.split["val"], self.split["eval"]
        return pad_metrics(self._unit_scores("val", val_logits), v["bona_fide"],
                           self._unit_scores("eval", eval_logits), e["bona_fide"], e["species"],
                           criterion=self.criterion, val_species=v["species"])

    def legacy_metrics(self, eval_logits) -> dict:
        """The reference code's figures from the argmax decision of every evaluation sample (per sample
        whatever the scoring unit, as the reference code counts them)."""
        return pad_legacy(np.asarray(eval_logits).argmax(1) == 1, self.split["eval"]["sample_bona_fide"])

    def add(self, entry: dict, eval_logits: list, val_logits: list) -> None:
        """Add ``pad`` (and ``pad_legacy``) to a method's entry from its per-seed logits."""
        memo: dict = {}
        per_seed = []
        for e, v in zip(eval_logits, val_logits):
            key = (id(e), id(v))  # the teacher: one model repeated over the seeds
            if key not in memo:
                memo[key] = self.metrics(e, v)
            per_seed.append(memo[key])
        first = per_seed[0]
        out = {"criterion": str(self.criterion), "scoring": self.scoring, "calibrated": first["calibrated"]}
        for k in _PAD_RATES:
            out[k] = _summary_or_none([m[k] for m in per_seed])
        out["bpcer_at_apcer"] = {x: _summary_or_none([m["bpcer_at_apcer"][x] for m in per_seed])
                                 for x in PAD_APCER_POINTS}
        out["apcer_per_species"] = {}
        for sp in first["apcer_per_species"]:
            s = _summary_or_none([m["apcer_per_species"][sp] for m in per_seed])
            out["apcer_per_species"][sp] = {"mean": s["mean"], "per_seed": s["per_seed"]}
        out.update(n_bona_fide=first["n_bona_fide"], n_attack=first["n_attack"],
                   n_attack_per_species=first["n_attack_per_species"])
        entry["pad"] = out
        if self.legacy:
            memo = {}
            figures = []
            for e in eval_logits:
                if id(e) not in memo:
                    memo[id(e)] = self.legacy_metrics(e)
                figures.append(memo[id(e)])
            entry["pad_legacy"] = {k: _summary_or_none([f[k] for f in figures]) for k in _LEGACY_KEYS}
            entry["pad_legacy"].update(unit="sample", decision="argmax")

    def counts(self) -> dict:
        """Bona fide and attack counts of the validation and evaluation splits in the scoring unit."""
        out = {"scoring": self.scoring, "criterion": str(self.criterion)}
        for name, s in self.split.items():
            bf, sp = s["bona_fide"], s["species"]
            per = ({"all": int((~bf).sum())} if sp is None
                   else {str(k): int(c) for k, c in zip(*np.unique(sp[~bf], return_counts=True))})
            out[name] = {"n_bona_fide": int(bf.sum()), "n_attack": int((~bf).sum()), "n_attack_per_species": per}
        return out


def pad_counts(pad: dict) -> dict:
    """``{"scoring", "criterion", "val": {...}, "eval": {...}}`` with ``n_bona_fide``, ``n_attack`` and
    ``n_attack_per_species`` (``{"all": n}`` without species) per split, in the scoring unit (videos for
    ``scoring == "video"``): the block a run puts next to its results (``report["pad_counts"]``)."""
    return PadSetup(pad).counts()


def build_results(report_names, student_mods, teacher_mods, y_eval, y_val, teacher_eval, teacher_val, jobs,
                  seeds, num_classes, *, pad: Optional[dict] = None, ensemble_weight: str = "sum",
                  y_train=None) -> dict:
    """``{name: entry}`` for the teacher and every reported method, with paired statistics against
    unimodal (and, for two-network ensembles, against ``unimodal-ensemble`` when it was run).

    ``jobs[(job name, seed)]`` holds ``logits``, ``logits_last`` (or None) and ``val_logits`` as arrays, or
    ``diverged``: a method with such a member job on some seed gets no entry (see ``diverged_methods``).

    ``ensemble_weight``: ``sum`` (z1 + z2), ``mean`` ((z1 + z2) / 2) or ``learned`` (z1 + w z2 per seed, w =
    ``fit_ensemble_weight`` of the members' ``train_logits`` and ``y_train``); an ensemble's entry records the
    factors of ``mean`` and ``learned`` as ``member_scales`` (``per_seed``: one factor per member).

    ``pad`` (presentation-attack detection, see :class:`PadSetup`) adds ``"pad"`` (and with ``legacy``
    ``"pad_legacy"``) to every entry and ``"acer_vs_unimodal"`` to the comparisons."""
    n = len(seeds)
    t_pred = teacher_eval.argmax(1)
    results: dict[str, dict] = {
        TEACHER: {
            "modalities": list(teacher_mods),
            "accuracy": _summary([accuracy(y_eval, t_pred)] * n),
            "macro_f1": _summary([macro_f1(y_eval, t_pred, num_classes)] * n),
            "val_accuracy": _summary([accuracy(y_val, teacher_val.argmax(1))] * n),
            "per_class_accuracy": {"mean": _floats(per_class_accuracy(y_eval, t_pred, num_classes))},
            **({"top5_accuracy": _summary([top_k_accuracy(y_eval, teacher_eval, TOP_K)] * n)}
               if num_classes > TOP_K else {}),
            "shared_across_seeds": True,
            "networks": 1,
        }
    }
    setup = None if pad is None else PadSetup(pad, y_eval, y_val)
    if setup is not None:
        setup.add(results[TEACHER], [teacher_eval] * n, [teacher_val] * n)
    diverged = diverged_methods(report_names, jobs, seeds)
    for name in report_names:
        if name in diverged:
            continue
        parts = members(name)
        per_seed = [[jobs[(p, s)] for p in parts] for s in seeds]
        scales = [(1.0,) * len(parts)] * len(seeds)
        if ensemble_weight == "mean" and len(parts) > 1:
            scales = [(1.0 / len(parts),) * len(parts)] * len(seeds)
        if ensemble_weight == "learned" and len(parts) == 2:
            if y_train is None or any(r.get("train_logits") is None for rs in per_seed for r in rs):
                raise ValueError(f"a learned weight for '{name}' needs its members' training-split logits and labels")
            scales = [(1.0, fit_ensemble_weight(rs[0]["train_logits"], rs[1]["train_logits"], y_train))
                      for rs in per_seed]

        def combine(key, rs, sc):
            return sum(c * r[key] for c, r in zip(sc, rs))

        eval_z = [combine("logits", rs, sc) for rs, sc in zip(per_seed, scales)]
        val_z = [combine("val_logits", rs, sc) for rs, sc in zip(per_seed, scales)]
        last_z = [None if any(r.get("logits_last") is None for r in rs) else combine("logits_last", rs, sc)
                  for rs, sc in zip(per_seed, scales)]
        results[name] = method_entry(student_mods, y_eval, y_val, eval_z, last_z, val_z, num_classes)
        results[name]["networks"] = len(parts)
        if len(parts) > 1 and ensemble_weight != "sum":
            results[name]["member_scales"] = {"per_seed": [list(sc) for sc in scales]}
        if setup is not None:
            setup.add(results[name], eval_z, val_z)
    add_comparisons(results)
    return results


def add_comparisons(results: dict) -> None:
    """``vs_unimodal`` (paired test accuracy) and ``gap_recovered`` for every entry but unimodal itself; the
    teacher's ``vs_unimodal`` is its margin, which decides whether a gap share is defined at all.

    With PAD figures also ``acer_vs_unimodal``: ``stats.paired`` of the per-seed ACER, signed **method -
    unimodal** like every other difference, so for ACER (lower is better) a negative difference is an
    improvement and stats.paired's ``wins`` count the seeds where the method's ACER is *higher* (worse)."""
    if UNIMODAL not in results:
        return
    uni = results[UNIMODAL]["accuracy"]["per_seed"]
    teacher = results[TEACHER]["accuracy"]["per_seed"]
    uni_ens = results.get(UNIMODAL_ENSEMBLE)
    for name, r in results.items():
        if name == UNIMODAL:
            continue
        acc = r["accuracy"]["per_seed"]
        r["vs_unimodal"] = stats.paired(acc, uni)
        if name != TEACHER:
            r["gap_recovered"] = stats.gap_recovered(acc, uni, teacher)
            if uni_ens is not None and r["networks"] == 2 and name != UNIMODAL_ENSEMBLE:
                r["vs_unimodal_ensemble"] = stats.paired(acc, uni_ens["accuracy"]["per_seed"])
    uni_acer = results[UNIMODAL].get("pad", {}).get("acer", {}).get("per_seed")
    if uni_acer is None or None in uni_acer:
        return
    for name, r in results.items():
        acer = r.get("pad", {}).get("acer", {}).get("per_seed")
        if name != UNIMODAL and acer is not None and None not in acer:
            r["acer_vs_unimodal"] = stats.paired(acer, uni_acer)


#: recommend's rules (``recommend`` in the configuration)
RULES = ("significant", "best")


def recommend(results: dict, rule: str = "significant") -> Optional[dict]:
    """What to deploy, chosen on the validation split alone, among single-network students (ensembles cost two
    networks and are not recommended here), with the chosen one's paired validation difference against unimodal.

    ``best``: the highest mean validation accuracy (unimodal wins ties: it needs no teacher). ``significant``:
    the same among the distilled students whose validation gain over unimodal is significant (95 % t-interval
    above 0), else unimodal; ``passed_over`` then names the best on validation when it was not chosen, with its
    difference. Without a unimodal student both rules are ``best``."""
    single = [n for n, r in results.items() if n != TEACHER and r.get("networks", 1) == 1]
    if not single:
        return None
    if rule not in RULES:
        raise ValueError(f"unknown recommendation rule '{rule}'")
    order = sorted(single, key=lambda n: (-results[n]["val_accuracy"]["mean"], n != UNIMODAL))

    def vs_unimodal(name):
        if UNIMODAL not in results or name == UNIMODAL:
            return None
        return stats.paired(results[name]["val_accuracy"]["per_seed"], results[UNIMODAL]["val_accuracy"]["per_seed"])

    def clear_gain(name) -> bool:
        vs = vs_unimodal(name)
        return vs is not None and vs["significant"] and vs["mean_diff"] > 0

    best = order[0]
    if rule == "significant" and UNIMODAL in results:
        best = next(n for n in order if n == UNIMODAL or clear_gain(n))
    rec = {"method": best, "val_accuracy": results[best]["val_accuracy"]["mean"], "vs_unimodal_val": vs_unimodal(best),
           "rule": rule}
    if order[0] != best:
        rec["passed_over"] = {"method": order[0], "val_accuracy": results[order[0]]["val_accuracy"]["mean"],
                              "vs_unimodal_val": vs_unimodal(order[0])}
    return rec


def add_learner_comparisons(standard: Optional[dict], results: dict) -> None:
    """Each standard learner's row (``engine.learners.reference``) gets ``vs_unimodal``: its accuracy on the
    evaluation split against the unimodal network's, paired by seed (a learner that draws no random numbers
    has one figure, repeated per seed: the spread is then the network's alone)."""
    if not standard or UNIMODAL not in results:
        return
    uni = results[UNIMODAL]["accuracy"]["per_seed"]
    for row in standard.get("rows", []):
        if len(row["accuracy"]["per_seed"]) == len(uni):
            row["vs_unimodal"] = stats.paired(row["accuracy"]["per_seed"], uni)


def learner_advice(standard: Optional[dict], rec: Optional[dict], results: dict) -> Optional[dict]:
    """When a standard learner on the student's modalities has a higher mean validation accuracy than the network
    the recommendation names (validation only, as the recommendation): that learner (the best such, the first
    of a tie) with its paired validation difference; else None."""
    rows = [r for r in (standard or {}).get("rows", []) if r["inputs"] == "student"]
    if rec is None or not rows or rec["method"] not in results:
        return None
    best = max(rows, key=lambda r: r["val_accuracy"]["mean"])
    net = results[rec["method"]]["val_accuracy"]
    if best["val_accuracy"]["mean"] <= net["mean"]:
        return None
    vs = (stats.paired(best["val_accuracy"]["per_seed"], net["per_seed"])
          if len(best["val_accuracy"]["per_seed"]) == len(net["per_seed"]) else None)
    return {"learner": best["learner"], "view": best["view"], "modalities": best["modalities"],
            "val_accuracy": best["val_accuracy"]["mean"], "vs_recommended_val": vs}


LEARNER_TITLES = {"hgb": "gradient boosting (HistGradientBoostingClassifier)",
                  "logreg": "logistic regression", "lgbm": "LightGBM", "gd": "generalized distillation"}


def learner_line(advice: Optional[dict], method: str) -> Optional[str]:
    """The sentence after the recommendation when a standard learner beats its network on validation."""
    if advice is None:
        return None
    vs = advice["vs_recommended_val"]
    diff = "" if vs is None else f", {_pct(vs['mean_diff'])} points over '{method}'"
    if vs is not None and vs["ci95"] is not None:
        diff += (f", 95 % CI [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}], "
                 f"{'significant' if vs['significant'] else 'not significant'}")
    return (f"but a standard learner on the same inputs does better on validation: {advice['learner']} "
            f"({LEARNER_TITLES.get(advice['learner'], advice['learner'])}) on {advice['view']} of "
            f"{'+'.join(advice['modalities'])}, val acc {100 * advice['val_accuracy']:.2f} %{diff}; consider deploying "
            "it instead (mmhal exports networks only)")


def learners_table(standard: Optional[dict], split: str) -> list[str]:
    """The table's block of standard learners (reference rows, apart from the methods), or the line that says
    why there is none."""
    if not standard:
        return []
    if standard.get("skipped"):
        return [f"standard learners: none ({standard['skipped']})"]
    rows = standard.get("rows", [])
    lines = ["", f"standard learners: what a learner a practitioner fits first reaches on the same split (settings and "
                 f"inputs chosen on validation; reference rows, not distillation methods; {standard['seconds']:.0f} s)"]
    head = f"{'learner':<17} {'modalities':<14} {'inputs':<11} {split + ' acc %':>14} {'val acc %':>10}  {'vs unimodal [95% CI]':<25}"
    lines += [head, "-" * len(head)]
    for r in rows:
        a, vs = r["accuracy"], r.get("vs_unimodal")
        vs_s = ""
        if vs is not None:
            ci = "" if vs["ci95"] is None else f" [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]"
            vs_s = f"{_pct(vs['mean_diff'])}{ci}{' *' if vs['significant'] else ''}"
        lines.append(f"{r['learner']:<17} {'+'.join(r['modalities']):<14} {r['view']:<11} "
                     f"{100 * a['mean']:>7.2f} ± {100 * a['std']:<4.2f} {100 * r['val_accuracy']['mean']:>10.2f}  {vs_s:<25}")
    for name, why in (standard.get("left_out") or {}).items():
        lines.append(f"{name:<17} left out: {why}")
    lines.append("inputs: raw = every value; statistics = per-channel summary statistics of sequences. gd = "
                 "generalized distillation (the student-input learner fitted to the teacher-input learner's "
                 "cross-fitted probabilities mixed with the labels).")
    return lines


def teacher_warning(results: dict) -> Optional[str]:
    """A warning when the teacher is not better than the unimodal student on validation (distillation is
    then not expected to help), or not clearly so (its margin's 95 % interval reaches 0)."""
    if UNIMODAL not in results:
        return None
    vs = stats.paired(results[TEACHER]["val_accuracy"]["per_seed"], results[UNIMODAL]["val_accuracy"]["per_seed"])
    t, u = 100 * results[TEACHER]["val_accuracy"]["mean"], 100 * results[UNIMODAL]["val_accuracy"]["mean"]
    if vs["mean_diff"] <= 0:
        return (f"the teacher is not better than the unimodal student on validation ({t:.2f} % vs {u:.2f} %): "
                "distillation is not expected to help here")
    if vs["ci95"] is not None and vs["ci95"][0] <= 0:
        return (f"the teacher's margin over the unimodal student on validation ({t:.2f} % vs {u:.2f} %) is not "
                "clear of the seed noise (its 95 % interval reaches 0): distillation may not help here")
    return None


def _pct(x: float) -> str:
    return f"{100 * x:+.2f}"


def _network_line(rec: Optional[dict], diverged: Optional[dict] = None) -> str:
    """The run's last line: what to deploy (``rec``, from ``recommend``); ``diverged`` (the report's) says why
    there is none when students diverged."""
    if rec is None:
        if diverged:
            return "recommendation: none (no single-network student finished without diverging)"
        return "recommendation: none (no single-network student was trained)"
    head = f"recommendation (validation only): deploy '{rec['method']}' (val acc {100 * rec['val_accuracy']:.2f} %"
    vs = rec["vs_unimodal_val"]
    over = rec.get("passed_over")
    if over is not None:  # the rule "significant" passed over the best on validation
        ov = over["vs_unimodal_val"]
        gain = (f"{_pct(ov['mean_diff'])} points on 1 seed: no interval" if ov["ci95"] is None else
                f"{_pct(ov['mean_diff'])} points, 95 % CI [{_pct(ov['ci95'][0])}, {_pct(ov['ci95'][1])}]")
        own = "" if vs is None or vs["ci95"] is None else (
            f", {_pct(vs['mean_diff'])} points over unimodal, 95 % CI [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}], "
            "significant")
        return (head + f"{own}; the best on validation, '{over['method']}', is not significantly better than unimodal "
                f"({gain}), and a distilled student is deployed only when its validation gain is significant)")
    if vs is None:
        if rec["method"] == "unimodal":
            return head + "; no distilled student beats it on validation)"
        return head + ")"
    if vs["ci95"] is None:
        return head + f", {_pct(vs['mean_diff'])} points over unimodal on 1 seed: no interval)"
    sig = "significant" if vs["significant"] else "not significant"
    return (head + f", {_pct(vs['mean_diff'])} points over unimodal, 95 % CI [{_pct(vs['ci95'][0])}, "
            f"{_pct(vs['ci95'][1])}], {sig})")


def recommendation_line(rec: Optional[dict], diverged: Optional[dict] = None) -> str:
    """The run's last line: which network to deploy (``rec``, from ``recommend``; ``diverged``, the report's, says
    why there is none when students diverged), then (``rec["standard_learner"]``, ``learner_advice``) the standard
    learner that beats it on validation."""
    line = _network_line(rec, diverged)
    extra = learner_line((rec or {}).get("standard_learner"), (rec or {}).get("method", ""))
    return line if extra is None else f"{line}; {extra}"


def format_table(report: dict) -> str:
    """The printed table: accuracy and macro-F1 (percent, mean ± sd over seeds), the paired difference
    against unimodal with its 95 % t-interval, p-value and wins/ties/losses (``*``: significant), and the
    share of the gap recovered with its interval (``undef.`` when the teacher's margin is not clear)."""
    split = report.get("evaluated_on", "test")
    n = len(report["seeds"])
    head = (f"{'method':<17} {'modalities':<14} {'nets':>4} {split + ' acc %':>14} {'macro-F1 %':>14}  "
            f"{'vs unimodal [95% CI]':<25} {'p':>6} {'W/T/L':>7}  {'gap rec. [95% CI]':<20}")
    has_pad = any("pad" in r for r in report["results"].values())
    if has_pad:
        head += f"  {'ACER %':>14} {'HTER %':>14}  {'ACER vs unimodal [95% CI]':<25}"
    lines = [head, "-" * len(head)]
    if split == "val":  # no test split: the split that chose every student's epoch is all there is to report on
        lines.insert(0, "NO TEST SPLIT: every figure below is on the validation split, which also chose each student's "
                        "epoch (optimistic)")
    for name, r in report["results"].items():
        a, f = r["accuracy"], r["macro_f1"]
        vs, gap = r.get("vs_unimodal"), r.get("gap_recovered")
        vs_s = p_s = wtl = ""
        if vs is not None:
            ci = "" if vs["ci95"] is None else f" [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]"
            vs_s = f"{_pct(vs['mean_diff'])}{ci}{' *' if vs['significant'] else ''}"
            p_s = "" if vs["p_value"] is None else f"{vs['p_value']:.3f}"
            wtl = f"{vs['wins']}/{vs['ties']}/{vs['losses']}"
        if name in ("teacher", "unimodal") or "gap_recovered" not in r:
            gap_s = ""
        elif gap is None:
            gap_s = "undef."
        else:
            gap_s = f"{100 * gap['mean']:.0f}% [{100 * gap['ci95'][0]:.0f}, {100 * gap['ci95'][1]:.0f}]"
        row = (
            f"{name:<17} {'+'.join(r['modalities']):<14} {r.get('networks', 1):>4} "
            f"{100 * a['mean']:>7.2f} ± {100 * a['std']:<4.2f} {100 * f['mean']:>7.2f} ± {100 * f['std']:<4.2f}  "
            f"{vs_s:<25} {p_s:>6} {wtl:>7}  {gap_s:<20}"
        )
        if has_pad:
            row += _pad_cells(r)
        lines.append(row)
    for name, d in (report.get("diverged") or {}).items():  # left out of every figure (see diverged_methods)
        lines.append(f"{name:<17} {'+'.join(d['modalities']):<14} {d['networks']:>4}   diverged: "
                     f"{diverged_text(name, d)}; left out of the means, comparisons and recommendation")
    interval = (f"95 % t-interval ({n - 1} d.f., t = {stats.t_critical(n):.2f}), two-sided p" if n > 1 else
                "no interval or p with one seed (run --seeds 2 or more to compare methods)")
    lines.append(f"seeds {report['seeds']} (independent replicates; methods paired by seed); ± = sd over seeds; "
                 "the teacher is one model shared by all seeds.")
    lines.append(f"vs unimodal: mean paired difference in points, {interval}; * = significant (interval excludes "
                 "0); W/T/L = seeds won/tied/lost.")
    lines.append("gap rec. = (method - unimodal) / (teacher - unimodal), Fieller 95 % interval; undef. when the "
                 "teacher's margin over unimodal is not significant. nets = networks run at inference.")
    for ens, r in report["results"].items():
        vs = r.get("vs_unimodal_ensemble")
        if vs is not None and vs["ci95"] is not None:
            lines.append(f"{ens} vs {UNIMODAL_ENSEMBLE} (equal inference cost): {_pct(vs['mean_diff'])} "
                         f"[{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]{' *' if vs['significant'] else ''}, "
                         f"W/T/L {vs['wins']}/{vs['ties']}/{vs['losses']}")
    if has_pad:
        lines.extend(_pad_notes(report))
    lines.extend(learners_table(report.get("standard_learners"), split))
    return "\n".join(lines)


def _mean_sd(s: Optional[dict]) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{100 * s['mean']:>7.2f} ± {100 * s['std']:<4.2f}"


def _pad_cells(r: dict) -> str:
    """The ACER, HTER and ACER-difference cells of one row of the table."""
    p = r.get("pad")
    if p is None:
        return ""
    vs = r.get("acer_vs_unimodal")
    vs_s = ""
    if vs is not None:
        ci = "" if vs["ci95"] is None else f" [{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]"
        vs_s = f"{_pct(vs['mean_diff'])}{ci}{' *' if vs['significant'] else ''}"
    return f"  {_mean_sd(p['acer']):>14} {_mean_sd(p['hter']):>14}  {vs_s:<25}"


def _count_text(c: dict, unit: str) -> str:
    sp = c["n_attack_per_species"]
    per = "" if list(sp) == ["all"] else " (" + ", ".join(f"{k}: {v}" for k, v in sp.items()) + ")"
    return f"{c['n_bona_fide']} bona fide and {c['n_attack']} attack {unit}s{per}"


def _pad_notes(report: dict) -> list[str]:
    """The lines under a table with PAD figures: definitions, threshold, scoring unit and counts."""
    first = next(r["pad"] for r in report["results"].values() if "pad" in r)
    unit = "video" if first["scoring"] == "video" else "sample"
    split = report.get("evaluated_on", "test")
    if first.get("calibrated", True):
        how = f"threshold by criterion '{first['criterion']}' on the validation scores, applied to {split}"
    else:
        how = f"fixed threshold {first['criterion']} on P(bona fide) (uncalibrated: not chosen on validation)"
    score = "mean P(bona fide) per video" if unit == "video" else "P(bona fide) per sample"
    lines = [f"PAD (ISO/IEC 30107-3): score = {score}; {how}. ACER = (APCER + BPCER)/2 with APCER the max over "
             "attack species; HTER = (pooled APCER + BPCER)/2.",
             "ACER vs unimodal: method - unimodal in points (lower ACER is better: negative = better), 95 % "
             "t-interval; * = significant."]
    counts = report.get("pad_counts")
    if counts is not None:
        lines.append(f"PAD counts: {split}: {_count_text(counts['eval'], unit)}; "
                     f"validation: {_count_text(counts['val'], unit)}.")
    else:
        lines.append(f"PAD counts: {split}: {_count_text(first, unit)}.")
    return lines


_PAD_CSV = ["acer_mean", "acer_std", "hter_mean", "apcer_mean", "bpcer_mean", "eer_mean", "auc_mean",
            "acer_diff_vs_unimodal", "acer_diff_ci95_lo", "acer_diff_ci95_hi"]


def _pad_csv_cells(r: dict, num) -> list:
    p = r.get("pad")
    if p is None:
        return [""] * len(_PAD_CSV)
    vs = r.get("acer_vs_unimodal") or {}
    ci = vs.get("ci95") or [None, None]
    return ([num(p["acer"]["mean"]), num(p["acer"]["std"])]
            + [num(p[k]["mean"]) for k in ("hter", "apcer", "bpcer", "eer", "auc")]
            + [num(vs.get("mean_diff")), num(ci[0]), num(ci[1])])


def results_csv(report: dict) -> str:
    """One row per method: means, paired statistics against unimodal, gap share, per-seed accuracies; with
    PAD figures also the means of ACER, HTER, APCER, BPCER, EER and AUC and the paired ACER difference
    against unimodal (method - unimodal: negative = better). When students diverged, a last column
    ``diverged`` and one row per diverged method, empty but for it (e.g. ``seeds 1, 3 (epoch 2)``)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    seeds = report["seeds"]
    has_pad = any("pad" in r for r in report["results"].values())
    diverged = report.get("diverged") or {}
    header = (["method", "modalities", "networks", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std",
               "val_accuracy_mean", "diff_vs_unimodal", "diff_ci95_lo", "diff_ci95_hi", "p_value", "wins", "ties",
               "losses", "gap_recovered", "gap_ci95_lo", "gap_ci95_hi"] + [f"accuracy_seed{s}" for s in seeds]
              + (_PAD_CSV if has_pad else []) + (["diverged"] if diverged else []))
    w.writerow(header)

    def num(x, fmt=".6f"):
        return "" if x is None else format(x, fmt)

    for name, r in report["results"].items():
        vs = r.get("vs_unimodal") or {}
        ci = vs.get("ci95") or [None, None]
        g = r.get("gap_recovered") or {}
        gci = g.get("ci95") or [None, None]
        w.writerow([name, "+".join(r["modalities"]), r.get("networks", 1), num(r["accuracy"]["mean"]),
                    num(r["accuracy"]["std"]), num(r["macro_f1"]["mean"]), num(r["macro_f1"]["std"]),
                    num(r["val_accuracy"]["mean"]), num(vs.get("mean_diff")), num(ci[0]), num(ci[1]),
                    num(vs.get("p_value"), ".4g"), vs.get("wins", ""), vs.get("ties", ""), vs.get("losses", ""),
                    num(g.get("mean"), ".4f"), num(gci[0], ".4f"), num(gci[1], ".4f")]
                   + [f"{a:.6f}" for a in r["accuracy"]["per_seed"]]
                   + (_pad_csv_cells(r, num) if has_pad else []) + ([""] if diverged else []))
    for name, d in diverged.items():
        empty = [""] * (len(header) - 4)  # every figure, between the networks and the diverged column
        w.writerow([name, "+".join(d["modalities"]), d["networks"], *empty, diverged_text(name, d)])
    return buf.getvalue()

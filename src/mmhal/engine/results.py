"""What a finished run reports: per-method metrics, paired statistics, the recommendation, table and CSV.

Input: the labels of the evaluation split (test, or val when the data has none) and of the validation
split, the teacher's logits on both, and for every trained student job (method, seed) its logits on the
evaluation split at the selected epoch and at the last epoch, and on the validation split. Ensembles
(``distill.ENSEMBLES``) sum their members' logits per seed.

Every comparison is paired by seed (``mmhal.stats``); the recommendation of what to deploy looks at the
validation split only.
"""
from __future__ import annotations

import csv
import io
from typing import Optional

import numpy as np

from .. import stats
from ..distill import ENSEMBLES
from ..metrics import accuracy, macro_f1, mean_std, per_class_accuracy

TEACHER = "teacher"
UNIMODAL = "unimodal"
UNIMODAL_ENSEMBLE = "unimodal-ensemble"


def _floats(a) -> list:
    """A list of floats for JSON, NaN (a class without samples) as None."""
    return [None if v != v else float(v) for v in np.asarray(a, dtype=float).ravel().tolist()]


def _summary(values) -> dict:
    m, sd = mean_std(values)
    return {"mean": m, "std": sd, "ci95": stats.mean_ci(values), "per_seed": [float(v) for v in values]}


def members(name: str) -> tuple[str, ...]:
    """The student jobs whose logits a reported method sums (one for a plain method)."""
    return ENSEMBLES.get(name, (name,))


def method_entry(mods, y_eval, y_val, eval_logits, last_logits, val_logits, num_classes) -> dict:
    """Metrics of one reported method from its per-seed logits (lists over seeds; last may hold None)."""
    preds = [z.argmax(1) for z in eval_logits]
    entry = {
        "modalities": list(mods),
        "accuracy": _summary([accuracy(y_eval, p) for p in preds]),
        "macro_f1": _summary([macro_f1(y_eval, p, num_classes) for p in preds]),
        "val_accuracy": _summary([accuracy(y_val, z.argmax(1)) for z in val_logits]),
    }
    if all(z is not None for z in last_logits):  # selection-free control: the last epoch's weights
        entry["last_epoch_accuracy"] = _summary([accuracy(y_eval, z.argmax(1)) for z in last_logits])
    pc = np.array([per_class_accuracy(y_eval, p, num_classes) for p in preds])  # (seeds, K)
    # A class absent from the evaluation split is NaN on every seed (None in JSON).
    entry["per_class_accuracy"] = {"mean": _floats(pc.mean(axis=0)), "per_seed": [_floats(row) for row in pc]}
    return entry


def build_results(report_names, student_mods, teacher_mods, y_eval, y_val, teacher_eval, teacher_val, jobs,
                  seeds, num_classes) -> dict:
    """``{name: entry}`` for the teacher and every reported method, with paired statistics against
    unimodal (and, for two-network ensembles, against ``unimodal-ensemble`` when it was run).

    ``jobs[(job name, seed)]`` holds ``logits``, ``logits_last`` (or None) and ``val_logits`` as arrays."""
    n = len(seeds)
    t_pred = teacher_eval.argmax(1)
    results: dict[str, dict] = {
        TEACHER: {
            "modalities": list(teacher_mods),
            "accuracy": _summary([accuracy(y_eval, t_pred)] * n),
            "macro_f1": _summary([macro_f1(y_eval, t_pred, num_classes)] * n),
            "val_accuracy": _summary([accuracy(y_val, teacher_val.argmax(1))] * n),
            "per_class_accuracy": {"mean": _floats(per_class_accuracy(y_eval, t_pred, num_classes))},
            "shared_across_seeds": True,
            "networks": 1,
        }
    }
    for name in report_names:
        parts = members(name)
        per_seed = [[jobs[(p, s)] for p in parts] for s in seeds]
        eval_z = [sum(r["logits"] for r in rs) for rs in per_seed]
        val_z = [sum(r["val_logits"] for r in rs) for rs in per_seed]
        last_z = [None if any(r.get("logits_last") is None for r in rs) else sum(r["logits_last"] for r in rs)
                  for rs in per_seed]
        results[name] = method_entry(student_mods, y_eval, y_val, eval_z, last_z, val_z, num_classes)
        results[name]["networks"] = len(parts)
    add_comparisons(results)
    return results


def add_comparisons(results: dict) -> None:
    """``vs_unimodal`` (paired test accuracy) and ``gap_recovered`` for every entry but unimodal itself; the
    teacher's ``vs_unimodal`` is its margin, which decides whether a gap share is defined at all."""
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


def recommend(results: dict) -> Optional[dict]:
    """What to deploy, chosen on the validation split alone: the single-network method with the highest
    mean validation accuracy (unimodal wins ties: it needs no teacher), with its paired validation
    difference against unimodal. Ensembles cost two networks and are not recommended here."""
    single = [n for n, r in results.items() if n != TEACHER and r.get("networks", 1) == 1]
    if not single:
        return None
    order = sorted(single, key=lambda n: (-results[n]["val_accuracy"]["mean"], n != UNIMODAL))
    best = order[0]
    rec = {"method": best, "val_accuracy": results[best]["val_accuracy"]["mean"], "vs_unimodal_val": None}
    if UNIMODAL in results and best != UNIMODAL:
        rec["vs_unimodal_val"] = stats.paired(results[best]["val_accuracy"]["per_seed"],
                                              results[UNIMODAL]["val_accuracy"]["per_seed"])
    return rec


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


def recommendation_line(rec: Optional[dict]) -> str:
    if rec is None:
        return "recommendation: none (no single-network student was trained)"
    head = f"recommendation (validation only): deploy '{rec['method']}' (val acc {100 * rec['val_accuracy']:.2f} %"
    vs = rec["vs_unimodal_val"]
    if vs is None:
        if rec["method"] == "unimodal":
            return head + "; no distilled student beats it on validation)"
        return head + ")"
    if vs["ci95"] is None:
        return head + f", {_pct(vs['mean_diff'])} points over unimodal on 1 seed: no interval)"
    sig = "significant" if vs["significant"] else "not significant"
    return (head + f", {_pct(vs['mean_diff'])} points over unimodal, 95 % CI [{_pct(vs['ci95'][0])}, "
            f"{_pct(vs['ci95'][1])}], {sig})")


def format_table(report: dict) -> str:
    """The printed table: accuracy and macro-F1 (percent, mean ± sd over seeds), the paired difference
    against unimodal with its 95 % t-interval, p-value and wins/ties/losses (``*``: significant), and the
    share of the gap recovered with its interval (``undef.`` when the teacher's margin is not clear)."""
    split = report.get("evaluated_on", "test")
    n = len(report["seeds"])
    head = (f"{'method':<17} {'modalities':<14} {'nets':>4} {split + ' acc %':>14} {'macro-F1 %':>14}  "
            f"{'vs unimodal [95% CI]':<25} {'p':>6} {'W/T/L':>7}  {'gap rec. [95% CI]':<20}")
    lines = [head, "-" * len(head)]
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
        lines.append(
            f"{name:<17} {'+'.join(r['modalities']):<14} {r.get('networks', 1):>4} "
            f"{100 * a['mean']:>7.2f} ± {100 * a['std']:<4.2f} {100 * f['mean']:>7.2f} ± {100 * f['std']:<4.2f}  "
            f"{vs_s:<25} {p_s:>6} {wtl:>7}  {gap_s:<20}"
        )
    tc = stats.t_critical(n) if n > 1 else float("nan")
    lines.append(f"seeds {report['seeds']} (independent replicates; methods paired by seed); ± = sd over seeds; "
                 "the teacher is one model shared by all seeds.")
    lines.append(f"vs unimodal: mean paired difference in points, 95 % t-interval ({n - 1} d.f., t = {tc:.2f}), "
                 "two-sided p; * = significant (interval excludes 0); W/T/L = seeds won/tied/lost.")
    lines.append("gap rec. = (method - unimodal) / (teacher - unimodal), Fieller 95 % interval; undef. when the "
                 "teacher's margin over unimodal is not significant. nets = networks run at inference.")
    for ens, r in report["results"].items():
        vs = r.get("vs_unimodal_ensemble")
        if vs is not None and vs["ci95"] is not None:
            lines.append(f"{ens} vs {UNIMODAL_ENSEMBLE} (equal inference cost): {_pct(vs['mean_diff'])} "
                         f"[{_pct(vs['ci95'][0])}, {_pct(vs['ci95'][1])}]{' *' if vs['significant'] else ''}, "
                         f"W/T/L {vs['wins']}/{vs['ties']}/{vs['losses']}")
    return "\n".join(lines)


def results_csv(report: dict) -> str:
    """One row per method: means, paired statistics against unimodal, gap share, per-seed accuracies."""
    buf = io.StringIO()
    w = csv.writer(buf)
    seeds = report["seeds"]
    w.writerow(["method", "modalities", "networks", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std",
                "val_accuracy_mean", "diff_vs_unimodal", "diff_ci95_lo", "diff_ci95_hi", "p_value", "wins", "ties",
                "losses", "gap_recovered", "gap_ci95_lo", "gap_ci95_hi"] + [f"accuracy_seed{s}" for s in seeds])

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
                   + [f"{a:.6f}" for a in r["accuracy"]["per_seed"]])
    return buf.getvalue()

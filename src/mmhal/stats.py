"""Paired statistics over seeds: differences with 95 % t-intervals, p-values, and *gap recovered*.

Seeds are independent replicates (``mmhal.utils.derive_seed``) and every method of a seed shares the
student's initialisation and data order, so methods are compared **paired by seed**: for n seeds the
differences d_i = method_i - unimodal_i give

    mean d,  se = sd(d) / sqrt(n),  95 % CI = mean d +- t_{0.975, n-1} * se,  two-sided p of H0: E d = 0,

(Student's t with n - 1 degrees of freedom: 4.30 for 3 seeds, 2.78 for 5, 2.26 for 10; never "2 SE").
A difference is called significant when its interval excludes 0 (p < 0.05). The test, the intervals and
the quantiles are SciPy's (``scipy.stats.ttest_1samp``, ``t.interval``, ``t.ppf``); only Fieller's
interval, which SciPy does not offer, is computed here from its closed form.

*Gap recovered* is the ratio rho = E[method - unimodal] / E[teacher - unimodal]. Its 95 % interval is
Fieller's for a ratio of paired means: the set of rho for which the paired t-test of
a_i - rho * b_i (a = method - unimodal, b = teacher - unimodal) does not reject at 5 %. That set is a
bounded interval exactly when the teacher's own margin over unimodal is significant (its t-interval
excludes 0); otherwise the ratio is undefined (``None``): a "share of the gap" means nothing when the gap
itself is not clear of the seed noise, or is negative.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats as _st

LEVEL = 0.95


def t_critical(n: int, level: float = LEVEL) -> float:
    """Two-sided critical value of Student's t with n - 1 degrees of freedom (4.303 for n = 3)."""
    return float(_st.t.ppf(0.5 + level / 2, n - 1))


def paired(values: Sequence[float], baseline: Sequence[float], tol: float = 1e-12) -> dict:
    """Paired comparison of ``values`` against ``baseline`` (same seeds, same order).

    Returns ``{"mean_diff", "se", "ci95": [lo, hi], "p_value", "significant", "wins", "ties", "losses", "n"}``;
    with a single seed there is no spread, so ``se``, ``ci95`` and ``p_value`` are None. A seed whose two
    values differ by at most ``tol`` is a tie (the same number of correct test samples), not a loss.

    The p-value is scipy's one-sample t-test of the differences (``scipy.stats.ttest_1samp``, the same as
    ``ttest_rel``) and the interval ``scipy.stats.t.interval`` (``TtestResult.confidence_interval`` would
    need scipy >= 1.10). Differences that are all equal (within ``tol``, e.g. the same accuracy gain on every
    seed) have no spread: se 0, the interval is the point, p is 0 for a non-zero difference and 1 for none
    (scipy would give NaN and warn of precision loss).
    """
    d = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    n = len(d)
    assert n >= 1 and len(values) == len(baseline)
    out = {"mean_diff": float(d.mean()), "se": None, "ci95": None, "p_value": None, "significant": False,
           "wins": int((d > tol).sum()), "ties": int((np.abs(d) <= tol).sum()), "losses": int((d < -tol).sum()),
           "n": n}
    if n < 2:
        return out
    if np.ptp(d) <= tol:
        p = 0.0 if abs(out["mean_diff"]) > tol else 1.0
        out.update(se=0.0, ci95=[out["mean_diff"], out["mean_diff"]], p_value=p, significant=p < 1 - LEVEL)
        return out
    se = float(_st.sem(d))
    p = float(_st.ttest_1samp(d, 0.0).pvalue)
    lo, hi = _st.t.interval(LEVEL, n - 1, loc=out["mean_diff"], scale=se)
    out.update(se=se, ci95=[float(lo), float(hi)], p_value=p, significant=p < 1 - LEVEL)
    return out


def gap_recovered(method: Sequence[float], unimodal: Sequence[float], teacher: Sequence[float]) -> Optional[dict]:
    """Share of the teacher-unimodal gap a method recovers, with Fieller's 95 % interval (see module doc).

    ``None`` when there are fewer than 2 seeds or the teacher's mean margin over unimodal is not
    significantly positive (its t-interval reaches 0 or below).
    """
    m, u, t = (np.asarray(x, dtype=float) for x in (method, unimodal, teacher))
    n = len(u)
    if n < 2:
        return None
    a, b = m - u, t - u
    a_bar, b_bar = a.mean(), b.mean()
    q2 = t_critical(n) ** 2 / n
    s_aa, s_bb = a.var(ddof=1), b.var(ddof=1)
    s_ab = float(np.cov(a, b, ddof=1)[0, 1])
    # (a_bar - rho b_bar)^2 <= q2 (s_aa - 2 rho s_ab + rho^2 s_bb)  <=>  A rho^2 - 2 B rho + C <= 0
    big_a = b_bar**2 - q2 * s_bb
    if b_bar <= 0 or big_a <= 0:  # the margin's t-interval includes 0: the ratio is unbounded
        return None
    big_b = a_bar * b_bar - q2 * s_ab
    big_c = a_bar**2 - q2 * s_aa
    root = math.sqrt(max(big_b**2 - big_a * big_c, 0.0))
    return {"mean": float(a_bar / b_bar), "ci95": [float((big_b - root) / big_a), float((big_b + root) / big_a)]}


def mean_ci(values: Sequence[float]) -> Optional[list[float]]:
    """95 % t-interval of the mean of ``values`` (None for a single value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    if np.ptp(v) == 0:  # scipy gives NaN for no spread; the interval is the point
        return [float(v[0]), float(v[0])]
    lo, hi = _st.t.interval(LEVEL, len(v) - 1, loc=v.mean(), scale=_st.sem(v))
    return [float(lo), float(hi)]

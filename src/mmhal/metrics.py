"""Classification and presentation-attack-detection metrics (numpy, no scikit-learn at run time).

Why not scikit-learn: accuracy runs on the validation split after every epoch of every student, and
the figures below once per result. On 10,000 samples (``python benchmarks/library_speed.py``, numpy 2.4,
scikit-learn 1.9, a shared 2-core CPU, two runs) ``sklearn.metrics`` was 105-270x slower for accuracy
(1.7-6.7 ms against 0.02-0.03 ms), 36-50x for macro-F1 (6 or 100 classes) and 21-24x for ROC AUC: its input
validation costs more than the counting. The values are equal, and the tests check them against
scikit-learn, which stays a test-only dependency (``tests/test_pad_metrics.py``).
"""
from __future__ import annotations

import re
from fractions import Fraction

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of samples whose predicted class equals the label."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def _class_counts(a: np.ndarray, k: int) -> np.ndarray:
    """(k,) how often each class index 0..k-1 occurs in ``a`` (other values are no class and not counted)."""
    return np.bincount(a[(a >= 0) & (a < k)], minlength=k)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN), over the classes 0..K-1 that occur
    among the labels or the predictions (a class with no true and no predicted sample is skipped, as
    ``sklearn.metrics.f1_score(average="macro", labels=<classes present>)`` does)."""
    y_true = np.asarray(y_true).astype(np.int64, copy=False)
    y_pred = np.asarray(y_pred).astype(np.int64, copy=False)
    k = num_classes or int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    tp = _class_counts(y_true[y_true == y_pred], k)
    true, pred = _class_counts(y_true, k), _class_counts(y_pred, k)
    denom = true + pred  # 2 TP + FP + FN
    seen = denom > 0
    return float(np.mean(2 * tp[seen] / denom[seen])) if seen.any() else float("nan")


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``k`` highest of their scores (N, K) (ties: any of the
    tied classes may count, as argsort orders them)."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if not len(y_true):
        return float("nan")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == y_true[:, None]).any(axis=1).mean())


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) fraction of each class's samples predicted as that class (recall); NaN for a class with none."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    total = np.bincount(y_true, minlength=num_classes).astype(float)
    hit = np.bincount(y_true[y_true == y_pred], minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.maximum(total, 1), np.nan)


# --------------------------------------------------------------------------------------------------------
# Presentation-attack detection (ISO/IEC 30107-3 terms)
#
# Conventions: a score is P(bona fide); a sample is accepted as bona fide iff score >= threshold, so a
# bona fide score equal to the threshold is accepted and an attack score equal to it is a false accept.
#   APCER_S(t) = #{attacks of species S with score >= t} / #attacks of S
#   APCER(t)   = max over species of APCER_S(t)    (APCER_AP; the pooled rate when species are unknown)
#   BPCER(t)   = #{bona fide with score < t} / #bona fide
#   ACER = (APCER_AP + BPCER) / 2 (benchmark convention),  HTER = (APCER_pooled + BPCER) / 2.
# Candidate thresholds are the distinct scores of the set at hand plus +inf (reject everything): every
# operating point the data allows is reached by exactly one of them (a point between two adjacent
# distinct scores has the rates of the upper one), so rates agree with any oracle using the same ">="
# rule (bob's midpoints, sklearn's roc_curve thresholds), although threshold values may differ.
# All rate comparisons are done on integer counts, so ties between criteria are exact.
# --------------------------------------------------------------------------------------------------------

PAD_APCER_POINTS = ("0.01", "0.05", "0.1")  # BPCER100, BPCER20, BPCER10 operating points


def _bool_labels(x, what: str) -> np.ndarray:
    a = np.asarray(x).ravel()
    if a.dtype == bool:
        return a
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{what} must be boolean or 0/1 (1 = bona fide).")
    return a.astype(bool)


def _finite_scores(x, what: str) -> np.ndarray:
    s = np.asarray(x, dtype=float).ravel()
    if not np.isfinite(s).all():
        raise ValueError(f"{what} contain NaN or infinite values.")
    return s


class _ScoreSet:
    """Sorted bona fide scores, pooled attack scores and attack scores per species of one split."""

    def __init__(self, scores, bona_fide, species, what: str):
        s = _finite_scores(scores, f"the {what} scores")
        bf = _bool_labels(bona_fide, f"the {what} bona fide flags")
        if len(s) != len(bf):
            raise ValueError(f"the {what} scores ({len(s)}) and bona fide flags ({len(bf)}) differ in length.")
        self.pos = np.sort(s[bf])
        att = s[~bf]
        self.neg = np.sort(att)
        if species is None:
            self.species = {"all": self.neg}
            self.species_known = False
        else:
            sp = np.asarray(species).astype(str).ravel()
            if len(sp) != len(s):
                raise ValueError(f"the {what} species ({len(sp)}) and scores ({len(s)}) differ in length.")
            sp = sp[~bf]
            self.species = {str(k): np.sort(att[sp == k]) for k in np.unique(sp)}
            self.species_known = True
        self.nb, self.na = len(self.pos), len(self.neg)

    def candidates(self) -> np.ndarray:
        return np.unique(np.concatenate([self.pos, self.neg, [np.inf]]))

    def false_rejects(self, t) -> np.ndarray:
        """#bona fide with score < t, for each threshold in t."""
        return np.searchsorted(self.pos, t, side="left")

    @staticmethod
    def false_accepts(neg_sorted, t) -> np.ndarray:
        """#attacks with score >= t, for each threshold in t."""
        return len(neg_sorted) - np.searchsorted(neg_sorted, t, side="left")

    def _first_where_apcer_ap_at_most(self, cand, num: int, den: int) -> int:
        """Index of the smallest candidate where every species' APCER <= num/den (per species the smallest
        threshold meeting it, then the largest of those: bob.pad.base ``apcer_threshold``). +inf (the last
        candidate) always meets it."""
        ok = np.ones(len(cand), dtype=bool)
        for neg in self.species.values():
            if len(neg):
                ok &= self.false_accepts(neg, cand).astype(np.int64) * den <= num * len(neg)
        return int(np.argmax(ok))

    def eer_index(self, cand) -> int:
        """The candidate where pooled APCER and BPCER are closest; ties: the smaller APCER + BPCER, then the
        larger threshold (fewer false accepts)."""
        fa = self.false_accepts(self.neg, cand).astype(np.int64) * self.nb  # APCER * na * nb
        fr = self.false_rejects(cand).astype(np.int64) * self.na  # BPCER * na * nb
        return int(np.lexsort((-cand, fa + fr, np.abs(fa - fr)))[0])

    def min_hter_index(self, cand) -> int:
        """The candidate minimising pooled APCER + BPCER; ties: the smaller |APCER - BPCER|, then the larger
        threshold."""
        fa = self.false_accepts(self.neg, cand).astype(np.int64) * self.nb
        fr = self.false_rejects(cand).astype(np.int64) * self.na
        return int(np.lexsort((-cand, np.abs(fa - fr), fa + fr))[0])


def _parse_criterion(criterion):
    """('eer' | 'min-hter' | 'bpcer' | 'apcer' | 'fixed', parameter)."""
    if isinstance(criterion, (int, float)) and not isinstance(criterion, bool):
        return "fixed", float(criterion)
    c = str(criterion).strip().lower()
    if c in ("eer", "min-hter"):
        return c, None
    m = re.fullmatch(r"(bpcer|apcer)(\d+)", c)
    if m and int(m.group(2)) >= 1:
        return m.group(1), int(m.group(2))
    try:
        return "fixed", float(c)
    except ValueError:
        raise ValueError(f"unknown PAD threshold criterion '{criterion}' (use eer, min-hter, bpcerN such as "
                         "bpcer20, apcerN, or a fixed number such as 0.5).") from None


def pad_threshold(val: "_ScoreSet", criterion) -> tuple[float, bool]:
    """(threshold chosen on the validation scores, calibrated?) for ``criterion``:

    - ``eer``: pooled APCER closest to BPCER (ties: smaller sum, then larger threshold);
    - ``min-hter``: smallest pooled APCER + BPCER (ties: smaller |difference|, then larger threshold);
    - ``bpcerN``: the smallest threshold with APCER_AP <= 1/N (per species, then the max; bob.pad.base);
    - ``apcerN``: the largest threshold with BPCER <= 1/N (bob's ``frr_threshold`` on pooled attacks);
    - a number (or numeric string): that threshold, not calibrated on validation.
    """
    kind, arg = _parse_criterion(criterion)
    if kind == "fixed":
        return arg, False
    if val.nb == 0 or val.na == 0:
        raise ValueError("the validation split needs both bona fide and attack samples to choose a PAD threshold "
                         f"(it has {val.nb} bona fide and {val.na} attack).")
    cand = val.candidates()
    if kind == "eer":
        i = val.eer_index(cand)
    elif kind == "min-hter":
        i = val.min_hter_index(cand)
    elif kind == "bpcer":
        i = val._first_where_apcer_ap_at_most(cand, 1, arg)
    else:  # apcerN: BPCER <= 1/N, as many attacks rejected as possible
        ok = val.false_rejects(cand).astype(np.int64) * arg <= val.nb
        i = int(np.nonzero(ok)[0][-1])  # the smallest candidate (the minimum score) always has BPCER 0
    return float(cand[i]), True


def _rate(num, den) -> float:
    return float(num) / den if den else float("nan")


def _auc(pos: np.ndarray, neg_sorted: np.ndarray) -> float:
    """P(bona fide score > attack score) + 0.5 P(equal) (ROC AUC with bona fide positive)."""
    if len(pos) == 0 or len(neg_sorted) == 0:
        return float("nan")
    lo = np.searchsorted(neg_sorted, pos, side="left").astype(np.int64)
    hi = np.searchsorted(neg_sorted, pos, side="right").astype(np.int64)
    return float((2 * lo.sum() + (hi - lo).sum()) / (2.0 * len(pos) * len(neg_sorted)))


def pad_metrics(val_scores, val_bona_fide, test_scores, test_bona_fide, test_species=None, criterion="eer",
                val_species=None) -> dict:
    """ISO/IEC 30107-3 PAD metrics on the test scores at a threshold chosen on the validation scores.

    Scores are P(bona fide) (higher = more bona fide), accepted as bona fide iff score >= threshold. Species
    (arrays of str aligned with the scores; bona fide rows ignored) give APCER per species and APCER_AP = its
    max; without them APCER is the pooled rate, reported as species ``"all"``. ``val_species`` matters only to
    ``bpcerN``, which otherwise uses the pooled validation attacks. See :func:`pad_threshold` for the criteria
    and their tie rules.

    Returns ``threshold``, ``criterion``, ``calibrated`` (False for a fixed threshold), ``apcer`` (APCER_AP),
    ``apcer_per_species``, ``apcer_pooled``, ``bpcer``, ``acer`` = (apcer + bpcer)/2, ``hter`` =
    (apcer_pooled + bpcer)/2, and the test operating points (chosen on test, not usable as a calibrated
    result): ``eer`` ((APCER_pooled + BPCER)/2 at the test threshold where they are closest, ties as for the
    ``eer`` criterion), ``auc`` (bona fide positive, ties count half) and ``bpcer_at_apcer`` {"0.01", "0.05",
    "0.1"}: BPCER at the smallest test threshold with APCER_AP <= x; plus ``n_bona_fide``, ``n_attack`` and
    ``n_attack_per_species`` of the test set. A rate with an empty denominator is NaN.

    Raises ValueError when the validation split lacks bona fide or attack samples (unless the threshold is
    fixed) and on malformed input.
    """
    val = _ScoreSet(val_scores, val_bona_fide, val_species, "validation")
    test = _ScoreSet(test_scores, test_bona_fide, test_species, "test")
    tau, calibrated = pad_threshold(val, criterion)
    t = np.array([tau])
    per_species = {k: _rate(test.false_accepts(v, t)[0], len(v)) for k, v in test.species.items()}
    apcer_pooled = _rate(test.false_accepts(test.neg, t)[0], test.na)
    apcer = max(per_species.values()) if test.na else float("nan")
    bpcer = _rate(test.false_rejects(t)[0], test.nb)

    eer = float("nan")
    at_apcer = {x: float("nan") for x in PAD_APCER_POINTS}
    if test.nb and test.na:
        cand = test.candidates()
        i = test.eer_index(cand)
        eer = (_rate(test.false_accepts(test.neg, cand[i:i + 1])[0], test.na)
               + _rate(test.false_rejects(cand[i:i + 1])[0], test.nb)) / 2
        for x in PAD_APCER_POINTS:
            f = Fraction(x)
            j = test._first_where_apcer_ap_at_most(cand, f.numerator, f.denominator)
            at_apcer[x] = _rate(test.false_rejects(cand[j:j + 1])[0], test.nb)
    return {
        "threshold": tau,
        "criterion": str(criterion),
        "calibrated": calibrated,
        "apcer": apcer,
        "apcer_per_species": per_species,
        "apcer_pooled": apcer_pooled,
        "bpcer": bpcer,
        "acer": (apcer + bpcer) / 2,
        "hter": (apcer_pooled + bpcer) / 2,
        "eer": eer,
        "auc": _auc(test.pos, test.neg),
        "bpcer_at_apcer": at_apcer,
        "n_bona_fide": test.nb,
        "n_attack": test.na,
        "n_attack_per_species": {k: len(v) for k, v in test.species.items()},
    }


def pad_legacy(test_pred_bona_fide, test_bona_fide) -> dict:
    """The reference code's figures (``calc_accuracy_kd_patch``) from hard decisions (argmax of 2-way logits).

    With live = bona fide and spoof = attack, and counts of right/wrong decisions per true class:
    ``legacy_acc`` = (live_right + spoof_right) / N; ``legacy_far`` = spoof_wrong / #spoof (the ISO pooled
    APCER at that decision); ``legacy_frr`` = live_wrong / #live (the ISO BPCER); ``legacy_hter`` = (far +
    frr) / 2 (the ISO ACER/HTER with pooled attacks); and the non-standard false-discovery rates
    ``legacy_apcer_star`` = live_wrong / (spoof_right + live_wrong), ``legacy_npcer_star`` = spoof_wrong /
    (spoof_wrong + live_right), ``legacy_acer_star`` = their mean. These starred figures are NOT the ISO
    APCER/BPCER/ACER. An empty denominator gives NaN.
    """
    pred = _bool_labels(test_pred_bona_fide, "the predicted bona fide flags")
    true = _bool_labels(test_bona_fide, "the bona fide flags")
    if len(pred) != len(true):
        raise ValueError(f"the predictions ({len(pred)}) and labels ({len(true)}) differ in length.")
    live_right = int(np.sum(true & pred))
    live_wrong = int(np.sum(true & ~pred))
    spoof_right = int(np.sum(~true & ~pred))
    spoof_wrong = int(np.sum(~true & pred))
    far = _rate(spoof_wrong, spoof_wrong + spoof_right)
    frr = _rate(live_wrong, live_wrong + live_right)
    apcer_star = _rate(live_wrong, spoof_right + live_wrong)
    npcer_star = _rate(spoof_wrong, spoof_wrong + live_right)
    return {
        "legacy_acc": _rate(live_right + spoof_right, len(true)),
        "legacy_far": far,
        "legacy_frr": frr,
        "legacy_hter": (far + frr) / 2,
        "legacy_apcer_star": apcer_star,
        "legacy_npcer_star": npcer_star,
        "legacy_acer_star": (apcer_star + npcer_star) / 2,
    }


class VideoGroups:
    """How samples group into videos (ids in order of first appearance), checked once and reused for
    every score vector: a video must not mix bona fide and attack samples, nor attack species."""

    def __init__(self, video, bona_fide, species=None):
        v = np.asarray(video).ravel()
        bf = _bool_labels(bona_fide, "the bona fide flags")
        if len(v) != len(bf):
            raise ValueError(f"the video ids ({len(v)}) and bona fide flags ({len(bf)}) differ in length.")
        ids, first, inv = np.unique(v, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        self.group = rank[inv.ravel()]
        self.ids = ids[order]
        m = len(self.ids)
        self.counts = np.bincount(self.group, minlength=m)
        n_bf = np.bincount(self.group, weights=bf.astype(float), minlength=m)
        mixed = np.nonzero((n_bf > 0) & (n_bf < self.counts))[0]
        if len(mixed):
            raise ValueError(f"video '{self.ids[mixed[0]]}' mixes bona fide and attack samples.")
        self.bona_fide = n_bf == self.counts
        self.species = None
        if species is not None:
            sp = np.asarray(species).astype(str).ravel()
            if len(sp) != len(v):
                raise ValueError(f"the species ({len(sp)}) and video ids ({len(v)}) differ in length.")
            sp_v = sp[first[order]]
            bad = np.nonzero((sp != sp_v[self.group]) & ~bf)[0]
            if len(bad):
                raise ValueError(f"video '{v[bad[0]]}' mixes attack species.")
            self.species = sp_v

    def mean(self, scores) -> np.ndarray:
        s = np.asarray(scores, dtype=float).ravel()
        if len(s) != len(self.group):
            raise ValueError(f"the scores ({len(s)}) and video ids ({len(self.group)}) differ in length.")
        return np.bincount(self.group, weights=s, minlength=len(self.ids)) / self.counts


def video_scores(scores, bona_fide, video, species=None):
    """(mean score per video, bona fide flag per video, species per video or None, video ids), videos in
    order of first appearance. A video mixing bona fide and attack samples (or attack species) raises
    ValueError."""
    g = VideoGroups(video, bona_fide, species)
    return g.mean(scores), g.bona_fide, g.species, g.ids

"""PAD metrics (mmhal.metrics.pad_metrics and friends) against scikit-learn and hand-computed cases.

Oracle: ``roc_curve(y, s, pos_label=1, drop_intermediate=False)`` with y = 1 for bona fide gives, at each of its
thresholds t_i (the distinct scores and +inf, as our candidates), fpr[i] = APCER(t_i) and 1 - tpr[i] = BPCER(t_i)
under the same "accept iff score >= t" rule.
"""
import numpy as np
import pytest

from mmhal.metrics import pad_legacy, pad_metrics, video_scores

sklearn_metrics = pytest.importorskip("sklearn.metrics")
roc_curve, roc_auc_score = sklearn_metrics.roc_curve, sklearn_metrics.roc_auc_score

SPECIES = np.array(["print", "replay", "mask"])


def _data(seed, n=400, grid=16):
    """Scores on a coarse grid (many ties), bona fide ~35 %, three attack species of different strength."""
    rng = np.random.default_rng(seed)
    bf = rng.random(n) < 0.35
    sp = np.where(bf, "", SPECIES[rng.integers(0, 3, n)])
    shift = np.select([bf, sp == "print", sp == "replay"], [0.35, 0.0, 0.15], 0.25)
    s = np.clip(np.round((rng.random(n) * 0.6 + shift) * grid) / grid, 0, 1)
    return s, bf, sp


def _roc(bf_scores, att_scores):
    y = np.r_[np.ones(len(bf_scores)), np.zeros(len(att_scores))]
    fpr, tpr, thr = roc_curve(y, np.r_[bf_scores, att_scores], pos_label=1, drop_intermediate=False)
    return thr, fpr, 1 - tpr


def _sk_index(fpr, fnr, thr, primary):
    """Index chosen with our tie rules, on rates rounded to 12 decimals."""
    diff, tot = np.round(np.abs(fpr - fnr), 12), np.round(fpr + fnr, 12)
    keys = (-thr, tot, diff) if primary == "eer" else (-thr, diff, tot)
    return int(np.lexsort(keys)[0])


def _sk_bpcer_at_apcer(s, bf, sp, x):
    """Per species the largest fpr <= x (its threshold), then the most restrictive (largest) threshold."""
    taus = []
    for k in np.unique(sp[~bf]):
        thr, fpr, _ = _roc(s[bf], s[~bf & (sp == k)])
        taus.append(thr[np.nonzero(fpr <= x)[0][-1]])
    tau = max(taus)
    return float(np.mean(s[bf] < tau)), tau


@pytest.mark.parametrize("seed", range(5))
def test_rates_at_every_fixed_threshold_equal_sklearns_roc_curve(seed):
    s, bf, sp = _data(seed)
    thr, fpr, fnr = _roc(s[bf], s[~bf])
    for i in range(1, len(thr)):  # thr[0] is +inf (or max + 1 in old releases)
        m = pad_metrics(s, bf, s, bf, criterion=float(thr[i]))
        assert m["apcer_pooled"] == pytest.approx(fpr[i], abs=1e-12)
        assert m["apcer"] == pytest.approx(fpr[i], abs=1e-12)  # no species: APCER is the pooled rate
        assert m["bpcer"] == pytest.approx(fnr[i], abs=1e-12)
        assert m["calibrated"] is False


@pytest.mark.parametrize("seed", range(5))
def test_per_species_apcer_equals_sklearn_on_bona_fide_and_that_species(seed):
    s, bf, sp = _data(seed)
    m = pad_metrics(s, bf, s, bf, sp, criterion="0.5")
    for k in SPECIES:
        thr, fpr, _ = _roc(s[bf], s[~bf & (sp == k)])
        i = int(np.nonzero(thr >= 0.5)[0][-1])  # the smallest roc threshold >= 0.5 has the rates of 0.5
        assert m["apcer_per_species"][k] == pytest.approx(fpr[i], abs=1e-12)
        assert m["n_attack_per_species"][k] == int(np.sum(~bf & (sp == k)))
    assert m["apcer"] == max(m["apcer_per_species"].values())
    assert m["acer"] == pytest.approx((m["apcer"] + m["bpcer"]) / 2)
    assert m["hter"] == pytest.approx((m["apcer_pooled"] + m["bpcer"]) / 2)
    assert (m["n_bona_fide"], m["n_attack"]) == (int(bf.sum()), int((~bf).sum()))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("criterion", ["eer", "min-hter"])
def test_validation_criteria_pick_sklearns_threshold_and_transfer_it_to_test(seed, criterion):
    s, bf, sp = _data(seed)
    ts, tbf, tsp = _data(seed + 100, n=300)
    thr, fpr, fnr = _roc(s[bf], s[~bf])
    tau = thr[_sk_index(fpr, fnr, thr, criterion)]
    m = pad_metrics(s, bf, ts, tbf, tsp, criterion=criterion)
    assert m["threshold"] == tau  # same candidate set (distinct scores and +inf), same tie rules
    assert m["bpcer"] == pytest.approx(np.mean(ts[tbf] < tau), abs=1e-12)
    assert m["apcer_pooled"] == pytest.approx(np.mean(ts[~tbf] >= tau), abs=1e-12)
    apcer_ap = max(np.mean(ts[~tbf & (tsp == k)] >= tau) for k in SPECIES)
    assert m["apcer"] == pytest.approx(apcer_ap, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_test_operating_points_equal_sklearn(seed):
    s, bf, sp = _data(seed)
    vs, vbf, _ = _data(seed + 50)
    m = pad_metrics(vs, vbf, s, bf, sp)
    thr, fpr, fnr = _roc(s[bf], s[~bf])
    i = _sk_index(fpr, fnr, thr, "eer")
    assert m["eer"] == pytest.approx((fpr[i] + fnr[i]) / 2, abs=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(bf.astype(int), s), abs=1e-12)
    for x in ("0.01", "0.05", "0.1"):
        assert m["bpcer_at_apcer"][x] == pytest.approx(_sk_bpcer_at_apcer(s, bf, sp, float(x))[0], abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_bpcer_n_criterion_is_the_max_over_species_of_the_apcer_threshold(seed):
    s, bf, sp = _data(seed)
    for n in (2, 5, 20):
        bpcer, tau = _sk_bpcer_at_apcer(s, bf, sp, 1 / n)
        m = pad_metrics(s, bf, s, bf, sp, criterion=f"bpcer{n}", val_species=sp)
        # Thresholds may differ (ours: among all scores); on the validation data itself the rates agree.
        assert m["bpcer"] == pytest.approx(bpcer, abs=1e-12)
        assert m["apcer"] <= 1 / n
        assert m["apcer"] == pytest.approx(max(np.mean(s[~bf & (sp == k)] >= tau) for k in SPECIES), abs=1e-12)


def test_sixty_thousand_samples_agree_with_sklearn():
    rng = np.random.default_rng(7)
    n = 60_000
    bf = rng.random(n) < 0.3
    s = np.round(rng.random(n) * 0.7 + 0.3 * bf, 4)
    m = pad_metrics(s, bf, s, bf)
    thr, fpr, fnr = _roc(s[bf], s[~bf])
    i = _sk_index(fpr, fnr, thr, "eer")
    assert m["threshold"] == thr[i]
    assert m["eer"] == pytest.approx((fpr[i] + fnr[i]) / 2, abs=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(bf.astype(int), s), abs=1e-12)


# ---- hand-made 3 x 3 cases -------------------------------------------------------------------------------
BF3 = [0.2, 0.5, 0.8]
AT3 = [0.1, 0.5, 0.6]


def _three_by_three(criterion):
    s = np.array(BF3 + AT3)
    bf = np.array([True] * 3 + [False] * 3)
    return pad_metrics(s, bf, s, bf, criterion=criterion)


def test_ties_at_a_fixed_threshold_accept_both_the_bona_fide_and_the_attack():
    m = _three_by_three(0.5)
    # attacks >= 0.5: {0.5, 0.6} -> APCER 2/3; bona fide < 0.5: {0.2} -> BPCER 1/3 (0.5 itself is accepted)
    assert m["apcer"] == 2 / 3 and m["apcer_pooled"] == 2 / 3
    assert m["bpcer"] == 1 / 3
    assert m["acer"] == 0.5 and m["hter"] == 0.5
    assert m["apcer_per_species"] == {"all": 2 / 3}
    assert m["threshold"] == 0.5 and m["calibrated"] is False and m["criterion"] == "0.5"
    assert _three_by_three("0.5")["bpcer"] == 1 / 3  # a numeric string is a fixed threshold too


def test_eer_criterion_breaks_a_tie_by_the_sum_then_the_larger_threshold():
    # candidate: APCER, BPCER -> 0.1: 1, 0 | 0.2: 2/3, 0 | 0.5: 2/3, 1/3 | 0.6: 1/3, 2/3 | 0.8: 0, 2/3 | inf: 0, 1
    # |APCER - BPCER| is 1/3 at 0.5 and at 0.6, both sum to 1 -> the larger threshold, 0.6.
    m = _three_by_three("eer")
    assert m["threshold"] == 0.6 and m["calibrated"] is True
    assert m["apcer"] == 1 / 3 and m["bpcer"] == 2 / 3
    assert m["eer"] == 0.5  # test operating point: (1/3 + 2/3) / 2
    # AUC: bona fide 0.2 beats 1 attack, 0.5 beats 1 and ties 1 (0.5), 0.8 beats 3 -> 5.5 / 9
    assert m["auc"] == pytest.approx(5.5 / 9, abs=1e-15)
    # APCER_AP <= 1 % (or 10 %) needs no attack accepted: smallest such threshold 0.8 -> BPCER 2/3
    assert m["bpcer_at_apcer"] == {"0.01": 2 / 3, "0.05": 2 / 3, "0.1": 2 / 3}


def test_min_hter_criterion_breaks_a_tie_by_the_difference_then_the_larger_threshold():
    # APCER + BPCER is 2/3 at 0.2 (2/3 + 0) and at 0.8 (0 + 2/3), |difference| 2/3 for both -> 0.8
    m = _three_by_three("min-hter")
    assert m["threshold"] == 0.8
    assert m["apcer"] == 0.0 and m["bpcer"] == 2 / 3 and m["hter"] == 1 / 3


def test_the_largest_species_apcer_makes_acer_differ_from_the_pooled_hter():
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.1, 0.2, 0.6, 0.75, 0.2, 0.1])
    bf = np.array([True] * 4 + [False] * 6)
    sp = np.array([""] * 4 + ["print", "print", "replay", "replay", "replay", "replay"])
    m = pad_metrics(s, bf, s, bf, sp, criterion=0.5)
    # print: 0 of 2 >= 0.5; replay: 0.6, 0.75 of 4 -> 1/2; pooled 2/6; bona fide 0.3 < 0.5 -> BPCER 1/4
    assert m["apcer_per_species"] == {"print": 0.0, "replay": 0.5}
    assert m["apcer"] == 0.5 and m["apcer_pooled"] == pytest.approx(1 / 3)
    assert m["bpcer"] == 0.25
    assert m["acer"] == 0.375
    assert m["hter"] == pytest.approx(7 / 24)
    assert m["n_attack_per_species"] == {"print": 2, "replay": 4}


def test_bpcer_n_takes_the_max_over_species_of_the_per_species_thresholds():
    s = np.array([0.3, 0.5, 0.7, 0.9, 0.1, 0.2, 0.4, 0.6, 0.8, 0.85])
    bf = np.array([True] * 4 + [False] * 6)
    sp = np.array([""] * 4 + ["A", "A", "B", "B", "B", "B"])
    # APCER <= 1/2. A: smallest threshold 0.2 (1 of 2 accepted). B: at most 2 of 4 -> above 0.6 -> 0.7.
    # Max: 0.7 -> BPCER = #{0.3, 0.5} / 4 = 1/2, APCER_A = 0, APCER_B = 1/2.
    m = pad_metrics(s, bf, s, bf, sp, criterion="bpcer2", val_species=sp)
    assert m["threshold"] == 0.7 and m["bpcer"] == 0.5 and m["apcer"] == 0.5
    # Pooled (no validation species): at most 3 of 6 attacks accepted -> above 0.4 -> 0.5 -> BPCER 1/4.
    pooled = pad_metrics(s, bf, s, bf, sp, criterion="bpcer2")
    assert pooled["threshold"] == 0.5 and pooled["bpcer"] == 0.25
    assert pooled["apcer_per_species"] == {"A": 0.0, "B": 0.75}


def test_polarity_swap_gives_identical_metrics_after_conversion():
    rng = np.random.default_rng(3)
    n = 300
    native_bf = rng.random(n) < 0.4
    native_s = np.round((rng.random(n) * 0.7 + 0.3 * native_bf) * 64) / 64  # dyadic grid: 1 - s is exact
    sp = np.where(native_bf, "", np.array(["a", "b"])[rng.integers(0, 2, n)])
    label, p_attack = (~native_bf).astype(int), 1.0 - native_s  # the same data coded 1 = attack, P(attack)
    h = n // 2
    ref = pad_metrics(native_s[:h], native_bf[:h], native_s[h:], native_bf[h:], sp[h:])
    bf, s = 1 - label, 1 - p_attack  # the conversion
    assert pad_metrics(s[:h], bf[:h], s[h:], bf[h:], sp[h:]) == ref
    # Converting the labels but not the scores inverts the ranking: the test can tell.
    wrong = pad_metrics(p_attack[:h], bf[:h], p_attack[h:], bf[h:], sp[h:])
    assert wrong["auc"] == pytest.approx(1 - ref["auc"], abs=1e-12)
    assert wrong["acer"] != ref["acer"]


def test_legacy_figures_on_a_hand_made_confusion():
    # 10 live: 7 right, 3 wrong; 5 spoof: 4 right, 1 wrong (predicted live)
    true = np.array([1] * 10 + [0] * 5, dtype=bool)
    pred = np.array([1] * 7 + [0] * 3 + [0] * 4 + [1], dtype=bool)
    m = pad_legacy(pred, true)
    assert m["legacy_acc"] == 11 / 15
    assert m["legacy_far"] == 0.2  # spoof_wrong / #spoof = ISO APCER
    assert m["legacy_frr"] == 0.3  # live_wrong / #live = ISO BPCER
    assert m["legacy_hter"] == 0.25  # = ISO ACER
    assert m["legacy_apcer_star"] == 3 / 7  # live_wrong / (spoof_right + live_wrong)
    assert m["legacy_npcer_star"] == 1 / 8  # spoof_wrong / (spoof_wrong + live_right)
    assert m["legacy_acer_star"] == pytest.approx(31 / 112, abs=1e-15)
    iso = pad_metrics(np.r_[0.0, 1.0], [False, True], pred.astype(float), true, criterion=0.5)
    assert (iso["apcer"], iso["bpcer"], iso["acer"]) == (0.2, 0.3, 0.25)


@pytest.mark.parametrize("criterion", ["eer", "min-hter", "bpcer20"])
def test_a_validation_split_without_attacks_or_bona_fide_is_an_error(criterion):
    s = np.array([0.2, 0.4, 0.9])
    with pytest.raises(ValueError, match="needs both bona fide and attack"):
        pad_metrics(s, [True, True, True], s, [True, False, False], criterion=criterion)
    with pytest.raises(ValueError, match="needs both bona fide and attack"):
        pad_metrics(s, [False, False, False], s, [True, False, False], criterion=criterion)
    # a fixed threshold does not look at validation
    assert pad_metrics(s, [True, True, True], s, [True, False, False], criterion=0.5)["apcer"] == 0.5


def test_malformed_input_is_an_error():
    s = np.array([0.2, 0.4, 0.9])
    with pytest.raises(ValueError, match="unknown PAD threshold criterion"):
        pad_metrics(s, [1, 0, 1], s, [1, 0, 1], criterion="bpcer")
    with pytest.raises(ValueError, match="differ in length"):
        pad_metrics(s, [1, 0], s, [1, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        pad_metrics(np.array([0.2, np.nan, 0.3]), [1, 0, 1], s, [1, 0, 1])
    with pytest.raises(ValueError, match="0/1"):
        pad_metrics(s, [1, 0, 2], s, [1, 0, 1])


def test_an_evaluation_split_without_attacks_gives_nan_attack_rates():
    s = np.array([0.2, 0.4, 0.9])
    m = pad_metrics(s, [True, False, True], s, [True, True, True])
    assert np.isnan(m["apcer"]) and np.isnan(m["auc"]) and np.isnan(m["eer"])
    # validation: bona fide 0.2, 0.9, attack 0.4; |APCER - BPCER| is 1/2 at 0.4 (1, 1/2) and 0.9 (0, 1/2),
    # the smaller sum picks 0.9; test: 0.2 and 0.4 are rejected
    assert m["threshold"] == 0.9 and m["bpcer"] == 2 / 3


def test_video_scores_average_per_video_in_order_of_first_appearance():
    s = np.array([0.1, 0.9, 0.3, 0.7, 0.5, 0.2])
    bf = np.array([0, 1, 0, 1, 0, 0], dtype=bool)
    video = np.array(["v2", "v1", "v2", "v1", "v3", "v3"])
    sp = np.array(["print", "", "print", "", "replay", "replay"])
    sv, bv, spv, ids = video_scores(s, bf, video, sp)
    assert list(ids) == ["v2", "v1", "v3"]
    assert sv == pytest.approx([0.2, 0.8, 0.35])
    assert list(bv) == [False, True, False]
    assert list(spv) == ["print", "", "replay"]
    assert video_scores(s, bf, video)[2] is None
    with pytest.raises(ValueError, match="'v1' mixes bona fide and attack"):
        video_scores(s, [0, 1, 0, 0, 0, 0], video)
    with pytest.raises(ValueError, match="'v3' mixes attack species"):
        video_scores(s, bf, video, ["print", "", "print", "", "replay", "print"])


# ----------------------------------------------------------------------------- classification metrics (numpy)
@pytest.mark.parametrize("k", [2, 6, 40])
def test_accuracy_and_macro_f1_equal_sklearn_on_the_classes_present(k):
    from mmhal.metrics import accuracy, macro_f1

    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 3000)
    p = np.where(rng.random(3000) < 0.7, y, rng.integers(0, k, 3000))
    y[y == 1] = 0  # class 1 is never true, but predicted: its F1 is 0 and counts
    p[p == k - 1] = 0
    y[y == k - 1] = 0  # class k-1 is neither true nor predicted: skipped, as sklearn with labels=present
    present = np.union1d(y, p)
    assert accuracy(y, p) == pytest.approx(sklearn_metrics.accuracy_score(y, p), abs=1e-15)
    assert macro_f1(y, p, k) == pytest.approx(sklearn_metrics.f1_score(y, p, average="macro", labels=present),
                                              abs=1e-12)


def test_macro_f1_on_a_hand_made_confusion():
    from mmhal.metrics import macro_f1

    # class 0: TP 2, FP 1, FN 0 -> 4/5; class 1: TP 1, FP 0, FN 1 -> 2/3; class 2: none at all (skipped)
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 1, 0])
    assert macro_f1(y, p, num_classes=3) == pytest.approx((4 / 5 + 2 / 3) / 2)
    assert np.isnan(macro_f1(np.array([], dtype=int), np.array([], dtype=int), num_classes=3))

"""Paired statistics (mmhal.stats) against scipy.stats, and the report built on them (engine.results)."""
import numpy as np
import pytest
from scipy import stats as st

from mmhal import stats
from mmhal.engine.results import build_results, recommend, recommendation_line, teacher_warning


def test_t_critical_values_are_those_of_n_minus_1_degrees_of_freedom():
    assert stats.t_critical(3) == pytest.approx(4.303, abs=1e-3)
    assert stats.t_critical(5) == pytest.approx(2.776, abs=1e-3)
    assert stats.t_critical(10) == pytest.approx(2.262, abs=1e-3)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_paired_interval_and_p_value_equal_scipys_one_sample_t_test_of_the_differences(n):
    rng = np.random.default_rng(n)
    base = rng.uniform(0.7, 0.8, n)
    method = base + rng.normal(0.01, 0.02, n)
    out = stats.paired(method, base)
    ref = st.ttest_1samp(method - base, 0.0)
    lo, hi = ref.confidence_interval(0.95)
    assert out["ci95"] == pytest.approx([lo, hi], abs=1e-12)
    assert out["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert out["se"] == pytest.approx(st.sem(method - base), rel=1e-12)
    assert out["significant"] == (ref.pvalue < 0.05)


def test_three_seeds_within_two_standard_errors_but_inside_the_t_interval_are_not_significant():
    # mean 2, se 0.577: t = 3.46 > 2 but < 4.30, so "> 2 SE" would have called it significant
    diffs = np.array([1.0, 2.0, 3.0])
    out = stats.paired(diffs, np.zeros(3))
    assert out["mean_diff"] / out["se"] == pytest.approx(2 * np.sqrt(3))
    assert not out["significant"] and out["ci95"][0] < 0 < out["ci95"][1]


def test_ties_are_counted_as_ties_not_losses():
    out = stats.paired([0.8, 0.7, 0.9, 0.75], [0.8, 0.75, 0.85, 0.75])
    assert (out["wins"], out["ties"], out["losses"]) == (1, 2, 1)


def test_a_single_seed_has_no_interval():
    out = stats.paired([0.8], [0.7])
    assert out["ci95"] is None and out["p_value"] is None and out["mean_diff"] == pytest.approx(0.1)


def test_gap_interval_endpoints_are_where_the_paired_t_test_of_a_minus_rho_b_reaches_p_005():
    rng = np.random.default_rng(0)
    uni = rng.uniform(0.75, 0.80, 6)
    teacher = np.full(6, 0.92)
    method = uni + rng.normal(0.04, 0.01, 6)
    gap = stats.gap_recovered(method, uni, teacher)
    a, b = method - uni, teacher - uni
    assert gap["mean"] == pytest.approx(a.mean() / b.mean())
    lo, hi = gap["ci95"]
    assert lo < gap["mean"] < hi
    for rho in (lo, hi):
        assert st.ttest_1samp(a - rho * b, 0.0).pvalue == pytest.approx(0.05, abs=1e-9)
    inside = st.ttest_1samp(a - gap["mean"] * b, 0.0).pvalue
    assert inside > 0.05


def test_gap_is_undefined_when_the_teachers_margin_is_not_clear_of_the_seed_noise():
    uni = np.array([0.80, 0.70, 0.90])
    teacher = np.full(3, 0.82)  # margin +0.02 on average, +-0.1 across seeds: its interval covers 0
    assert stats.paired(teacher, uni)["ci95"][0] < 0
    assert stats.gap_recovered(uni + 0.01, uni, teacher) is None
    # and when the teacher is worse than unimodal, a "share of the gap" would flip sign: undefined too
    assert stats.gap_recovered(uni + 0.01, uni, np.full(3, 0.5)) is None


def _one_hot(pred, k=3):
    z = np.zeros((len(pred), k), dtype=np.float32)
    z[np.arange(len(pred)), pred] = 1.0
    return z


def _report(val_acc, test_acc, seeds=(0, 1, 2)):
    """Results where each method's validation/test accuracy per seed is as given (fractions of 10 samples)."""
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])

    def logits(acc):  # the first round(acc * 10) samples right, the rest wrong
        right = int(round(acc * 10))
        pred = np.where(np.arange(10) < right, y, (y + 1) % 3)
        return _one_hot(pred)

    jobs = {}
    for name in val_acc:
        for i, s in enumerate(seeds):
            jobs[(name, s)] = {"logits": logits(test_acc[name][i]), "val_logits": logits(val_acc[name][i]),
                               "logits_last": None}
    return build_results(list(val_acc), ["weak"], ["strong", "weak"], y, y, logits(1.0), logits(1.0), jobs,
                         list(seeds), 3)


def test_the_recommendation_chooses_by_validation_only_never_by_test():
    val = {"unimodal": [0.6, 0.6, 0.6], "kd": [0.9, 0.8, 0.9], "mmh": [0.7, 0.7, 0.7]}
    test = {"unimodal": [0.6, 0.6, 0.6], "kd": [0.5, 0.5, 0.5], "mmh": [1.0, 1.0, 1.0]}  # test favours mmh
    rec = recommend(_report(val, test))
    assert rec["method"] == "kd"
    assert rec["vs_unimodal_val"]["mean_diff"] == pytest.approx((0.3 + 0.2 + 0.3) / 3)
    assert "deploy 'kd'" in recommendation_line(rec)


def test_the_significant_rule_deploys_only_a_clear_validation_gain_and_best_takes_the_highest_mean():
    # unimodal 0.6 on every seed; mmh +0.3, +0.0, +0.3 (mean 0.2; sd 0.173, half-width 4.30 * 0.173 / sqrt(3) =
    # 0.43: not significant); kd +0.1 on every seed (no spread: significant); rad +0.2, +0.2, +0.1 (mean 0.167, sd
    # 0.0577, half-width 0.143: significant, above kd, below mmh)
    val = {"unimodal": [0.6, 0.6, 0.6], "mmh": [0.9, 0.6, 0.9], "kd": [0.7, 0.7, 0.7], "rad": [0.8, 0.8, 0.7]}
    test = {n: [0.5, 0.5, 0.5] for n in val}
    res = _report(val, test)
    assert recommend(res, "best")["method"] == "mmh" and "passed_over" not in recommend(res, "best")
    rec = recommend(res)  # significant is the default
    assert rec["method"] == "rad" and rec["rule"] == "significant"
    assert rec["vs_unimodal_val"]["mean_diff"] == pytest.approx(0.5 / 3) and rec["vs_unimodal_val"]["significant"]
    assert rec["passed_over"]["method"] == "mmh" and rec["passed_over"]["vs_unimodal_val"]["mean_diff"] == pytest.approx(0.2)
    line = recommendation_line(rec)
    assert "deploy 'rad' (val acc 76.67 %, +16.67 points over unimodal, 95 % CI [" in line and "significant; the best" in line
    assert "'mmh', is not significantly better than unimodal (+20.00 points" in line
    del val["rad"], test["rad"]
    assert recommend(_report(val, test))["method"] == "kd"
    del val["kd"], test["kd"]
    rec = recommend(_report(val, test))
    assert rec["method"] == "unimodal" and rec["vs_unimodal_val"] is None
    line = recommendation_line(rec)
    assert "deploy 'unimodal'" in line and "'mmh', is not significantly better than unimodal (+20.00 points, 95 % CI [" in line
    # without a unimodal student there is nothing to be significant against: the highest mean
    del val["unimodal"], test["unimodal"]
    assert recommend(_report({"mmh": [0.9, 0.6, 0.9], "kd": [0.7, 0.7, 0.7]}, {"mmh": [0.5] * 3, "kd": [0.5] * 3}))["method"] == "mmh"


def test_an_unknown_recommendation_rule_is_one_sentence():
    from mmhal.config import load_config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match="recommend must be significant or best"):
        load_config(None, ["recommend=mean"])


def test_the_recommendation_is_unimodal_when_no_distilled_student_is_better_on_validation():
    val = {"unimodal": [0.8, 0.8, 0.8], "kd": [0.8, 0.8, 0.8], "mmh": [0.7, 0.8, 0.7]}
    test = {"unimodal": [0.5, 0.5, 0.5], "kd": [0.9, 0.9, 0.9], "mmh": [0.9, 0.9, 0.9]}
    rec = recommend(_report(val, test))
    assert rec["method"] == "unimodal"  # a tie with kd goes to the network that needs no teacher


def test_a_teacher_no_better_than_unimodal_on_validation_is_warned_about():
    results = _report({"unimodal": [1.0, 1.0, 1.0]}, {"unimodal": [0.9, 0.9, 0.9]})  # teacher val acc is 1.0 too
    assert "not better than the unimodal student on validation" in teacher_warning(results)
    results = _report({"unimodal": [0.6, 0.6, 0.7]}, {"unimodal": [0.9, 0.9, 0.9]})
    assert teacher_warning(results) is None


# Independent of scipy: with 3 seeds (2 degrees of freedom) Student's t has closed forms,
# two-sided p = 1 - t / sqrt(2 + t^2) and t_{0.975, 2} = sqrt(2 / (0.05 * 1.95) - 2).
def test_paired_matches_the_closed_form_for_two_degrees_of_freedom():
    out = stats.paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    t = 2.0 / (1.0 / np.sqrt(3.0))
    assert out["se"] == pytest.approx(1.0 / np.sqrt(3.0), rel=1e-12)
    assert out["p_value"] == pytest.approx(1.0 - t / np.sqrt(2.0 + t * t), rel=1e-9)  # 0.07418
    half = np.sqrt(2.0 / (0.05 * 1.95) - 2.0) / np.sqrt(3.0)  # 4.3027 / sqrt(3)
    assert out["ci95"] == pytest.approx([2.0 - half, 2.0 + half], rel=1e-9)
    assert stats.mean_ci([1.0, 2.0, 3.0]) == pytest.approx([2.0 - half, 2.0 + half], rel=1e-9)


def test_the_same_difference_on_every_seed_has_no_spread_and_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy alone warns of precision loss and returns NaN here
        same = stats.paired([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])  # differences 0.1 up to rounding
        none = stats.paired([0.8, 0.7, 0.6], [0.8, 0.7, 0.6])
        flat = stats.mean_ci([0.5, 0.5, 0.5])
    assert same["se"] == 0.0 and same["p_value"] == 0.0 and same["significant"]
    assert same["ci95"] == pytest.approx([0.1, 0.1])
    assert none["p_value"] == 1.0 and not none["significant"] and none["ties"] == 3
    assert flat == [0.5, 0.5]

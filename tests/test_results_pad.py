"""PAD figures in the run's report (engine.results with ``pad=...``)."""
import json

import numpy as np
import pytest

from mmhal import stats
from mmhal.engine.results import (bona_fide_scores, build_results, format_table, pad_counts, results_csv)
from mmhal.metrics import pad_legacy, pad_metrics, video_scores

SEEDS = [0, 1, 2]
METHODS = ["unimodal", "kd", "mmh-ensemble"]  # mmh-ensemble sums the logits of rad and dad
JOBS = ["unimodal", "kd", "rad", "dad"]


def _softmax1(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e[:, 1] / e.sum(1)


def _logits(rng, y, strength):
    z = rng.normal(0, 1, (len(y), 2))
    z[:, 1] += strength * (2 * y - 1)
    return z


def _setup(seed=0, n_val=90, n_eval=120, frames=3):
    """Labels (0 = attack, 1 = bona fide) of videos of ``frames`` frames each, two attack species."""
    rng = np.random.default_rng(seed)
    yv_vid, ye_vid = rng.integers(0, 2, n_val // frames), rng.integers(0, 2, n_eval // frames)
    y_val, y_eval = np.repeat(yv_vid, frames), np.repeat(ye_vid, frames)
    sp_vid = np.where(ye_vid == 1, "", np.array(["print", "replay"])[rng.integers(0, 2, len(ye_vid))])
    pad = {
        "val_bona_fide": y_val == 1, "eval_bona_fide": y_eval == 1,
        "eval_species": np.repeat(sp_vid, frames),
        "val_video": np.repeat([f"v{i}" for i in range(len(yv_vid))], frames),
        "eval_video": np.repeat([f"e{i}" for i in range(len(ye_vid))], frames),
        "scoring": "sample", "criterion": "eer", "legacy": False,
    }
    jobs = {}
    for i, name in enumerate(JOBS):
        for s in SEEDS:
            jobs[(name, s)] = {"logits": _logits(rng, y_eval, 0.8 + 0.3 * i), "val_logits": _logits(rng, y_val, 1.0),
                               "logits_last": None}
    teacher = (_logits(rng, y_eval, 3.0), _logits(rng, y_val, 3.0))
    return y_eval, y_val, teacher, jobs, pad


def _build(y_eval, y_val, teacher, jobs, pad):
    return build_results(METHODS, ["rgb"], ["rgb", "depth"], y_eval, y_val, teacher[0], teacher[1], jobs, SEEDS, 2,
                         pad=pad)


def _summed(jobs, name, seed, key):
    parts = {"mmh-ensemble": ("rad", "dad")}.get(name, (name,))
    return sum(jobs[(p, seed)][key] for p in parts)


def test_per_sample_pad_figures_equal_pad_metrics_on_the_softmax_scores():
    y_eval, y_val, teacher, jobs, pad = _setup()
    res = _build(y_eval, y_val, teacher, jobs, pad)
    for name in METHODS:
        p = res[name]["pad"]
        assert p["criterion"] == "eer" and p["scoring"] == "sample" and p["calibrated"] is True
        for i, s in enumerate(SEEDS):
            ev, va = _summed(jobs, name, s, "logits"), _summed(jobs, name, s, "val_logits")
            ref = pad_metrics(_softmax1(va), y_val == 1, _softmax1(ev), y_eval == 1, pad["eval_species"])
            for k in ("apcer", "apcer_pooled", "bpcer", "acer", "hter", "eer", "auc", "threshold"):
                assert p[k]["per_seed"][i] == ref[k], (name, k)
            for x in ("0.01", "0.05", "0.1"):
                assert p["bpcer_at_apcer"][x]["per_seed"][i] == ref["bpcer_at_apcer"][x]
            for sp in ("print", "replay"):
                assert p["apcer_per_species"][sp]["per_seed"][i] == ref["apcer_per_species"][sp]
        acer = p["acer"]["per_seed"]
        assert p["acer"]["mean"] == pytest.approx(np.mean(acer))
        assert p["acer"]["std"] == pytest.approx(np.std(acer, ddof=1))
        assert p["n_bona_fide"] == int((y_eval == 1).sum()) and p["n_attack"] == int((y_eval == 0).sum())
        assert "pad_legacy" not in res[name]
    # the teacher: one model, the same figures on every seed
    t = res["teacher"]["pad"]
    ref = pad_metrics(_softmax1(teacher[1]), y_val == 1, _softmax1(teacher[0]), y_eval == 1, pad["eval_species"])
    assert t["acer"]["per_seed"] == [ref["acer"]] * 3
    # ACER against unimodal: paired, signed method - unimodal (lower is better)
    for name in ("teacher", "kd", "mmh-ensemble"):
        vs = res[name]["acer_vs_unimodal"]
        assert vs == stats.paired(res[name]["pad"]["acer"]["per_seed"], res["unimodal"]["pad"]["acer"]["per_seed"])
    assert res["teacher"]["acer_vs_unimodal"]["mean_diff"] < 0  # the strong teacher has the lower ACER
    assert "acer_vs_unimodal" not in res["unimodal"]
    json.dumps(res, allow_nan=False)  # results.json stays strict JSON


def test_per_video_scoring_averages_the_scores_of_each_video_on_val_and_eval():
    y_eval, y_val, teacher, jobs, pad = _setup(seed=1)
    pad = dict(pad, scoring="video", criterion="min-hter")
    res = _build(y_eval, y_val, teacher, jobs, pad)
    p = res["kd"]["pad"]
    assert p["scoring"] == "video"
    for i, s in enumerate(SEEDS):
        ev, bv, spv, _ = video_scores(_softmax1(jobs[("kd", s)]["logits"]), y_eval == 1, pad["eval_video"],
                                      pad["eval_species"])
        vv, vbv, _, _ = video_scores(_softmax1(jobs[("kd", s)]["val_logits"]), y_val == 1, pad["val_video"])
        ref = pad_metrics(vv, vbv, ev, bv, spv, criterion="min-hter")
        assert p["acer"]["per_seed"][i] == ref["acer"]
        assert p["hter"]["per_seed"][i] == ref["hter"]
        assert p["auc"]["per_seed"][i] == ref["auc"]
    assert p["n_bona_fide"] + p["n_attack"] == len(y_eval) // 3  # counted in videos
    counts = pad_counts(pad)
    assert counts["eval"]["n_bona_fide"] == p["n_bona_fide"]
    assert counts["val"]["n_bona_fide"] + counts["val"]["n_attack"] == len(y_val) // 3
    assert counts["eval"]["n_attack_per_species"] == p["n_attack_per_species"]
    assert counts["val"]["n_attack_per_species"] == {"all": counts["val"]["n_attack"]}
    assert counts["scoring"] == "video" and counts["criterion"] == "min-hter"
    with pytest.raises(ValueError, match="video of every val sample"):
        _build(y_eval, y_val, teacher, jobs, dict(pad, val_video=None))


def test_legacy_figures_come_from_the_argmax_decisions():
    y_eval, y_val, teacher, jobs, pad = _setup(seed=2)
    res = _build(y_eval, y_val, teacher, jobs, dict(pad, legacy=True, criterion="0.5"))
    leg = res["unimodal"]["pad_legacy"]
    assert leg["unit"] == "sample" and leg["decision"] == "argmax"
    for i, s in enumerate(SEEDS):
        ref = pad_legacy(jobs[("unimodal", s)]["logits"].argmax(1) == 1, y_eval == 1)
        for k, v in ref.items():
            assert leg[k]["per_seed"][i] == v
        assert leg["legacy_acc"]["per_seed"][i] == res["unimodal"]["accuracy"]["per_seed"][i]
    # argmax is the fixed threshold 0.5 on P(bona fide) (up to exact ties): legacy HTER = pooled ISO HTER
    p = res["unimodal"]["pad"]
    assert p["calibrated"] is False
    assert leg["legacy_hter"]["per_seed"] == pytest.approx(p["hter"]["per_seed"], abs=1e-12)
    assert leg["legacy_far"]["per_seed"] == pytest.approx(p["apcer_pooled"]["per_seed"], abs=1e-12)


def test_table_and_csv_show_acer_hter_and_the_counts():
    y_eval, y_val, teacher, jobs, pad = _setup()
    res = _build(y_eval, y_val, teacher, jobs, pad)
    report = {"seeds": SEEDS, "results": res, "evaluated_on": "test", "pad_counts": pad_counts(pad)}
    table = format_table(report)
    assert "ACER %" in table and "HTER %" in table and "ACER vs unimodal" in table
    kd = res["kd"]["pad"]
    assert f"{100 * kd['acer']['mean']:.2f} ± {100 * kd['acer']['std']:.2f}" in table
    vs = res["kd"]["acer_vs_unimodal"]
    assert f"[{100 * vs['ci95'][0]:+.2f}, {100 * vs['ci95'][1]:+.2f}]" in table
    c = report["pad_counts"]["eval"]
    assert (f"{c['n_bona_fide']} bona fide and {c['n_attack']} attack samples (print: "
            f"{c['n_attack_per_species']['print']}, replay: {c['n_attack_per_species']['replay']})") in table
    assert "criterion 'eer'" in table and "per sample" in table
    rows = results_csv(report).splitlines()
    header = rows[0].split(",")
    for col in ("acer_mean", "hter_mean", "apcer_mean", "bpcer_mean", "eer_mean", "auc_mean"):
        assert col in header
    kd_row = dict(zip(header, next(r for r in rows if r.startswith("kd,")).split(",")))
    assert float(kd_row["acer_mean"]) == pytest.approx(kd["acer"]["mean"], abs=1e-6)


def test_without_pad_options_nothing_changes():
    y_eval, y_val, teacher, jobs, pad = _setup()
    plain = build_results(METHODS, ["rgb"], ["rgb", "depth"], y_eval, y_val, teacher[0], teacher[1], jobs, SEEDS, 2)
    with_pad = _build(y_eval, y_val, teacher, jobs, pad)
    for name, entry in plain.items():
        assert not {"pad", "pad_legacy", "acer_vs_unimodal"} & set(entry)
        stripped = {k: v for k, v in with_pad[name].items() if k not in ("pad", "pad_legacy", "acer_vs_unimodal")}
        assert json.dumps(stripped, sort_keys=True) == json.dumps(entry, sort_keys=True)
    report = {"seeds": SEEDS, "results": plain}
    assert "ACER" not in format_table(report) and "PAD" not in format_table(report)
    assert "acer_mean" not in results_csv(report)


def test_scores_are_a_stable_softmax_and_a_validation_split_without_attacks_is_an_error():
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [0.0, 0.0]])
    assert bona_fide_scores(z).tolist() == [0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="2-way logits"):
        bona_fide_scores(np.zeros((3, 3)))
    y_eval, y_val, teacher, jobs, pad = _setup()
    with pytest.raises(ValueError, match="needs both bona fide and attack"):
        _build(y_eval, y_val, teacher, jobs, dict(pad, val_bona_fide=np.ones(len(y_val), dtype=bool)))

"""Standard learners beside every comparison (engine.learners): their inputs, generalized distillation's identities,
the choice on validation alone, and what a run reports of them (table, results.json, recommendation)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmhal.cli import main
from mmhal.engine import learners as L
from mmhal.engine.results import learner_advice, recommendation_line

sklearn = pytest.importorskip("sklearn")
pytestmark = pytest.mark.learners


def test_summary_statistics_of_a_known_sequence():
    x = np.array([[[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]]])  # (N=1, C=2, L=4)
    f = L.summary_statistics(x)
    assert f.shape == (1, 11 * 2 + 2)
    c = 2
    mean, sd, lo, hi = f[0, 0:c], f[0, c:2 * c], f[0, 2 * c:3 * c], f[0, 3 * c:4 * c]
    assert mean.tolist() == [1.5, 0.0] and lo.tolist() == [0.0, 0.0] and hi.tolist() == [3.0, 0.0]
    assert sd[0] == pytest.approx(np.sqrt(1.25))
    median = f[0, 6 * c:7 * c]
    assert median[0] == pytest.approx(1.5)
    steps, crossings = f[0, 9 * c:10 * c], f[0, 10 * c:11 * c]
    assert steps.tolist() == [1.0, 0.0]
    assert crossings[0] == pytest.approx(1 / 3)  # -1.5 -0.5 | 0.5 1.5: one crossing of the mean in 3 steps
    norm = np.abs(x[0, 0])  # the second channel is 0: the norm per step is |x0|
    assert f[0, -2] == pytest.approx(norm.mean()) and f[0, -1] == pytest.approx(norm.std())


def test_views_raw_for_vectors_and_short_sequences_statistics_for_sequences():
    vec = np.zeros((4, 7), np.float32)
    short = np.zeros((4, 3, 8), np.float32)
    long = np.zeros((4, 3, 128), np.float32)
    assert set(L.feature_views({"v": vec}, ["v"])) == {"raw"}
    assert set(L.feature_views({"s": short}, ["s"])) == {"raw", "statistics"}
    views = L.feature_views({"s": long, "v": vec}, ["s", "v"])
    assert set(views) == {"statistics"} and views["statistics"].shape == (4, 11 * 3 + 2 + 7)
    assert set(L.feature_views({"s": long}, ["s"], max_raw=4096)) == {"raw", "statistics"}


def test_expanded_rows_weighted_log_loss_is_the_soft_cross_entropy():
    """Fitting the weighted copies (one per class, weighted by the target) minimises exactly the cross-entropy
    with the soft targets: the two losses are equal for any predicted probabilities."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    n, k = 12, 4
    X = rng.normal(size=(n, 3))
    labels = rng.integers(0, k, n)
    teacher = rng.dirichlet(np.ones(k), n)
    targets = L.distillation_targets(labels, teacher, temperature=2.0, lam=0.5)
    assert np.allclose(targets.sum(1), 1.0)
    assert np.allclose(L.distillation_targets(labels, teacher, lam=0.0), np.eye(k)[labels])
    Xs, ys, ws = L.expand_soft(X, targets)
    rows = np.array([np.flatnonzero((X == x).all(1))[0] for x in Xs])
    p = rng.dirichlet(np.ones(k), n)  # any model's probabilities
    weighted = log_loss(ys, p[rows], sample_weight=ws, normalize=False, labels=np.arange(k))
    assert weighted == pytest.approx(-(targets * np.log(p)).sum(), rel=1e-9)


def test_cross_fitted_probabilities_never_come_from_a_model_that_saw_the_sample():
    """A 1-nearest-neighbour learner remembers every train sample: on its own samples it is always right, on random
    labels held out it is at chance. Out-of-fold probabilities must look like the second."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 5)), rng.integers(0, 3, 300)
    knn = L.Learner("knn", lambda params, seed: KNeighborsClassifier(1), ({},))
    oof = L.cross_fitted_proba(knn, {}, X, y, 3)
    assert (KNeighborsClassifier(1).fit(X, y).predict(X) == y).all()
    assert (oof.argmax(1) == y).mean() < 0.5


class _Data:
    """A stand-in for in-memory MultimodalData (what ``reference`` reads)."""

    def __init__(self, modalities, labels, split):
        self.modalities, self.labels, self.split = modalities, labels, split
        self.shapes = {m: a.shape[1:] for m, a in modalities.items()}
        self.in_memory = True
        self.num_classes = int(labels.max()) + 1

    def indices(self, s):
        return np.flatnonzero(self.split == s)


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    weak = rng.normal(size=(n, 2, 16)).astype(np.float32)
    weak[:, 0] += 0.4 * y[:, None]
    strong = rng.normal(size=(n, 5)).astype(np.float32)
    strong[np.arange(n), y] += 3.0
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    return _Data({"weak": weak, "strong": strong}, y, split)


def test_reference_chooses_on_validation_and_reports_on_the_evaluation_split(monkeypatch):
    monkeypatch.setattr(L, "has_lightgbm", lambda: False)
    data = _data()
    rep = L.reference(data, ["weak"], ["weak", "strong"], "test", [0, 1, 2], ["hgb", "logreg", "lgbm", "gd"])
    assert rep["skipped"] is None and rep["left_out"] == {"lgbm": "lightgbm is not installed (pip install lightgbm)"}
    got = {(r["learner"], r["inputs"]) for r in rep["rows"]}
    assert got == {("hgb", "student"), ("logreg", "student"), ("hgb", "teacher"), ("logreg", "teacher"),
                   ("gd", "student")}
    y = {s: data.labels[data.indices(s if s != "eval" else "test")] for s in ("train", "val", "eval")}
    for r in rep["rows"]:
        assert len(r["accuracy"]["per_seed"]) == 3 and len(set(r["accuracy"]["per_seed"])) == 1  # fitted once
        if r["learner"] == "logreg":  # its choice is the grid point and view with the best validation accuracy
            mods = r["modalities"]
            views = L.split_views(data, mods)
            best = max((float((L._fit(L.learners()[1], p, 0, X["train"], y["train"]).predict(X["val"]) == y["val"]).mean()), v)
                       for v, X in views.items() for p in L.GRIDS["logreg"])
            assert r["val_accuracy"]["mean"] == pytest.approx(best[0])
    teacher = max(r["accuracy"]["mean"] for r in rep["rows"] if r["inputs"] == "teacher")
    student = max(r["accuracy"]["mean"] for r in rep["rows"] if r["inputs"] == "student")
    assert teacher > student + 0.2  # the strong modality is privileged


def test_reference_says_why_it_fitted_nothing():
    data = _data()
    assert L.reference(data, ["weak"], ["weak", "strong"], "test", [0], [])["skipped"].startswith("learners=[]")
    img = _Data({"img": np.zeros((30, 1, 32, 32), np.float32), "s": np.zeros((30, 2), np.float32)},
                np.arange(30) % 2, np.array(["train", "val", "test"])[np.arange(30) % 3])
    why = L.reference(img, ["img"], ["img", "s"], "test", [0], ["hgb"])["skipped"]
    assert why == "they do not suit this data: 'img' is an image of 1024 values per sample (over 256)"
    same = L.reference(data, ["weak"], ["weak"], "test", [0], ["logreg", "gd"])
    assert {r["inputs"] for r in same["rows"]} == {"student"}
    assert same["left_out"]["gd"].startswith("the student sees every modality")


def _entry(val, test):
    return {"val_accuracy": {"mean": float(np.mean(val)), "per_seed": val},
            "accuracy": {"mean": float(np.mean(test)), "per_seed": test}}


def test_a_learner_better_on_validation_is_named_after_the_recommendation():
    results = {"unimodal": _entry([0.70, 0.72, 0.71], [0.7, 0.7, 0.7]), "kd": _entry([0.74, 0.75, 0.73], [0.7] * 3)}
    rec = {"method": "kd", "val_accuracy": 0.74, "vs_unimodal_val": None}
    row = {"learner": "hgb", "inputs": "student", "view": "statistics", "modalities": ["gyro"],
           **_entry([0.80] * 3, [0.8] * 3)}
    teacher_row = {**row, "inputs": "teacher", **_entry([0.99] * 3, [0.99] * 3)}
    advice = learner_advice({"rows": [row, teacher_row]}, rec, results)
    assert advice["learner"] == "hgb" and advice["val_accuracy"] == pytest.approx(0.80)
    assert advice["vs_recommended_val"]["mean_diff"] == pytest.approx(0.06)
    line = recommendation_line({**rec, "standard_learner": advice})
    assert line.startswith("recommendation (validation only): deploy 'kd'")
    assert "but a standard learner on the same inputs does better on validation: hgb" in line
    assert "on statistics of gyro, val acc 80.00 %, +6.00 points over 'kd'" in line
    worse = {**row, **_entry([0.70] * 3, [0.9] * 3)}  # better on test only: never named (validation decides)
    assert learner_advice({"rows": [worse, teacher_row]}, rec, results) is None


def test_a_run_reports_the_learners_apart_from_the_methods(tmp_path, capsys):
    from test_cli_run import _tiny  # the suite's tiny data: a weak sequence, a strong vector, 3 classes

    out = tmp_path / "run"
    rc = main(["run", "--data", str(_tiny(tmp_path / "d.npz")), "--student", "weak", "--methods", "unimodal,kd", "--seeds",
               "2", "--epochs", "2", "--out", str(out), "--no-progress", "model.width=4", "train.batch_size=32",
               "learners=[hgb,logreg,gd]"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    report = json.loads((out / "results.json").read_text())
    rows = report["standard_learners"]["rows"]
    assert [(r["learner"], r["inputs"]) for r in rows] == [
        ("hgb", "student"), ("logreg", "student"), ("hgb", "teacher"), ("logreg", "teacher"), ("gd", "student")]
    assert all("vs_unimodal" in r for r in rows)
    assert "standard learners: what a learner a practitioner fits first reaches" in cap.out
    assert "learners" not in report["results"]  # reference rows, not methods
    table = cap.out[cap.out.index("standard learners:"):]
    assert "gd " in table and "statistics" in table
    from mmhal.engine.report import learners_html

    html = learners_html(report)
    assert "Standard learners on the same split" in html and html.count("<tr>") == 1 + len(rows)
    assert "generalized distillation" in html


def test_learners_setting_is_checked():
    from mmhal.config import load_config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match=r"learners holds 'hgbb', which is not a standard learner \(did you mean hgb\?\)"):
        load_config(None, ["learners=[hgbb]"])
    with pytest.raises(UserError, match="names a learner twice"):
        load_config(None, ["learners=[hgb,hgb]"])
    assert load_config(None, ["learners=[]"]).learners == []

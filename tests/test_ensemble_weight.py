"""distill.ensemble_weight=learned: the authors' NW-UCLA ensemble, z = z_RAD + w z_DAD with w fitted per seed on the
training split by cross-entropy (with weight decay 5e-4) while the members stay frozen (engine.results); ``mean``,
their NTU, UCF101 and HMDB51 ensembles' (z_RAD + z_DAD) / 2."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mmhal.engine.results import ENSEMBLE_WEIGHT_DECAY, build_results, fit_ensemble_weight


def _bisect(f, lo, hi):
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(lo) * f(mid) <= 0:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def test_the_weight_minimises_cross_entropy_plus_weight_decay_worked_by_hand():
    """One sample, two classes, z1 = (0, 0), z2 = (1, 0), label 1: CE(w) = log(1 + e^w), so the optimum solves
    sigmoid(w) + lambda w = 0. Two samples at lambda 0.1: z1 = (0, 0), z2 = (2, 0) label 0 and (0, 1) label 1:
    CE = log(1 + e^(-2w)) + log(1 + e^(-w)) over 2, derivative -(sigmoid(-2w) 2 + sigmoid(-w)) / 2 + 0.1 w = 0."""
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    want = _bisect(lambda w: sig(w) + ENSEMBLE_WEIGHT_DECAY * w, -50.0, 0.0)
    got = fit_ensemble_weight([[0.0, 0.0]], [[1.0, 0.0]], [1])
    assert got == pytest.approx(want, rel=1e-6) and got < -5  # the DAD member only misleads: a large negative w
    want = _bisect(lambda w: -(2 * sig(-2 * w) + sig(-w)) / 2 + 0.1 * w, 0.0, 100.0)
    got = fit_ensemble_weight([[0.0, 0.0], [0.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]], [0, 1], weight_decay=0.1)
    assert got == pytest.approx(want, rel=1e-8) and got > 1


def test_a_learned_ensemble_scores_z1_plus_w_z2_and_records_w_while_sum_stays_the_plain_sum():
    rng = np.random.default_rng(3)
    n, k = 40, 3
    y = rng.integers(0, k, n)
    y_train = rng.integers(0, k, 60)
    jobs = {}
    for s in range(3):
        for name in ("unimodal", "rad", "dad"):
            jobs[(name, s)] = {"logits": rng.normal(size=(n, k)).astype(np.float32), "logits_last": None,
                               "val_logits": rng.normal(size=(n, k)).astype(np.float32),
                               "train_logits": rng.normal(size=(60, k)).astype(np.float32)}
    t = np.eye(k)[y] * 5.0
    names = ["unimodal", "rad", "dad", "mmh-ensemble"]
    plain = build_results(names, ["s"], ["s", "t"], y, y, t, t, jobs, [0, 1, 2], k)
    learned = build_results(names, ["s"], ["s", "t"], y, y, t, t, jobs, [0, 1, 2], k, ensemble_weight="learned",
                            y_train=y_train)
    assert "member_scales" not in plain["mmh-ensemble"]
    ws = [fit_ensemble_weight(jobs[("rad", s)]["train_logits"], jobs[("dad", s)]["train_logits"], y_train)
          for s in range(3)]
    assert learned["mmh-ensemble"]["member_scales"]["per_seed"] == [[1.0, w] for w in ws]
    for res, scale in ((plain, [1.0] * 3), (learned, ws)):
        acc = [float(np.mean((jobs[("rad", s)]["logits"] + scale[s] * jobs[("dad", s)]["logits"]).argmax(1) == y))
               for s in range(3)]
        assert res["mmh-ensemble"]["accuracy"]["per_seed"] == pytest.approx(acc)
    mean = build_results(names, ["s"], ["s", "t"], y, y, t, t, jobs, [0, 1, 2], k, ensemble_weight="mean")
    assert mean["mmh-ensemble"]["member_scales"]["per_seed"] == [[0.5, 0.5]] * 3
    assert mean["mmh-ensemble"]["accuracy"] == plain["mmh-ensemble"]["accuracy"]  # the same argmax as the sum
    assert learned["rad"] == plain["rad"]  # single networks are untouched
    with pytest.raises(ValueError, match="training-split logits"):
        build_results(names, ["s"], ["s", "t"], y, y, t, t, jobs, [0, 1, 2], k, ensemble_weight="learned")


def test_an_unknown_ensemble_weight_is_one_sentence():
    from mmhal.config import load_config
    from mmhal.errors import UserError

    assert load_config(None, []).distill.ensemble_weight == "sum"
    with pytest.raises(UserError, match="distill.ensemble_weight must be sum, mean or learned"):
        load_config(None, ["distill.ensemble_weight=0.5"])


def test_a_run_with_a_learned_weight_fits_it_on_the_training_logits_and_predict_and_report_apply_it(tmp_path):
    """End to end on tiny data: results.json's weight per seed is fit_ensemble_weight of the members' training-split
    logits; ``predict`` and the report's evidence give rad + w dad on the test split."""
    from test_cli_run import _tiny

    from mmhal.cli import main
    from mmhal.data.base import load_dataset
    from mmhal.engine.artifacts import open_run
    from mmhal.engine.predict import load_networks, open_inputs, predict_logits
    from mmhal.engine.report import Evidence

    data = _tiny(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    rc = main(["run", "--data", str(data), "--student", "weak", "--methods", "unimodal,rad,dad,mmh-ensemble",
               "--seeds", "2", "--epochs", "2", "--out", str(out), "--no-progress", "model.width=4",
               "train.batch_size=32", "workers=1", "train.loader_workers=0", "distill.ensemble_weight=learned"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    run = open_run(out)
    ds = load_dataset(run.config.data)
    y_train = ds.labels[ds.indices("train")]
    jobs = {(m, s): torch.load(out / "jobs" / f"{m}-seed{s}.pt", weights_only=True) for m in ("rad", "dad")
            for s in (0, 1)}
    ws = [c[1] for c in results["results"]["mmh-ensemble"]["member_scales"]["per_seed"]]
    assert ws == [fit_ensemble_weight(jobs[("rad", s)]["train_logits"].numpy(), jobs[("dad", s)]["train_logits"].numpy(),
                                      y_train) for s in (0, 1)]
    assert ws != [1.0, 1.0]
    nets = load_networks(run, "mmh-ensemble")
    z = predict_logits(nets, open_inputs(str(data), None, run, nets))
    test_rows = ds.indices("test")
    evidence = Evidence(run)
    for i, s in enumerate(nets.seeds):
        want = jobs[("rad", s)]["logits"].numpy() + ws[i] * jobs[("dad", s)]["logits"].numpy()
        np.testing.assert_allclose(z[i, test_rows], want, rtol=0, atol=1e-4)
        np.testing.assert_allclose(evidence.logits("mmh-ensemble", s), want, rtol=0, atol=1e-5)

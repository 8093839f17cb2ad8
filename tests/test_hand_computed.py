"""Hand-computed values at non-default settings, so that a weight swapped or dropped, a temperature ignored, a sign
or an argument order flipped, fails a test (issue 20, item 5: planted bugs of these kinds went unnoticed).

Every expected number is worked out here from the formula with Python's math module, never by calling the code
under test a second time."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmhal.config import DistillConfig
from mmhal.distill import METHODS
from mmhal.engine.results import (build_results, format_table, recommend, recommendation_line, teacher_warning)
from mmhal.models.network import NetOutput


def _softmax(z, t=1.0):
    e = [math.exp(v / t) for v in z]
    s = sum(e)
    return [v / s for v in e]


class _Fixed(torch.nn.Module):
    """A 'network' whose logits are given: the loss is then a function of numbers written in the test."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))
        self.head = torch.nn.Linear(1, len(logits[0]))  # what DKD reads for the number of classes

    def forward(self, inputs):
        b = self.logits.shape[0]
        return NetOutput(self.logits, [torch.zeros(b, 1, 1)], torch.zeros(b, 1))


STUDENT = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]]
TEACHER = [[1.0, 3.0, 0.0], [-0.5, 0.2, 2.0]]
TARGET = [0, 2]


def test_kd_is_one_minus_alpha_ce_plus_alpha_t2_kl_at_a_non_default_temperature():
    alpha, t = 0.3, 4.0
    cfg = DistillConfig(kd_alpha=alpha, temperature=t)
    method = METHODS.get("kd")(_Fixed(STUDENT), _Fixed(TEACHER), cfg)
    teacher_out = NetOutput(torch.tensor(TEACHER), [torch.zeros(2, 1, 1)], torch.zeros(2, 1))
    _, losses = method({"x": torch.zeros(2, 1)}, torch.tensor(TARGET), teacher_out)
    ce = sum(-math.log(_softmax(z)[y]) for z, y in zip(STUDENT, TARGET)) / 2
    kl = 0.0
    for zs, zt in zip(STUDENT, TEACHER):
        ps, pt = _softmax(zs, t), _softmax(zt, t)
        kl += t * t * sum(q * (math.log(q) - math.log(p)) for q, p in zip(pt, ps))
    kl /= 2
    assert losses["ce"].item() == pytest.approx((1 - alpha) * ce, rel=1e-6)
    assert losses["kd"].item() == pytest.approx(alpha * kl, rel=1e-6)
    # the temperature matters: at T = 1 the same logits give another value
    assert abs(kl - sum(sum(q * (math.log(q) - math.log(p)) for q, p in zip(_softmax(zt), _softmax(zs)))
                        for zs, zt in zip(STUDENT, TEACHER)) / 2) > 1e-3


# ----------------------------------------------------------------------------- the results' fields
def _logits_for(correct: np.ndarray, y: np.ndarray, k: int = 2) -> np.ndarray:
    """Logits that classify sample i right exactly where ``correct[i]``."""
    z = np.zeros((len(y), k), np.float32)
    pred = np.where(correct, y, (y + 1) % k)
    z[np.arange(len(y)), pred] = 1.0
    return z


def _jobs(y, y_val, right: dict[str, list[int]], right_val: dict[str, list[int]]):
    """Jobs where method m on seed s gets the first right[m][s] of 10 evaluation samples right (and
    right_val[m][s] of 10 validation samples)."""
    jobs = {}
    for m, counts in right.items():
        for s, (c, cv) in enumerate(zip(counts, right_val[m])):
            ev = _logits_for(np.arange(10) < c, y)
            va = _logits_for(np.arange(10) < cv, y_val)
            jobs[(m, s)] = {"logits": ev, "logits_last": None, "val_logits": va}
    return jobs


Y = np.array([0, 1] * 5)


def _results(right, right_val, teacher_right=9, teacher_val_right=9, names=None):
    teacher_eval = _logits_for(np.arange(10) < teacher_right, Y)
    teacher_val = _logits_for(np.arange(10) < teacher_val_right, Y)
    names = names or list(right)
    return build_results(names, ["s"], ["s", "t"], Y, Y, teacher_eval, teacher_val, _jobs(Y, Y, right, right_val),
                         [0, 1, 2], 2)


def test_vs_unimodal_is_method_minus_unimodal_and_gap_recovered_is_over_the_teachers_margin():
    right = {"unimodal": [5, 6, 7], "kd": [7, 7, 8]}  # kd - unimodal per seed: +0.2, +0.1, +0.1
    res = _results(right, right)
    vs = res["kd"]["vs_unimodal"]
    assert vs["mean_diff"] == pytest.approx((0.2 + 0.1 + 0.1) / 3)
    assert (vs["wins"], vs["ties"], vs["losses"]) == (3, 0, 0)
    # the interval: mean ± t(2 d.f.) * sd / sqrt(3), t = 4.3027
    d = [0.2, 0.1, 0.1]
    sd = math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)
    assert vs["ci95"] == pytest.approx([sum(d) / 3 - half, sum(d) / 3 + half], rel=1e-6)
    assert vs["significant"] is (sum(d) / 3 - half > 0)
    # the teacher's margin over unimodal: 0.9 - (0.5, 0.6, 0.7)
    assert res["teacher"]["vs_unimodal"]["mean_diff"] == pytest.approx(0.9 - 0.6)
    # gap recovered = mean(kd - uni) / mean(teacher - uni) = (0.4/3) / 0.3
    assert res["kd"]["gap_recovered"]["mean"] == pytest.approx((0.4 / 3) / 0.3, rel=1e-6)


def test_the_recommendation_never_picks_an_ensemble_and_prefers_unimodal_on_ties():
    right = {"unimodal": [6, 6, 6], "rad": [6, 6, 6], "dad": [6, 6, 6]}
    val = {"unimodal": [6, 6, 6], "rad": [6, 6, 6], "dad": [6, 6, 6]}
    res = _results(right, val, names=["unimodal", "rad", "dad", "mmh-ensemble"])
    assert res["mmh-ensemble"]["networks"] == 2
    # make the ensemble the best on validation by far: it must still not be recommended
    res["mmh-ensemble"]["val_accuracy"]["mean"] = 1.0
    rec = recommend(res)
    assert rec["method"] == "unimodal"  # a tie between single networks: unimodal, which needs no teacher
    val2 = {"unimodal": [6, 6, 6], "rad": [8, 8, 7], "dad": [6, 6, 6]}
    rec2 = recommend(_results(right, val2, names=["unimodal", "rad", "dad"]))
    assert rec2["method"] == "rad" and rec2["vs_unimodal_val"]["mean_diff"] == pytest.approx((0.2 + 0.2 + 0.1) / 3)


def test_the_teacher_warning_is_there_exactly_when_its_validation_margin_is_not_clear():
    right = {"unimodal": [6, 6, 7]}
    # margins 0.3, 0.3, 0.2: mean 0.267, half-width 4.30 * 0.0577 / sqrt(3) = 0.143: clear of 0
    assert teacher_warning(_results(right, right, teacher_val_right=9)) is None
    right = {"unimodal": [6, 7, 8]}
    no_better = teacher_warning(_results(right, right, teacher_val_right=7))  # 0.7 vs mean 0.7: not better
    assert no_better.startswith("the teacher is not better than the unimodal student on validation (70.00 % vs 70.00 %)")
    unclear = teacher_warning(_results({"unimodal": [5, 7, 8]}, {"unimodal": [5, 7, 8]}, teacher_val_right=8))
    assert unclear.startswith("the teacher's margin over the unimodal student on validation (80.00 % vs 66.67 %) is not "
                              "clear of the seed noise")


def test_the_star_and_significant_are_on_the_significant_rows_only():
    # kd: +0.3 +0.2 +0.2 (interval [+0.09, +0.38]); mmh: -0.1 +0.2 -0.1
    right = {"unimodal": [5, 6, 7], "kd": [8, 8, 9], "mmh": [4, 8, 6]}
    res = _results(right, right)
    assert res["kd"]["vs_unimodal"]["significant"] and not res["mmh"]["vs_unimodal"]["significant"]
    table = format_table({"seeds": [0, 1, 2], "results": res, "evaluated_on": "test"})
    rows = {line.split()[0]: line for line in table.splitlines() if line.split() and line.split()[0] in res}
    assert "] *" in rows["kd"] and "] *" not in rows["mmh"] and "*" not in rows["unimodal"]
    line = recommendation_line({"method": "kd", "val_accuracy": 0.833, "vs_unimodal_val": res["kd"]["vs_unimodal"]})
    assert line.endswith(", significant)")
    line = recommendation_line({"method": "mmh", "val_accuracy": 0.6, "vs_unimodal_val": res["mmh"]["vs_unimodal"]})
    assert line.endswith(", not significant)")


# ----------------------------------------------------------------------------- every loss weight scales its term
# (method, the setting, the loss term it weighs): doubling the setting doubles that term and leaves every other
# term as it was. A weight swapped with another (RKD's distance and angle) or dropped fails here, at values far
# from the defaults.
WEIGHTS = [
    ("rkd", "rkd.distance", "rkd_distance"), ("rkd", "rkd.angle", "rkd_angle"),
    ("at", "at.beta", "at"), ("sp", "sp.gamma", "sp"), ("pkt", "pkt.beta", "pkt"), ("fitnet", "fitnet.beta", "fitnet"),
    ("rad", "rad_lambda", "rad"), ("dad", "dad_lambda", "dad"),
    ("mmh", "rad_lambda", "rad"), ("mmh", "dad_lambda", "dad"), ("mars", "mars.alpha", "mars"),
    ("crd", "crd.beta", "crd"), ("hallucination", "hallucination.gamma", "hallucination"),
]


def _set(cfg, key, value):
    obj, _, leaf = key.rpartition(".")
    target = getattr(cfg, obj) if obj else cfg
    setattr(target, leaf, value)


def _get(cfg, key):
    obj, _, leaf = key.rpartition(".")
    return getattr(getattr(cfg, obj) if obj else cfg, leaf)


@pytest.mark.parametrize("method, key, term", WEIGHTS, ids=[f"{m}-{k}" for m, k, _ in WEIGHTS])
def test_each_loss_weight_scales_its_own_term_only(method, key, term):
    import copy

    from mmhal.config import ModelConfig
    from mmhal.distill import build_method
    from mmhal.models.network import build_network

    spec = {"weak": (2, 16), "strong": (5,)}
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(8, *s, generator=g) for m, s in spec.items()}
    y = torch.arange(8) % 4

    def losses(cfg):
        torch.manual_seed(0)
        teacher = build_network(spec, list(spec), 4, ModelConfig(width=4))
        student = build_network(spec, ["weak"], 4, ModelConfig(width=4))
        m = build_method(method, student, teacher, cfg, torch.arange(64) % 4)
        m.train()
        torch.manual_seed(5)
        _, out = m(x, y, index=torch.arange(8)) if m.needs_index else m(x, y)
        return {k: float(v.detach()) for k, v in out.items()}

    base = DistillConfig(rad_weighting="uniform")
    _set(base, key, _get(base, key) * 0.37)  # away from the default
    doubled = copy.deepcopy(base)
    _set(doubled, key, _get(base, key) * 2)
    a, b = losses(base), losses(doubled)
    assert abs(a[term]) > 1e-8, f"{term} is 0 here: the test would prove nothing"
    assert b[term] == pytest.approx(2 * a[term], rel=1e-5)
    for k in a:
        if k != term:
            assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k


def test_dkd_weighs_its_target_and_non_target_terms_as_written_and_warms_up():
    """DKD (Zhao et al. 2022) by hand: TCKD = T^2 KL(b_t || b_s) over the binary [p_y, 1 - p_y]; NCKD = T^2 KL over the
    non-target classes renormalised; L = min(epoch / W, 1) * (alpha * TCKD + beta * NCKD), at alpha 0.7, beta 2.5,
    T 3, W 4."""
    alpha, beta, t = 0.7, 2.5, 3.0
    cfg = DistillConfig(temperature=t)
    cfg.dkd.alpha, cfg.dkd.beta, cfg.dkd.warmup = alpha, beta, 4
    method = METHODS.get("dkd")(_Fixed(STUDENT), _Fixed(TEACHER), cfg)
    teacher_out = NetOutput(torch.tensor(TEACHER), [torch.zeros(2, 1, 1)], torch.zeros(2, 1))

    def kl(p, q):
        return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q))

    tckd = nckd = 0.0
    for zs, zt, y in zip(STUDENT, TEACHER, TARGET):
        ps, pt = _softmax(zs, t), _softmax(zt, t)
        tckd += t * t * kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        qs = [p / (1 - ps[y]) for i, p in enumerate(ps) if i != y]
        qt = [p / (1 - pt[y]) for i, p in enumerate(pt) if i != y]
        nckd += t * t * kl(qt, qs)
    tckd, nckd = tckd / 2, nckd / 2
    for epoch, factor in ((0, 0.25), (1, 0.5), (5, 1.0)):  # epochs from 0 in the trainer; the factor from 1
        method.start_epoch(epoch, 0)
        _, losses = method({"x": torch.zeros(2, 1)}, torch.tensor(TARGET), teacher_out)
        assert losses["dkd"].item() == pytest.approx(factor * (alpha * tckd + beta * nckd), rel=1e-5)


def test_dad_sums_its_two_depths():
    """DAD's loss is the sum of the similarity-preserving loss at f3 and at f4 (not their mean, not one of them),
    times dad_lambda: checked against SP computed by hand on two small feature sets."""
    from mmhal.distill.dad import dad_term

    def sp(fs, ft):
        def gram(f):
            g = [[sum(a * b for a, b in zip(u, v)) for v in f] for u in f]
            return [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in g]
        gs, gt = gram(fs), gram(ft)
        return sum((a - b) ** 2 for rs, rt in zip(gs, gt) for a, b in zip(rs, rt)) / (len(fs) ** 2)

    f3s, f3t = [[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]], [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]]
    f4s, f4t = [[1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]], [[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 1.0]]
    out = NetOutput(torch.zeros(3, 2), [torch.tensor(f3s).view(3, 2, 1), torch.tensor(f4s).view(3, 3, 1)], torch.zeros(3, 1))
    t_out = NetOutput(torch.zeros(3, 2), [torch.tensor(f3t).view(3, 2, 1), torch.tensor(f4t).view(3, 3, 1)], torch.zeros(3, 1))
    cfg = DistillConfig(dad_lambda=7.0, dad_relation="similarity", dad_features="trunk")  # the authors' DAD
    got = dad_term(cfg, out, t_out).item()
    assert got == pytest.approx(7.0 * (sp(f3s, f3t) + sp(f4s, f4t)), rel=1e-5)
    assert abs(sp(f3s, f3t) - sp(f4s, f4t)) > 1e-3  # the two depths differ: a mean or one depth would not pass


def test_the_authors_action_dad_is_sp_on_the_pooled_feature_against_the_mean_of_the_two_stream_teachers():
    """distill.dad_features=embedding with model.teacher_fusion=late (one network per modality, the authors' action
    teacher): SP between the student's pooled feature and the mean of the members' pooled features, nothing else."""
    from mmhal.distill.dad import dad_term, sp_loss
    from mmhal.models import MultimodalNet
    from mmhal.models.video import LateFusionNet

    torch.manual_seed(0)
    spec = {"rgb": (2, 16), "depth": (1, 16)}
    teacher = LateFusionNet({m: MultimodalNet(spec, [m], 3, width=2) for m in spec}).eval()
    student = MultimodalNet(spec, ["rgb"], 3, width=2).eval()
    x = {"rgb": torch.randn(5, 2, 16), "depth": torch.randn(5, 1, 16)}
    out, t_out = student(x), teacher(x)
    mean_emb = (teacher.members["rgb"](x).embedding + teacher.members["depth"](x).embedding) / 2
    cfg = DistillConfig(dad_lambda=3.0, dad_relation="similarity", dad_features="embedding")
    got = dad_term(cfg, out, t_out).item()
    assert got == pytest.approx(3.0 * sp_loss(out.embedding, mean_emb).item(), rel=1e-6)
    # by hand on the pooled features: row-normalised Gram matrices, mean squared difference over the 25 pairs
    gs, gt = out.embedding @ out.embedding.t(), mean_emb @ mean_emb.t()
    gs, gt = gs / gs.norm(dim=1, keepdim=True), gt / gt.norm(dim=1, keepdim=True)
    assert got == pytest.approx(3.0 * ((gs - gt) ** 2).sum().item() / 25, rel=1e-5)
    trunk = DistillConfig(dad_lambda=3.0, dad_relation="similarity", dad_features="trunk")
    assert got != pytest.approx(dad_term(trunk, out, t_out).item())  # not the trunk maps


# ----------------------------------------------------------------------------- RAD's pyramid as the authors' code
def _adaptive_mean(grid, out):
    """Adaptive average pooling of a 2-D list ``grid`` to ``out`` x ``out`` by hand: bin i spans
    floor(i n / out) .. ceil((i + 1) n / out)."""
    n = len(grid)
    spans = [(math.floor(i * n / out), math.ceil((i + 1) * n / out)) for i in range(out)]
    return [[sum(grid[r][c] for r in range(a, b) for c in range(p, q)) / ((b - a) * (q - p)) for p, q in spans]
            for a, b in spans]


def test_coarse_regions_from_the_finest_map_differ_from_regions_of_the_map_on_a_5x5_grid():
    from mmhal.models.pyramid import region_pool

    grid = [[float(r * 5 + c) ** 1.5 for c in range(5)] for r in range(5)]  # not linear: the two ways differ
    fmap = torch.tensor(grid).view(1, 1, 5, 5)
    p4 = _adaptive_mean(grid, 4)
    from_map = [v for lv in (4, 2, 1) for row in _adaptive_mean(grid, lv) for v in row]
    from_finest = [v for lv in (4, 2, 1) for row in _adaptive_mean(p4, lv) for v in row]
    got_map = region_pool(fmap, [4, 2, 1]).view(-1).tolist()
    got_finest = region_pool(fmap, [4, 2, 1], from_finest=True).view(-1).tolist()
    assert got_map == pytest.approx(from_map, rel=1e-6) and got_finest == pytest.approx(from_finest, rel=1e-6)
    assert got_map[:16] == got_finest[:16] and max(abs(a - b) for a, b in zip(got_map[16:], got_finest[16:])) > 1e-3


def test_the_square_remap_is_f2_over_the_norm_of_f2_per_channel():
    from mmhal.models.pyramid import square_remap

    f = [[[1.0, -2.0], [3.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]]  # channel 2 all zero: eps keeps it finite (0)
    got = square_remap(torch.tensor(f).view(1, 2, 2, 2))
    sq = [v * v for row in f[0] for v in row]
    norm = math.sqrt(sum(v * v for v in sq))
    assert got[0, 0].reshape(-1).tolist() == pytest.approx([v / (norm + 1e-6) for v in sq], rel=1e-6)
    assert got[0, 1].abs().sum().item() == 0.0


def test_rad_with_the_authors_pyramid_settings_runs_and_changes_the_loss():
    from mmhal.config import ModelConfig
    from mmhal.distill import build_method
    from mmhal.models.network import build_network

    spec = {"a": (2, 5, 5), "b": (1, 5, 5)}
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(4, *s, generator=g) for m, s in spec.items()}
    y = torch.arange(4) % 3
    values = {}
    for pool, remap in (("map", "none"), ("finest", "none"), ("map", "square")):
        torch.manual_seed(0)
        teacher = build_network(spec, list(spec), 3, ModelConfig(width=4))
        student = build_network(spec, ["a"], 3, ModelConfig(width=4))
        cfg = DistillConfig(rad_weighting="uniform", rad_pool=pool, rad_remap=remap)
        values[(pool, remap)] = build_method("rad", student, teacher, cfg)(x, y)[1]["rad"].item()
    assert len({round(v, 6) for v in values.values()}) == 3, values


@pytest.mark.parametrize("key, words", [("distill.rad_pool=coarse", "distill.rad_pool must be map or finest"),
                                        ("distill.rad_remap=cube", "distill.rad_remap must be none or square")])
def test_the_pyramid_settings_are_checked(key, words):
    from mmhal.config import load_config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match=words):
        load_config(None, [key])


def test_the_authors_rad_weighting_is_a_trained_self_attention_over_the_batch_mean_region_losses():
    """R = 3, W_q and W_k set by hand, l = (0.5, 1, 2): q = W_q l, k = W_k l, A_ij = softmax_j(k_i q_j),
    L = (1/3) sum_i sum_j A_ij l_j."""
    from mmhal.distill.rad import AuthorsAttention

    wq = [[0.2, -0.1, 0.3], [0.0, 0.5, -0.2], [0.1, 0.1, 0.1]]
    wk = [[-0.3, 0.2, 0.0], [0.4, 0.0, 0.1], [0.0, -0.2, 0.5]]
    loss = [0.5, 1.0, 2.0]
    att = AuthorsAttention(3)
    with torch.no_grad():
        att.q.weight.copy_(torch.tensor(wq))
        att.k.weight.copy_(torch.tensor(wk))
    q = [sum(w * v for w, v in zip(row, loss)) for row in wq]
    k = [sum(w * v for w, v in zip(row, loss)) for row in wk]
    total = 0.0
    for i in range(3):
        a = _softmax([k[i] * q[j] for j in range(3)])
        total += sum(a[j] * loss[j] for j in range(3))
    got = att(torch.tensor(loss))
    assert got.item() == pytest.approx(total / 3, rel=1e-6)


def _ucf101_by_hand(loss):
    """sum_i sum_j softmax_j(l_i l_j) l_j / R, NaN entries as 0 and left out of R (plain Python)."""
    n = sum(1 for v in loss if v != v)
    l = [0.0 if v != v else v for v in loss]
    total = sum(sum(a * v for a, v in zip(_softmax([li * lj for lj in l]), l)) for li in l)
    return total / (len(l) - n)


def test_the_authors_ucf101_weighting_is_a_parameter_free_attention_with_gradient_through_weights_and_losses():
    """rad_weighting=authors-ucf101 (their ucf101/loss/kd/st.py): l = (0.5, 1, 2), A_ij = softmax_j(l_i l_j),
    L = (1/3) sum_i sum_j A_ij l_j; the gradient (finite differences of the hand formula) runs through A as well as
    l, so it differs from that of the same weights held constant; a NaN region counts 0 and leaves the count."""
    from mmhal.distill.rad import ucf101_attention

    loss = [0.5, 1.0, 2.0]
    l = torch.tensor(loss, dtype=torch.float64, requires_grad=True)
    got, att = ucf101_attention(l)
    assert got.item() == pytest.approx(_ucf101_by_hand(loss), rel=1e-12)
    assert att[2].tolist() == pytest.approx(_softmax([2 * 0.5, 2 * 1.0, 2 * 2.0]), rel=1e-12)
    got.backward()
    eps = 1e-6
    fd = [(_ucf101_by_hand([v + eps * (i == k) for i, v in enumerate(loss)])
           - _ucf101_by_hand([v - eps * (i == k) for i, v in enumerate(loss)])) / (2 * eps) for k in range(3)]
    assert l.grad.tolist() == pytest.approx(fd, rel=1e-6)
    held = att.detach().sum(dim=0) / 3  # the weights as constants: d/dl_j = (1/3) sum_i A_ij
    assert not held.tolist() == pytest.approx(fd, rel=1e-3)
    with_nan = ucf101_attention(torch.tensor([0.5, float("nan"), 2.0], dtype=torch.float64))[0]
    assert with_nan.item() == pytest.approx(_ucf101_by_hand([0.5, float("nan"), 2.0]), rel=1e-12)
    assert with_nan.item() == pytest.approx(_ucf101_by_hand([0.5, 0.0, 2.0]) * 3 / 2, rel=1e-12)


def test_the_ucf101_weighting_reaches_rad_and_mmh_through_the_setting():
    """distill.rad_weighting=authors-ucf101 makes rad_loss return the attention over the batch-mean region losses at
    rad_lambda (here 0.3); the student gets its gradient."""
    from mmhal.config import load_config
    from mmhal.distill import build_method
    from mmhal.distill.rad import rad_loss

    assert load_config(None, ["distill.rad_weighting=authors-ucf101"]).distill.rad_weighting == "authors-ucf101"
    teacher, student, x, y = _sequence_pair()
    for name in ("rad", "mmh"):
        method = build_method(name, student, teacher, DistillConfig(rad_weighting="authors-ucf101", rad_lambda=0.3))
        student.zero_grad()
        term = method(x, y)[1]["rad"]
        s_out, t_out = student(x), teacher(x)
        _, per_region, _ = rad_loss(student, s_out.fmap, teacher, t_out.fmap, y, 2.0, "uniform", [4, 2, 1])
        want = _ucf101_by_hand(per_region.mean(dim=0).tolist())
        assert term.item() == pytest.approx(0.3 * want, rel=1e-5)
        term.backward()
        assert sum(p.grad.abs().sum() for p in student.parameters() if p.grad is not None) > 0


def _sequence_pair():
    """(teacher on sequences a and b, student on a, a batch of 6, its labels): small networks for RAD's tests."""
    from mmhal.config import ModelConfig
    from mmhal.models.network import build_network

    spec = {"a": (2, 16), "b": (3, 16)}
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(6, *s, generator=g) for m, s in spec.items()}
    torch.manual_seed(0)
    return (build_network(spec, list(spec), 3, ModelConfig(width=4)), build_network(spec, ["a"], 3, ModelConfig(width=4)),
            x, torch.arange(6) % 3)


def test_the_authors_weighting_trains_the_student_and_its_attention():
    """Unlike the authors' face code (which detaches the losses), the student gets RAD's gradient; W_q and W_k are the
    method's parameters, so the optimiser trains them."""
    from mmhal.distill import build_method

    teacher, student, x, y = _sequence_pair()
    for name in ("rad", "mmh"):
        method = build_method(name, student, teacher, DistillConfig(rad_weighting="authors", rad_lambda=1.0))
        assert method.rad_attention.q.weight.shape == (7, 7)  # sequences: 4 + 2 + 1 regions
        assert {id(p) for p in method.rad_attention.parameters()} <= {id(p) for p in method.parameters()}
        method.zero_grad()
        method(x, y)[1]["rad"].backward()
        assert method.rad_attention.q.weight.grad.abs().sum() > 0
        assert sum(p.grad.abs().sum() for p in student.parameters() if p.grad is not None) > 0


def test_the_ensemble_is_scored_on_its_members_summed_logits():
    """mmh-ensemble = the RAD student's logits + the DAD student's (the authors' final model): each member alone is
    right on half the samples, their sum on all."""
    y = Y
    rad = np.tile(np.array([[1.0, 0.0]], np.float32), (10, 1))  # always class 0
    dad = np.where((y == 1)[:, None], np.array([[0.0, 2.0]]), np.array([[0.0, 0.5]])).astype(np.float32)  # always 1
    jobs = {}
    for s in range(3):
        for name, z in (("unimodal", rad), ("rad", rad), ("dad", dad)):
            jobs[(name, s)] = {"logits": z, "logits_last": None, "val_logits": z}
    t = _logits_for(np.ones(10, bool), y)
    res = build_results(["unimodal", "rad", "dad", "mmh-ensemble"], ["s"], ["s", "t"], y, y, t, t, jobs, [0, 1, 2], 2)
    assert res["rad"]["accuracy"]["mean"] == 0.5 and res["dad"]["accuracy"]["mean"] == 0.5
    assert res["mmh-ensemble"]["accuracy"]["mean"] == 1.0 and res["mmh-ensemble"]["networks"] == 2


def test_the_authors_face_schedule_gives_their_learning_rate_in_every_epoch():
    """train.schedule=authors-face at lr 1e-3: per epoch 0, 0, 2e-4, 4e-4, 6e-4, 8e-4, then 1e-3 (epochs 6-13), 1e-4
    (14-21), 1e-5 (22-30), 1e-6 (31-49): the rates issue 20 measured in the authors' face training."""
    from mmhal.config import TrainConfig, load_config
    from mmhal.engine.loop import lr_schedule
    from mmhal.errors import UserError

    expected = [0.0, 0.0, 2e-4, 4e-4, 6e-4, 8e-4] + [1e-3] * 8 + [1e-4] * 8 + [1e-5] * 9 + [1e-6] * 19
    assert len(expected) == 50
    tcfg = TrainConfig(schedule="authors-face", lr=1e-3)
    spe = 3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=tcfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(tcfg, 50 * spe, spe))
    for epoch in range(50):
        rates = set()
        for _ in range(spe):
            rates.add(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert len(rates) == 1 and rates.pop() == pytest.approx(expected[epoch], rel=1e-9, abs=1e-15), epoch
    with pytest.raises(UserError, match="train.schedule must be cosine or authors-face"):
        load_config(None, ["train.schedule=step"])


def test_the_detach_defect_switch_reproduces_a_student_without_rad_gradient():
    """distill.rad_reproduce_detach_defect=true: as the authors' face code, only W_q and W_k learn from RAD."""
    from mmhal.config import load_config
    from mmhal.distill import build_method
    from mmhal.errors import UserError

    teacher, student, x, y = _sequence_pair()
    cfg = DistillConfig(rad_weighting="authors", rad_reproduce_detach_defect=True)
    method = build_method("rad", student, teacher, cfg)
    method(x, y)[1]["rad"].backward()
    assert method.rad_attention.q.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters())
    with pytest.raises(UserError, match="needs distill.rad_weighting=authors"):
        load_config(None, ["distill.rad_reproduce_detach_defect=true"])

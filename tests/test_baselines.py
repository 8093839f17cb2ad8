"""The baseline distillation methods (fitnet, at, sp, pkt, rkd, dkd, mars, hallucination): each loss against an
independent NumPy (or hand) computation, the identities of research/BASELINES.md section 5, where gradients go,
their settings, and training (and resuming) through the trainer and the CLI."""
import copy
import json

import numpy as np
import pytest
import torch

from mmhal.config import DistillConfig, ModelConfig, TrainConfig, load_config, method_config
from mmhal.distill import METHODS, build_method
from mmhal.distill.at import at_loss, attention_map
from mmhal.distill.dad import sp_loss
from mmhal.distill.dkd import dkd_terms
from mmhal.distill.fitnet import hint_loss
from mmhal.distill.hallucination import hallucination_loss
from mmhal.distill.pkt import pkt_loss
from mmhal.distill.rkd import rkd_losses
from mmhal.errors import UserError
from mmhal.models.network import build_network

BASELINES = ["fitnet", "at", "sp", "pkt", "rkd", "crd", "dkd", "mars", "hallucination"]
SPEC = {"weak": (2, 16), "strong": (5,)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def _t(a):
    return torch.tensor(a, dtype=torch.float32)


def _nets(spec=SPEC, student=("weak",), classes=4, seed=0):
    torch.manual_seed(seed)
    teacher = build_network(spec, list(spec), classes, ModelConfig(width=4))
    return build_network(spec, list(student), classes, ModelConfig(width=4)), teacher


def _batch(spec=SPEC, classes=4, n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, *s, generator=g) for m, s in spec.items()}
    y = torch.arange(n) % classes
    return x, y


TRAIN_N = 64  # the train split CRD is built for in these tests: labels i % classes, like _batch's


def _make(name, student, teacher, cfg=None, classes=4):
    """Method ``name`` as the trainer builds it (CRD with the train split's labels)."""
    return build_method(name, student, teacher, cfg or DistillConfig(), torch.arange(TRAIN_N) % classes)


def _call(method, x, y):
    """(logits, losses) of a training forward: methods that ask get the samples' train indices (0..B-1)."""
    return method(x, y, index=torch.arange(y.shape[0])) if method.needs_index else method(x, y)


# ----------------------------------------------------------------------------- NumPy references
def np_softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_at(fs, ft, p=2.0):
    def amap(f):
        a = (np.abs(f) ** p).mean(axis=1).reshape(f.shape[0], -1)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    return ((amap(fs) - amap(ft)) ** 2).mean()


def np_sp(fs, ft):
    def g(f):
        f = f.reshape(f.shape[0], -1)
        m = f @ f.T
        return m / np.linalg.norm(m, axis=1, keepdims=True)
    return ((g(fs) - g(ft)) ** 2).mean()


def np_pkt(fs, ft, eps=1e-7):
    def prob(f):
        f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
        s = (f @ f.T + 1) / 2
        return s / s.sum(axis=1, keepdims=True)
    ps, pt = prob(fs), prob(ft)
    return (pt * np.log((pt + eps) / (ps + eps))).sum() / fs.shape[0] ** 2


def np_huber(x):
    a = np.abs(x)
    return np.where(a < 1, 0.5 * x ** 2, a - 0.5)


def np_rkd(es, et):
    b = es.shape[0]

    def dist(e):
        d = np.sqrt(np.maximum(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1), 1e-12))
        np.fill_diagonal(d, 0.0)
        return d / d[d > 0].mean()

    def angle(e):
        out = np.zeros((b, b, b))
        for i in range(b):
            for j in range(b):
                for k in range(b):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    if nu > 0 and nv > 0:
                        out[i, j, k] = u @ v / (nu * nv)
        return out

    return np_huber(dist(es) - dist(et)).mean(), np_huber(angle(es) - angle(et)).mean()


def np_kl(p, q):
    return (p * (np.log(p) - np.log(q))).sum(-1)


def np_dkd(zs, zt, y, t):
    """Per-sample TCKD, NCKD (times T^2) and KD, straight from the definitions."""
    ps, pt = np_softmax(zs / t), np_softmax(zt / t)
    idx = np.arange(len(y))
    bs = np.stack([ps[idx, y], 1 - ps[idx, y]], 1)
    bt = np.stack([pt[idx, y], 1 - pt[idx, y]], 1)
    mask = np.ones_like(zs, dtype=bool)
    mask[idx, y] = False
    qs = np.where(mask, np.exp(zs / t), 0)
    qt = np.where(mask, np.exp(zt / t), 0)
    qs, qt = qs / qs.sum(1, keepdims=True), qt / qt.sum(1, keepdims=True)
    nckd = np.where(mask, qt * (np.log(np.where(mask, qt, 1)) - np.log(np.where(mask, qs, 1))), 0).sum(1)
    return t * t * np_kl(bt, bs), t * t * nckd, t * t * np_kl(pt, ps)


# ----------------------------------------------------------------------------- each loss against its reference
def test_attention_transfer_by_hand_and_against_numpy():
    # one sample, one channel, two positions: a_s = [1, 0], a_t = [0, 1]; mean of the squared difference = 1
    assert at_loss(_t([[[1.0, 0.0]]]), _t([[[0.0, 3.0]]])).item() == pytest.approx(1.0)
    fs, ft = _rand(4, 6, 5, 3, seed=1), _rand(4, 6, 5, 3, seed=2)
    for p in (2.0, 3.0):
        assert at_loss(_t(fs), _t(ft), p).item() == pytest.approx(np_at(fs, ft, p), rel=1e-5)


def test_attention_transfer_identities():
    fs, ft = _t(_rand(4, 6, 8, seed=3)), _t(_rand(4, 6, 8, seed=4))
    base = at_loss(fs, ft).item()
    assert base > 0
    assert at_loss(fs, fs.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert at_loss(fs * 7.0, ft * 0.1).item() == pytest.approx(base, rel=1e-5)  # positive scale of either map
    assert at_loss(fs[:, torch.randperm(6)], ft).item() == pytest.approx(base, rel=1e-5)  # channel permutation
    assert at_loss(-fs, ft).item() == pytest.approx(base, rel=1e-5)  # sign, for p = 2
    assert base <= 4 / 8
    # the authors' (TMM) form: sum over channels, norm + 1e-6, mean squared error
    def tmm(f):
        a = f.pow(2).sum(1).flatten(1)
        return a / (a.norm(dim=1, keepdim=True) + 1e-6)
    assert at_loss(fs, ft).item() == pytest.approx(((tmm(fs) - tmm(ft)) ** 2).mean().item(), abs=1e-6)
    assert at_loss(fs[:, :, :1], ft[:, :, :1]).item() == 0.0  # one position: no attention to transfer
    assert torch.allclose(attention_map(fs).norm(dim=1), torch.ones(4))


def test_similarity_preserving_against_numpy_and_its_identities():
    fs, ft = _rand(6, 4, 5, seed=5), _rand(6, 4, 5, seed=6)
    base = sp_loss(_t(fs), _t(ft)).item()
    assert base == pytest.approx(np_sp(fs, ft), rel=1e-5)
    q, _ = np.linalg.qr(_rand(20, 20, seed=7))
    rotated = (fs.reshape(6, -1) @ q).reshape(6, 4, 5)
    assert sp_loss(_t(rotated * 3.0), _t(ft)).item() == pytest.approx(base, rel=1e-4)  # global scale, orthogonal map
    per_sample = fs * np.arange(1, 7)[:, None, None]
    assert sp_loss(_t(per_sample), _t(ft)).item() != pytest.approx(base, rel=1e-3)  # not per-sample scaling
    perm = np.random.default_rng(0).permutation(6)
    assert sp_loss(_t(fs[perm]), _t(ft[perm])).item() == pytest.approx(base, rel=1e-5)  # joint batch permutation
    assert base <= 4 / 6


def test_pkt_against_numpy_and_its_identities():
    fs, ft = _rand(7, 9, seed=8), _rand(7, 9, seed=9)
    base = pkt_loss(_t(fs), _t(ft)).item()
    assert base == pytest.approx(np_pkt(fs, ft), rel=1e-4)
    assert abs(pkt_loss(_t(ft), _t(ft)).item()) < 1e-6
    q, _ = np.linalg.qr(_rand(9, 9, seed=10))
    scaled = (fs @ q) * np.linspace(0.5, 4.0, 7)[:, None]  # orthogonal map, positive scale per sample
    assert pkt_loss(_t(scaled), _t(ft)).item() == pytest.approx(base, rel=1e-4)
    perm = np.random.default_rng(1).permutation(7)
    assert pkt_loss(_t(fs[perm]), _t(ft[perm])).item() == pytest.approx(base, rel=1e-5)


def test_rkd_against_numpy():
    es, et = _rand(5, 3, seed=11), _rand(5, 3, seed=12)
    l_d, l_a = rkd_losses(_t(es), _t(et))
    ref_d, ref_a = np_rkd(es, et)
    assert l_d.item() == pytest.approx(ref_d, rel=1e-4) and l_a.item() == pytest.approx(ref_a, rel=1e-4)
    assert l_d.item() > 0 and l_a.item() > 0
    only_d, no_a = rkd_losses(_t(es), _t(et), angle=False)  # distill.rkd.angle=0 skips the costly term
    assert only_d.item() == l_d.item() and no_a.item() == 0.0


def test_rkd_is_zero_for_a_similarity_transform_and_its_terms_are_scale_and_translation_invariant():
    es, et = _rand(6, 8, seed=13), _rand(6, 8, seed=14)
    q, _ = np.linalg.qr(_rand(8, 8, seed=15))
    similar = 2.5 * et @ q + _rand(1, 8, seed=16)
    l_d, l_a = rkd_losses(_t(similar), _t(et))
    assert l_d.item() < 1e-10 and l_a.item() < 1e-10
    base_d, base_a = (v.item() for v in rkd_losses(_t(es), _t(et)))
    moved_d, moved_a = (v.item() for v in rkd_losses(_t(0.2 * es + 5.0), _t(et)))
    assert moved_d == pytest.approx(base_d, rel=1e-4) and moved_a == pytest.approx(base_a, rel=1e-4)
    teacher_d, teacher_a = (v.item() for v in rkd_losses(_t(es), _t(3.0 * et - 1.0)))
    assert teacher_d == pytest.approx(base_d, rel=1e-4) and teacher_a == pytest.approx(base_a, rel=1e-4)


def test_rkd_gradient_stays_finite_for_repeated_samples():
    e = torch.randn(6, 4)
    e[3] = e[2]  # a repeated sample: distance exactly 0
    e.requires_grad_(True)
    l_d, l_a = rkd_losses(e, torch.randn(6, 4))
    (l_d + l_a).backward()
    assert torch.isfinite(e.grad).all() and e.grad.abs().max() < 1e3


@pytest.mark.parametrize("chunk", [1, 4, 9])  # anchors per chunk: 9 = all at once (as on a GPU)
def test_rkd_fused_angle_gradient_equals_autograd_through_the_plain_formula(monkeypatch, chunk):
    """The angle term's hand-formed gradient (``_AngleHuber``, a chunk of anchors at a time) is autograd's
    through psi_A and smooth L1, also with a repeated sample and residuals on both sides of the Huber
    threshold, whatever the chunk size."""
    from mmhal.distill import rkd
    from mmhal.distill.rkd import angle_potential

    monkeypatch.setattr(rkd, "_anchors_per_chunk", lambda b, d, device: chunk)
    torch.manual_seed(3)
    s_emb, t_emb = torch.randn(9, 5, dtype=torch.float64), torch.randn(9, 5, dtype=torch.float64)
    s_emb[4] = s_emb[1]
    t_emb[:3] *= -1.0  # some cosines flip sign: |r| > 1 occurs
    s1, s2 = s_emb.clone().requires_grad_(True), s_emb.clone().requires_grad_(True)
    _, fused = rkd_losses(s1, t_emb)
    fused.backward()
    r = angle_potential(s2) - angle_potential(t_emb)
    assert (r.abs() > 1).any() and (r.abs() < 1).any()
    plain = torch.nn.functional.smooth_l1_loss(angle_potential(s2), angle_potential(t_emb), beta=1.0)
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-5, atol=1e-9)


def test_rkd_angle_keeps_float32_precision_for_close_points_at_large_norm():
    """In float32 embeddings with large norms and two points 1e-3 apart, the fused angle term's loss and gradient
    are the plain formula's (in float64) to float32 precision (a formulation through Gram matrices, whose four
    terms cancel there, would need float64 to pass)."""
    from mmhal.distill.rkd import angle_potential

    torch.manual_seed(5)
    s_emb, t_emb = 20.0 + torch.randn(16, 64), torch.randn(16, 64)
    s_emb[7] = s_emb[6] + 1e-3 * torch.randn(64)
    s1 = s_emb.clone().requires_grad_(True)
    _, fused = rkd_losses(s1, t_emb)
    fused.backward()
    s2 = s_emb.double().requires_grad_(True)
    plain = torch.nn.functional.smooth_l1_loss(angle_potential(s2), angle_potential(t_emb.double()), beta=1.0)
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    torch.testing.assert_close(s1.grad.double(), s2.grad, rtol=1e-4, atol=1e-7 * float(s2.grad.abs().max()))


def test_dkd_against_numpy_and_kd_decomposes_into_its_terms():
    zs, zt = _rand(6, 5, seed=17) * 3, _rand(6, 5, seed=18) * 3
    y = np.array([0, 1, 2, 3, 4, 0])
    tckd, nckd = dkd_terms(_t(zs), _t(zt), torch.tensor(y), 2.0)
    ref_t, ref_n, ref_kd = np_dkd(zs, zt, y, 2.0)
    np.testing.assert_allclose(tckd.numpy(), ref_t, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(nckd.numpy(), ref_n, rtol=1e-4, atol=1e-7)
    b_t_gt = np_softmax(zt / 2.0)[np.arange(6), y]
    np.testing.assert_allclose(tckd.numpy() + (1 - b_t_gt) * nckd.numpy(), ref_kd, rtol=1e-4)  # KD = TCKD + (1-b)NCKD
    zero_t, zero_n = dkd_terms(_t(zs), _t(zs), torch.tensor(y), 4.0)
    assert zero_t.abs().max() < 1e-6 and zero_n.abs().max() < 1e-6


def test_dkd_on_two_classes_is_kd_so_the_method_refuses_it():
    zs, zt = _rand(5, 2, seed=19), _rand(5, 2, seed=20)
    y = np.array([0, 1, 1, 0, 1])
    tckd, nckd = dkd_terms(_t(zs), _t(zt), torch.tensor(y), 2.0)
    assert nckd.abs().max() < 1e-6
    np.testing.assert_allclose(tckd.numpy(), np_dkd(zs, zt, y, 2.0)[2], rtol=1e-4, atol=1e-6)
    student, teacher = _nets(classes=2)
    with pytest.raises(UserError, match="at least 3 classes"):
        METHODS.get("dkd")(student, teacher, DistillConfig())


def test_dkd_warmup_follows_the_epoch_the_trainer_announces():
    cfg = DistillConfig()
    cfg.dkd.warmup = 4
    student, teacher = _nets()
    method = METHODS.get("dkd")(student, teacher, cfg)
    assert method.warmup_factor() == 0.25  # on its own: epoch 1
    factors = []
    for epoch in range(5):
        method.start_epoch(epoch, seed=epoch)  # what the trainer does before every epoch
        method.train()
        method.eval()  # switching modes does not count
        factors.append(method.warmup_factor())
    assert factors == [0.25, 0.5, 0.75, 1.0, 1.0]
    x, y = _batch()
    with torch.no_grad():
        full = method(x, y)[1]["dkd"]
        cfg.dkd.warmup = 10
        assert method(x, y)[1]["dkd"].item() == pytest.approx(0.5 * full.item(), rel=1e-5)


def test_fitnet_hint_mars_and_hallucination_losses_against_numpy():
    fs, ft = _rand(3, 4, 5, seed=21), _rand(3, 4, 5, seed=22)
    assert hint_loss(_t(fs), _t(ft)).item() == pytest.approx(((fs - ft) ** 2).mean(), rel=1e-5)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731 (a one-line reference)
    value = hallucination_loss(_t(fs), _t(ft)).item()
    assert value == pytest.approx(((sig(ft) - sig(fs)) ** 2).mean(), rel=1e-5)
    assert 0.0 <= hallucination_loss(_t(fs * 100), _t(-ft * 100)).item() <= 1.0
    student, teacher = _nets()
    method = METHODS.get("mars")(student, teacher, DistillConfig())
    x, y = _batch()
    method.eval()
    with torch.no_grad():
        es, et = student(x).embedding.numpy(), teacher(x).embedding.numpy()
        mars = method(x, y)[1]["mars"].item()
    assert mars == pytest.approx(50.0 * ((es - et) ** 2).mean(), rel=1e-5)


def test_fitnet_regressor_is_a_1x1_convolution_and_with_it_set_to_identity_the_loss_is_the_mse():
    student, teacher = _nets()
    method = METHODS.get("fitnet")(student, teacher, DistillConfig())
    conv, bn, _ = method.regressor
    assert isinstance(conv, torch.nn.Conv1d) and conv.kernel_size == (1,) and conv.bias is not None
    assert conv.in_channels == conv.out_channels == 16 and bn.num_features == 16
    with torch.no_grad():
        conv.weight.copy_(torch.eye(16).unsqueeze(-1))
        conv.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    method.eval()
    x, y = _batch()
    with torch.no_grad():
        fs, ft = student(x).features[0], teacher(x).features[0]
        got = method(x, y)[1]["fitnet"].item()
    assert got == pytest.approx(100.0 * ((fs - ft) ** 2).mean().item(), rel=1e-5)
    assert (fs >= 0).all()  # f3 follows a ReLU: the regressor's ReLU can reach it
    none = DistillConfig()
    none.fitnet.regressor = "none"
    assert METHODS.get("fitnet")(*_nets(), none).regressor is None


def test_attention_transfer_refuses_a_student_without_a_grid():
    student, teacher = _nets({"a": (7,), "b": (5,)}, ("a",))
    with pytest.raises(UserError, match="grid"):
        METHODS.get("at")(student, teacher, DistillConfig())


# ----------------------------------------------------------------------------- every method
def _identity_method(name):
    """The method with a teacher that is a copy of the student (same modalities and weights), in eval mode."""
    student, _ = _nets(student=("weak", "strong"))
    method = _make(name, student, copy.deepcopy(student))
    if name == "fitnet":  # R = identity
        conv, bn, _ = method.regressor
        with torch.no_grad():
            conv.weight.copy_(torch.eye(conv.in_channels).unsqueeze(-1))
            conv.bias.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
    if name == "hallucination":  # H and the teacher are the same network from the start
        assert all(torch.equal(a, b) for a, b in zip(method.student.state_dict().values(),
                                                      method.teacher.state_dict().values()))
    return method.eval()


@pytest.mark.parametrize("name", [b for b in BASELINES if b != "crd"])  # CRD has no zero point (its own test)
def test_every_distillation_term_is_zero_when_the_student_equals_the_teacher(name):
    method = _identity_method(name)
    x, y = _batch()
    with torch.no_grad():
        _, losses = method(x, y)
    terms = {k: v.item() for k, v in losses.items() if not k.startswith("ce")}
    assert terms and all(abs(v) < 1e-5 for v in terms.values()), terms


@pytest.mark.parametrize("name", BASELINES)
def test_gradients_reach_the_student_and_the_methods_own_modules_never_the_teacher(name):
    student, teacher = _nets()
    method = _make(name, student, teacher)
    method.train()
    x, y = _batch()
    _, losses = _call(method, x, y)
    terms = [v for k, v in losses.items() if not k.startswith("ce")]
    sum(terms).backward()  # the distillation terms alone
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(not n.startswith("_teacher") for n, _ in method.named_parameters())
    trunk = [p for n, p in student.named_parameters() if n.startswith("stage3.")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trunk), "no gradient reached the student"
    own = [p for n, p in method.named_parameters() if not n.startswith("student.")]
    if name == "fitnet":
        assert own and all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    elif name == "hallucination":
        method.zero_grad()
        losses = method(x, y)[1]
        (losses["ce_rgb"] + losses["ce_joint"]).backward()
        assert all(p.grad is not None for p in method.rgb.parameters())
        assert own and len(own) == len(list(student.parameters()))
    elif name == "crd":  # both projections (W_t from the teacher-anchor term); the memory banks are buffers
        assert sorted(n for n, _ in method.named_parameters() if not n.startswith("student.")) == [
            "crd.embed_s.bias", "crd.embed_s.weight", "crd.embed_t.bias", "crd.embed_t.weight"]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    else:
        assert own == []


@pytest.mark.parametrize("name", BASELINES)
def test_losses_are_fp32_and_finite_under_bf16_autocast_and_for_two_samples(name):
    student, teacher = _nets()
    method = _make(name, student, teacher).train()
    x, y = _batch(n=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = _call(method, x, y)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)


def test_hallucination_starts_h_from_the_teacher_and_r_from_the_seeds_initialisation():
    student, teacher = _nets()
    before = copy.deepcopy(student.state_dict())
    method = METHODS.get("hallucination")(student, teacher, DistillConfig())
    t_state = teacher.state_dict()
    for k, v in student.state_dict().items():
        if k.startswith(("stage3.", "stage4.", "head.", "stems.weak.")):
            assert torch.equal(v, t_state[k]), k
        if k.startswith(("se.", "proj.")):
            assert torch.equal(v, before[k]), k  # the fusion layer differs in width: not copied
    assert all(torch.equal(v, before[k]) for k, v in method.rgb.state_dict().items())


@pytest.mark.parametrize("name", BASELINES)
def test_each_methods_search_space_names_settings_of_that_method(name):
    from mmhal.engine.tune import method_space, require_optuna, suggest

    optuna = require_optuna()
    cfg = load_config(None, [])
    space = METHODS.get(name).tune_space
    assert space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    for _ in range(4):
        method_config(cfg, name, suggest(study.ask(), method_space(name)))  # valid keys and values
    section = {"fitnet": "fitnet", "at": "at", "sp": "sp", "pkt": "pkt", "rkd": "rkd", "crd": "crd", "dkd": "dkd",
               "mars": "mars", "hallucination": "hallucination"}[name]
    assert any(k.startswith(f"distill.{section}.") for k in space)


# ----------------------------------------------------------------------------- settings
def test_the_defaults_are_the_published_ones():
    d = DistillConfig()
    assert (d.fitnet.beta, d.fitnet.regressor, d.at.beta, d.at.p) == (100, "conv", 1000, 2)
    assert (d.sp.gamma, d.pkt.beta) == (3000, 30000)
    assert (d.rkd.distance, d.rkd.angle, d.dkd.alpha, d.dkd.beta, d.mars.alpha) == (25, 50, 1, 8, 50)


def test_baseline_settings_take_overrides_and_method_overrides():
    cfg = load_config(None, ["distill.fitnet.beta=50", "distill.rkd.angle=5", "method_overrides.dkd.distill.dkd.beta=2",
                             "method_overrides.fitnet={distill.fitnet: {beta: 9}}", "distill.fitnet.regressor=none"])
    assert cfg.distill.fitnet.beta == 50.0 and cfg.distill.rkd.angle == 5.0 and cfg.distill.dkd.beta == 8.0
    assert method_config(cfg, "dkd").distill.dkd.beta == 2.0
    fit = method_config(cfg, "fitnet").distill.fitnet
    assert fit.beta == 9.0 and fit.regressor == "none"  # a section mapping leaves the section's other settings


@pytest.mark.parametrize("override, words", [
    ("distill.fitnet.beta=-1", "distill.fitnet.beta"),
    ("distill.fitnet.regressor=mlp", "distill.fitnet.regressor"),
    ("distill.at.p=0", "distill.at.p"),
    ("distill.dkd.warmup=0", "distill.dkd.warmup"),
    ("distill.hallucination.gamma=-2", "distill.hallucination.gamma"),
    ("method_overrides.rkd.distill.rkd.distance=-1", "method_overrides.rkd"),
    ("distill.fitnet.bta=1", "did you mean 'distill.fitnet.beta'"),
])
def test_bad_baseline_settings_are_one_sentence_user_errors(override, words):
    with pytest.raises(UserError, match=words) as exc:
        load_config(None, [override])
    assert "\n" not in str(exc.value)


def test_the_baseline_sections_leave_the_teachers_cache_key_alone():
    from mmhal.engine.run import teacher_config, teacher_key

    base = teacher_key(teacher_config(load_config(None, [])), "fp", ["acc", "gyro"])
    other = load_config(None, ["distill.fitnet.beta=1", "distill.dkd.warmup=3", "distill.sp.gamma=1"])
    assert teacher_key(teacher_config(other), "fp", ["acc", "gyro"]) == base


# ----------------------------------------------------------------------------- training
def _splits(n=64, classes=4):
    from mmhal.engine.loop import Split

    x, y = _batch(n=n, classes=classes, seed=3)
    xv, yv = _batch(n=16, classes=classes, seed=4)
    return Split(x, y), Split(xv, yv)


def _fit_method(name, tmp_path, stop_after=None, resume=False):
    from mmhal.engine.loop import fit

    cfg = DistillConfig()
    cfg.dkd.warmup = 2
    method = _make(name, *_nets(seed=5), cfg)
    train, val = _splits()
    tcfg = TrainConfig(epochs=2, batch_size=16, threads=1)

    def on_epoch(epoch, rec):
        if stop_after is not None and epoch + 1 == stop_after:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    try:
        res = fit(method, train, val, tcfg, seed=0, progress=False, on_epoch=on_epoch,
                  checkpoint=tmp_path / f"{name}.ckpt", resume=resume)
    except KeyboardInterrupt:
        return method, None
    return method, res


@pytest.mark.parametrize("name", ["fitnet", "crd", "dkd", "hallucination"])
def test_a_resumed_training_holds_the_methods_own_state_and_ends_as_the_uninterrupted_one(name, tmp_path):
    from mmhal.engine.checkpoint import load_checkpoint

    whole, res = _fit_method(name, tmp_path / "a")
    (tmp_path / "b").mkdir()
    _fit_method(name, tmp_path / "b", stop_after=1)
    ckpt = load_checkpoint(tmp_path / "b" / f"{name}.ckpt")
    own = {"fitnet": "regressor.", "dkd": "", "hallucination": "rgb.", "crd": "crd.memory_s"}[name]
    assert any(k.startswith(own) for k in ckpt["method"]), sorted(ckpt["method"])
    resumed, res2 = _fit_method(name, tmp_path / "b", resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert res.history == res2.history
    if name == "dkd":
        assert resumed.epoch == 2  # announced by the resumed trainer, not counted


@pytest.mark.slow
def test_every_baseline_trains_through_mmhal_run_and_hoffmans_fusion_is_reported_at_two_networks(tmp_path):
    from run_fixtures import tiny_npz

    from mmhal.cli import main

    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "run"
    assert main(["run", "--data", str(data), "--student", "weak", "--methods", ",".join(BASELINES + ["hallucination-fusion"]),
                 "--epochs", "2", "--seeds", "1", "--out", str(out), "--no-progress", "model.width=4", "workers=1",
                 "train.batch_size=32", "train.loader_workers=0", "train.threads=1"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert set(BASELINES) <= set(report["results"])
    for name in BASELINES:
        assert report["results"][name]["networks"] == 1
        saved = torch.load(out / "models" / f"{name}-seed0.pt", weights_only=True)
        assert not any(k.startswith(("regressor.", "rgb.", "crd.")) for k in saved["model"])  # the student alone
        assert {"ce", name if name != "rkd" else "rkd_angle"} <= set(saved["history"][0])
    # r + H: the RGB network is saved at H's selected epoch and the fusion sums both networks' logits
    fusion = report["results"]["hallucination-fusion"]
    assert fusion["networks"] == 2
    h = torch.load(out / "models" / "hallucination-seed0.pt", weights_only=True)
    r = torch.load(out / "models" / "hallucination.rgb-seed0.pt", weights_only=True)
    assert r["best_epoch"] == h["best_epoch"] and r["method"] == "hallucination.rgb"
    assert not all(torch.equal(v, h["model"][k]) for k, v in r["model"].items())
    job_h = torch.load(out / "jobs" / "hallucination-seed0.pt", weights_only=True)
    job_r = torch.load(out / "jobs" / "hallucination.rgb-seed0.pt", weights_only=True)
    evaluation = torch.load(out / "evaluation.pt", weights_only=True)
    y = evaluation["y_eval"].numpy()
    fused = (job_h["logits"] + job_r["logits"]).argmax(1).numpy()
    assert fusion["accuracy"]["per_seed"][0] == pytest.approx(float((fused == y).mean()))
    # the fusion is what `mmhal predict` serves for it; `mmhal export` refuses it (two networks)
    assert main(["predict", str(out), "--data", str(data), "--method", "hallucination-fusion",
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["export", str(out), "--method", "hallucination-fusion", "--out", str(tmp_path / "x")]) == 2


# ----------------------------------------------------------------------------- CRD
def test_crd_nce_loss_by_hand():
    from mmhal.distill.crd import nce_loss

    h = torch.tensor([[2.0, 0.5, 1.0]])  # K = 2, N = 4: m P_n = 0.5
    by_hand = -(np.log(2.0 / (2.5 + 1e-7)) + np.log(0.5 / (1.0 + 1e-7)) + np.log(0.5 / (1.5 + 1e-7)))
    assert nce_loss(h, 4).item() == pytest.approx(by_hand, rel=1e-6)


def test_crd_scores_memory_update_and_gradients():
    from mmhal.distill.crd import CRDLoss, nce_loss

    torch.manual_seed(0)
    crd = CRDLoss(6, 5, num_samples=20, dim=4, k=7)
    old_s, old_t = crd.memory_s.clone(), crd.memory_t.clone()
    f_s = torch.randn(3, 6, requires_grad=True)
    f_t = torch.randn(3, 5, requires_grad=True)
    index = torch.tensor([2, 5, 11])
    loss, h_s, h_t = crd(f_s, f_t, index, generator=torch.Generator().manual_seed(0))
    assert h_s.shape == h_t.shape == (3, 8, 1) and (h_s > 0).all() and (h_t > 0).all() and loss.item() > 0
    z = crd.z.clone()
    assert (z > 0).all()
    v_s = torch.nn.functional.normalize(crd.embed_s(f_s), dim=1).detach()
    expected = torch.nn.functional.normalize(0.5 * old_s[index] + 0.5 * v_s, dim=1)
    assert torch.allclose(crd.memory_s[index], expected, atol=1e-6)
    assert torch.allclose(crd.memory_s[index].norm(dim=1), torch.ones(3), atol=1e-6)
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(crd.memory_s[untouched], old_s[untouched])
    assert torch.equal(crd.memory_t[untouched], old_t[untouched])
    assert not crd.memory_s.requires_grad and not crd.memory_t.requires_grad
    # the teacher-anchor term trains W_t and gives the student nothing; the teacher's features get no gradient
    crd.zero_grad()
    _, _, h_t2 = crd(f_s, f_t, index)
    nce_loss(h_t2, 20).backward()
    assert f_s.grad is None and f_t.grad is None
    assert crd.embed_t.weight.grad.abs().sum() > 0 and crd.embed_s.weight.grad is None
    assert torch.equal(crd.z, z)  # Z is set on the first call only
    with pytest.raises(IndexError):
        crd(f_s, f_t, torch.tensor([0, 1, 20]))


def test_methods_that_cannot_run_on_the_data_are_refused_when_named_and_left_out_of_all(tmp_path):
    """dkd on 2 classes: named, one sentence before anything trains; brought in by `all`, left out with a note."""
    from run_fixtures import tiny_pad_manifest

    from mmhal.config import load_config
    from mmhal.data.base import load_dataset
    from mmhal.engine.run import applicable_methods, resolve_methods

    cfg = load_config(None, [f"data.name={tiny_pad_manifest(tmp_path / 'pad', n=24)}", "student=[rgb]", "model.width=4"])
    data = load_dataset(cfg.data)
    notes = []
    cfg.methods = ["all"]
    train, report = applicable_methods(cfg, data, ["rgb"], *resolve_methods(cfg.methods), notes.append)
    assert "dkd" not in train and "dkd" not in report and "kd" in train and "mmh-ensemble" in report
    assert len(notes) == 1 and "dkd" in notes[0]
    cfg.methods = ["unimodal", "dkd"]
    with pytest.raises(UserError, match="dkd"):
        applicable_methods(cfg, data, ["rgb"], *resolve_methods(cfg.methods), notes.append)


def test_crd_is_sized_from_the_train_split_and_draws_negatives_of_other_classes_only():
    student, teacher = _nets()
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 20 + [3] * 40)  # N = 100; fewest others: class 3's 60
    cfg = DistillConfig()
    method = build_method("crd", student, teacher, cfg, labels)
    assert method.crd.memory_s.shape == method.crd.memory_t.shape == (100, cfg.crd.dim)
    assert method.crd.num_samples == 100 and method.crd.k == 60  # 16384 capped at the smallest other-class count
    target = torch.tensor([0, 1, 2, 3, 3, 1])
    method.start_epoch(0, seed=7)
    neg = method.negatives(target)
    assert neg.shape == (6, 60) and int(neg.min()) >= 0 and int(neg.max()) < 100
    assert (labels[neg] != target.view(-1, 1)).all()
    assert len(set(neg[0].tolist())) > 30  # spread over class 0's 90 others, not a block
    method.start_epoch(0, seed=7)
    assert torch.equal(method.negatives(target), neg)  # the epoch's seed fixes the draw: exact resume
    method.start_epoch(1, seed=8)
    assert not torch.equal(method.negatives(target), neg)
    cfg.crd.k = 5
    assert build_method("crd", *_nets(), cfg, labels).crd.k == 5
    with pytest.raises(UserError, match="at least 2 classes"):
        build_method("crd", *_nets(), cfg, torch.zeros(10, dtype=torch.long))
    with pytest.raises(TypeError, match="index="):
        method(*_batch())
    with pytest.raises(ValueError, match="train_labels"):
        build_method("crd", *_nets(), cfg)


def test_crd_scores_of_the_whole_memory_equal_the_gathered_rows():
    from mmhal.distill.crd import CRDLoss

    torch.manual_seed(1)
    crd = CRDLoss(6, 5, num_samples=200, dim=8, k=7)
    v = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    idx = torch.randint(0, 100, (3, 8))
    gathered = crd.scores(v, crd.memory_t, idx)  # 16 * 8 < 200: gathers B (K + 1) rows
    crd.num_samples = 100  # now 16 (K + 1) >= N: one product with the whole bank, then the K + 1 columns
    whole = crd.scores(v, crd.memory_t, idx)
    assert gathered.shape == whole.shape == (3, 8, 1)
    torch.testing.assert_close(whole, gathered, rtol=1e-5, atol=0)


def test_crd_loss_is_positive_even_when_the_student_equals_the_teacher():
    method = _identity_method("crd")
    x, y = _batch()
    with torch.no_grad():
        _, losses = _call(method, x, y)
    assert losses["crd"].item() > 0 and torch.isfinite(losses["crd"])


def test_crd_loss_from_the_draws_counts_equals_the_gathered_scores_in_value_gradient_z_and_banks():
    """The whole-bank path (``_WholeBankNCE``: the K negatives as counts, its gradient formed in the forward)
    gives the value, the gradients, Z and the bank updates of the gathered (B, K + 1) scores through autograd,
    also with repeated negatives and a sample drawn as its own negative."""
    from mmhal.distill.crd import CRDLoss

    torch.manual_seed(4)
    a, b = CRDLoss(6, 5, num_samples=12, dim=4, k=9), CRDLoss(6, 5, num_samples=12, dim=4, k=9)
    b.load_state_dict(a.state_dict())
    index = torch.tensor([2, 5, 11])
    neg = torch.randint(0, 12, (3, 9))
    neg[0, :3] = 7  # repeated
    neg[1, 4] = 5  # the sample itself
    f_s, f_t = torch.randn(3, 6), torch.randn(3, 5)
    for step in range(2):  # the first call sets Z, the second uses it
        lg, _, _ = a(f_s, f_t, index, contrast_index=torch.cat([index.view(-1, 1), neg], 1), scores=True)
        lc, hs, ht = b(f_s, f_t, index, negatives=neg, scores=False)  # 16 (K + 1) >= N: the counted path
        assert hs is None and ht is None
        a.zero_grad()
        b.zero_grad()
        lg.backward()
        lc.backward()
        assert lc.item() == pytest.approx(lg.item(), rel=1e-5)
        torch.testing.assert_close(b.z, a.z, rtol=1e-5, atol=0)
        for name in ("embed_s.weight", "embed_s.bias", "embed_t.weight", "embed_t.bias"):
            torch.testing.assert_close(b.get_parameter(name).grad, a.get_parameter(name).grad, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(b.memory_s, a.memory_s)
        torch.testing.assert_close(b.memory_t, a.memory_t)

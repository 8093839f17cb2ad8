import math

import pytest
import torch
from torch import nn

from mmhal.config import DistillConfig
from mmhal.distill import METHODS, rad_loss, region_weights
from mmhal.models import MultimodalNet, num_regions, region_pool

SPEC = {"acc": (3, 64), "gyro": (3, 64)}


def _pair(seed=0):
    torch.manual_seed(seed)
    teacher = MultimodalNet(SPEC, ["acc", "gyro"], 4, width=4)
    student = MultimodalNet(SPEC, ["gyro"], 4, width=4)
    # random normalisation-free weights; perturb BN affine so every parameter matters
    return teacher, student


def _batch(b=6):
    torch.manual_seed(1)
    return {m: torch.randn(b, *s) for m, s in SPEC.items()}, torch.randint(0, 4, (b,))


def test_region_counts_are_7_in_1d_and_21_in_2d():
    assert num_regions(1, [4, 2, 1]) == 7
    assert num_regions(2, [4, 2, 1]) == 21
    assert num_regions(0, [4, 2, 1]) == 1
    assert region_pool(torch.randn(2, 5, 16), [4, 2, 1]).shape == (2, 7, 5)
    assert region_pool(torch.randn(2, 5, 7, 7), [4, 2, 1]).shape == (2, 21, 5)
    img = MultimodalNet({"rgb": (3, 28, 28)}, ["rgb"], 3, width=4)
    out = img({"rgb": torch.randn(2, 3, 28, 28)})
    assert img.region_logits(out.fmap, [4, 2, 1]).shape == (2, 21, 3)


def test_region_pool_is_the_mean_of_each_region():
    fmap = torch.arange(8.0).view(1, 1, 8)
    r = region_pool(fmap, [4, 2, 1])[0, :, 0]
    expected = [0.5, 2.5, 4.5, 6.5, 1.5, 5.5, 3.5]
    assert torch.allclose(r, torch.tensor(expected))


@pytest.mark.parametrize("weighting", ["uniform", "attention", "confidence"])
def test_rad_gradient_reaches_every_student_parameter_and_no_teacher_parameter(weighting):
    teacher, student = _pair()
    x, y = _batch()
    cfg = DistillConfig(rad_weighting=weighting, rad_lambda=1.0)
    method = METHODS.get("rad")(student, teacher, cfg)
    method.train()
    t_out = teacher(x)
    s_out = student(x)
    loss, _, _ = rad_loss(student, s_out.fmap, teacher, t_out.fmap, y, 2.0, weighting, [4, 2, 1])
    loss.backward()
    for name, p in student.named_parameters():
        assert p.grad is not None, f"no RAD gradient reaches student parameter {name}"
        assert p.grad.abs().sum() > 0, f"zero RAD gradient at student parameter {name}"
    for name, p in teacher.named_parameters():
        assert p.grad is None, f"teacher parameter {name} got a gradient"
        assert not p.requires_grad


def test_rad_equals_hand_computed_per_region_kl():
    # Tiny example: C=2 features, L=4 positions, levels (2, 1) -> 3 regions, 3 classes, T=2, uniform weights.
    head_t = nn.Linear(2, 3)
    head_s = nn.Linear(2, 3)
    with torch.no_grad():
        head_t.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        head_t.bias.zero_()
        head_s.weight.copy_(torch.tensor([[0.5, 0.5], [-1.0, 1.0], [0.0, 2.0]]))
        head_s.bias.copy_(torch.tensor([0.1, 0.0, -0.1]))

    class Net:
        def __init__(self, head):
            self.head = head

        def region_logits(self, fmap, levels, **how):
            return MultimodalNet.region_logits(self, fmap, levels, **how)

    ft = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 1.0, 2.0]]])
    fs = torch.tensor([[[0.5, 0.0, 1.0, 3.0], [1.0, 1.0, -2.0, 0.0]]])

    def mean(v, a, b):
        return sum(v[a:b]) / (b - a)

    def regions(f):
        rows = f[0].tolist()
        spans = [(0, 2), (2, 4), (0, 4)]
        return [[mean(rows[c], a, b) for c in range(2)] for a, b in spans]

    def logits(head, v):
        w, bias = head.weight.tolist(), head.bias.tolist()
        return [sum(w[k][c] * v[c] for c in range(2)) + bias[k] for k in range(3)]

    def softmax(z, t):
        e = [math.exp(zz / t) for zz in z]
        return [ee / sum(e) for ee in e]

    t = 2.0
    per_region = []
    for vt, vs in zip(regions(ft), regions(fs)):
        pt, ps = softmax(logits(head_t, vt), t), softmax(logits(head_s, vs), t)
        per_region.append(t * t * sum(a * math.log(a / b) for a, b in zip(pt, ps)))
    expected = sum(per_region) / 3
    with torch.no_grad():
        loss, l, w = rad_loss(Net(head_s), fs, Net(head_t), ft, torch.tensor([0]), t, "uniform", [2, 1])
    assert torch.allclose(l[0], torch.tensor(per_region), atol=1e-6)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("weighting", ["uniform", "attention", "confidence"])
def test_every_region_weighting_sums_to_one(weighting):
    torch.manual_seed(0)
    losses = torch.rand(5, 7)
    target = torch.randint(0, 4, (5,))
    t_logits = torch.randn(5, 7, 4)
    t_logits[:, 0, :] = 0.0
    t_logits[torch.arange(5), 0, target] = 5.0  # region 0 of every sample right: no all-wrong sample here
    w = region_weights(losses, t_logits, target, weighting)
    assert w.shape == (5, 7)
    assert torch.all(w >= 0)
    assert torch.allclose(w.sum(1), torch.ones(5), atol=1e-6)


def test_attention_weighting_matches_softmax_l_lT_times_l():
    torch.manual_seed(0)
    l = torch.rand(3, 7)
    w = region_weights(l, torch.zeros(3, 7, 2), torch.zeros(3, dtype=torch.long), "attention")
    for b in range(3):
        att = torch.softmax(torch.outer(l[b], l[b]), dim=1)
        assert torch.allclose((att @ l[b]).sum() / 7, (w[b] * l[b]).sum(), atol=1e-6)


def test_confidence_weighting_gives_regions_where_the_teacher_is_wrong_almost_no_weight():
    t_logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [2.0, 0.0]]])  # regions 0, 2 say class 0; region 1 says 1
    w = region_weights(torch.ones(1, 3), t_logits, torch.tensor([0]), "confidence")
    assert w[0, 1] < 1e-5
    assert w[0, 0] > w[0, 2] > 0.3


def test_confidence_weighting_gives_a_sample_whose_teacher_is_wrong_in_every_region_no_weight():
    t_logits = torch.tensor([[[0.0, 5.0], [0.0, 2.0], [1.0, 3.0]],   # sample 0: every region says 1, truth 0
                             [[5.0, 0.0], [0.0, 5.0], [2.0, 0.0]]])  # sample 1: regions 0 and 2 right
    w = region_weights(torch.ones(2, 3), t_logits, torch.tensor([0, 0]), "confidence")
    assert torch.equal(w[0], torch.zeros(3))  # not renormalised back to uniform weights
    assert w[1].sum().item() == pytest.approx(1.0)

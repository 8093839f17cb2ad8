import pytest
import torch

from mmhal.config import DistillConfig
from mmhal.distill import METHODS
from mmhal.models import MultimodalNet


def test_teacher_stems_of_two_modalities_share_no_parameter_tensor():
    spec = {"depth": (1, 28, 28), "ir": (1, 28, 28), "rgb": (3, 28, 28)}
    net = MultimodalNet(spec, list(spec), 2, width=4)
    ptrs = {m: {p.data_ptr() for p in net.stems[m].parameters()} for m in spec}
    for a in spec:
        assert ptrs[a], f"stem {a} has no parameters"
        for b in spec:
            if a < b:
                assert not (ptrs[a] & ptrs[b]), f"stems {a} and {b} share a parameter tensor"
    # and changing one stem's weights leaves the other's untouched
    with torch.no_grad():
        next(net.stems["depth"].parameters()).add_(1.0)
    assert not torch.equal(next(net.stems["depth"].parameters()), next(net.stems["ir"].parameters()))


@pytest.mark.parametrize("hw", [3, 28, 112])
def test_image_stems_adapt_to_the_input_size(hw):
    spec = {"rgb": (3, hw, hw), "depth": (1, hw, hw)}
    teacher = MultimodalNet(spec, ["rgb", "depth"], 2, width=4)
    student = MultimodalNet(spec, ["rgb"], 2, width=4)
    x = {m: torch.randn(2, *s) for m, s in spec.items()}
    t, s = teacher(x), student(x)
    assert t.logits.shape == (2, 2)
    for ft, fs in zip(t.features, s.features):
        assert ft.shape == fs.shape
    assert min(t.fmap.shape[2:]) >= 1


def test_teacher_and_student_features_align_for_every_input_kind():
    spec = {"v": (10,), "s": (2, 50), "i": (1, 16, 16), "c": (2, 4, 16, 16)}
    x = {m: torch.randn(3, *sh) for m, sh in spec.items()}
    teacher = MultimodalNet(spec, list(spec), 3, width=4)
    for m in spec:
        student = MultimodalNet(spec, [m], 3, width=4)
        for ft, fs in zip(teacher(x).features, student(x).features):
            assert ft.shape == fs.shape


def test_normalisation_statistics_live_in_the_state_dict():
    net = MultimodalNet({"acc": (3, 32)}, ["acc"], 2, width=4)
    net.set_normalization({"acc": (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.0]))})
    sd = net.state_dict()
    assert torch.equal(sd["norms.acc.mean"], torch.tensor([1.0, 2.0, 3.0]))
    other = MultimodalNet({"acc": (3, 32)}, ["acc"], 2, width=4)
    other.load_state_dict(sd)
    assert torch.equal(other.norms["acc"].std, torch.tensor([2.0, 2.0, 2.0]))


def test_methods_keep_the_teacher_frozen_in_eval_mode():
    spec = {"a": (2, 32), "b": (2, 32)}
    teacher = MultimodalNet(spec, ["a", "b"], 3, width=4)
    student = MultimodalNet(spec, ["a"], 3, width=4)
    for name in ("kd", "rad", "dad", "mmh"):
        method = METHODS.get(name)(student, teacher, DistillConfig())
        method.train()
        assert not teacher.training and student.training
        assert all(not p.requires_grad for p in teacher.parameters())
        names = {n for n, _ in method.named_parameters()}
        assert names and all(n.startswith("student.") for n in names)
        x = {m: torch.randn(4, *s) for m, s in spec.items()}
        logits, losses = method(x, torch.tensor([0, 1, 2, 0]))
        assert logits.shape == (4, 3)
        assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())


def test_kd_loss_vanishes_when_the_student_matches_the_teacher():
    from mmhal.distill import kl_at_temperature

    z = torch.randn(5, 4)
    assert torch.allclose(kl_at_temperature(z, z.clone(), 2.0), torch.zeros(5), atol=1e-6)
    assert torch.all(kl_at_temperature(z, torch.randn(5, 4), 2.0) > 0)


def test_the_small_network_takes_dropout_before_its_head():
    from mmhal.config import ModelConfig
    from mmhal.models.network import build_network

    spec = {"v": (6,), "s": (2, 16)}
    net = build_network(spec, ["v", "s"], 3, ModelConfig(width=4, dropout=0.5))
    plain = build_network(spec, ["v", "s"], 3, ModelConfig(width=4))
    assert isinstance(net.drop, torch.nn.Dropout) and net.drop.p == 0.5
    assert isinstance(plain.drop, torch.nn.Identity)
    assert set(net.state_dict()) == set(plain.state_dict())  # no parameter of its own: checkpoints stay alike
    x = {"v": torch.randn(8, 6), "s": torch.randn(8, 2, 16)}
    net.eval()
    out = net(x)
    assert torch.equal(out.logits, net(x).logits)  # eval: no dropout
    assert torch.equal(out.logits, net.head(out.embedding))  # the embedding itself is not dropped
    net.train()
    torch.manual_seed(0)
    assert not torch.equal(net(x).logits, net.head(net(x).embedding))


def test_a_network_of_vectors_only_is_a_wide_shallow_mlp_and_a_vector_beside_a_sequence_keeps_its_stem():
    """Every modality a vector: per modality Linear(D, 8w)-BN-ReLU, concatenated, Linear(8w M, 8w)-BN-ReLU (f3, f4),
    model.blocks - 1 residual blocks, the head; no squeeze-excitation (SCIENCE.md §7)."""
    from torch import nn

    from mmhal.distill.fitnet import f3_channels
    from mmhal.models.layers import ResBlock

    w = 3
    spec = {"a": (7,), "b": (5,)}
    teacher, student = MultimodalNet(spec, ["a", "b"], 4, width=w), MultimodalNet(spec, ["b"], 4, width=w)
    for net in (teacher, student):
        assert isinstance(net.se, nn.Identity) and not any(isinstance(m, ResBlock) for m in net.modules())
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        assert [tuple(m.weight.shape) for m in linears] == (
            [(8 * w, 7), (8 * w, 5), (8 * w, 16 * w), (4, 8 * w)] if net is teacher else [(8 * w, 5), (8 * w, 8 * w), (4, 8 * w)])
        out = net.eval()({"a": torch.randn(6, 7), "b": torch.randn(6, 5)})
        assert [tuple(f.shape) for f in out.features] == [(6, 8 * w), (6, 8 * w)] and tuple(out.logits.shape) == (6, 4)
        assert f3_channels(net) == 8 * w  # FitNet's regressor finds the width
    deeper = MultimodalNet(spec, ["b"], 4, width=w, blocks=3)
    assert sum(isinstance(m, ResBlock) for m in deeper.stage4) == 2
    # a vector beside a sequence: the trunk is 1-D and the vector keeps the residual stem of width 2w
    mixed = MultimodalNet({"v": (7,), "s": (2, 40)}, ["v", "s"], 4, width=w)
    assert any(isinstance(m, ResBlock) for m in mixed.stems["v"].modules())
    assert not isinstance(mixed.se, nn.Identity)
    assert mixed({"v": torch.randn(2, 7), "s": torch.randn(2, 2, 40)}).logits.shape == (2, 4)


def test_region_pool_meanmax_gives_each_region_its_mean_then_its_maximum():
    from mmhal.models.pyramid import region_pool

    fmap = torch.tensor([[[1.0, 3.0, 2.0, 8.0]]])  # (B=1, C=1, L=4)
    mean = region_pool(fmap, [2, 1])
    assert mean.tolist() == [[[2.0], [5.0], [3.5]]]
    both = region_pool(fmap, [2, 1], stat="meanmax")
    assert both.tolist() == [[[2.0, 3.0], [5.0, 8.0], [3.5, 8.0]]]
    # from the finest level: the 1x1 region's maximum is the maximum of the 2 regions' maxima (the same here)
    assert region_pool(fmap, [2, 1], from_finest=True, stat="meanmax").tolist() == both.tolist()
    with pytest.raises(ValueError, match="unknown region statistic"):
        region_pool(fmap, [2, 1], stat="median")


def test_model_pool_meanmax_concatenates_the_mean_and_the_maximum_of_f4_and_auto_picks_it_for_sequences():
    from mmhal.config import ModelConfig
    from mmhal.models.network import build_network

    torch.manual_seed(0)
    seq = {"a": (3, 32), "b": (2, 32)}
    net = build_network(seq, ["a"], 4, ModelConfig(width=4, pool="meanmax")).eval()
    out = net({"a": torch.randn(5, 3, 32)})
    f4 = out.features[-1].flatten(2)
    assert torch.equal(out.embedding, torch.cat([f4.mean(-1), f4.amax(-1)], dim=1))
    assert net.head.in_features == 2 * f4.shape[1] and torch.allclose(out.logits, net.head(out.embedding))
    # each RAD region through the same head: the 1-region level is the whole map, so its logits are the network's
    regions = net.region_logits(out.fmap, [1])
    assert torch.allclose(regions[:, 0], out.logits, atol=1e-6)
    assert build_network(seq, ["a"], 4, ModelConfig(width=4, pool="auto")).pool == "meanmax"
    assert build_network(seq, ["a"], 4, ModelConfig(width=4, pool="mean")).pool == "mean"
    assert build_network({"i": (1, 8, 8)}, ["i"], 4, ModelConfig(width=4, pool="auto")).pool == "mean"
    assert build_network({"v": (6,)}, ["v"], 4, ModelConfig(width=4, pool="meanmax")).pool == "mean"  # no map


def test_model_pool_is_checked():
    from mmhal.config import load_config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match="model.pool must be auto, mean or meanmax, got 'max'"):
        load_config(None, ["model.pool=max"])
    with pytest.raises(UserError, match="model.pool=meanmax applies only to model.backbone=small"):
        load_config(None, ["model.pool=meanmax", "model.backbone=resnet18"])


def test_a_saved_network_without_the_pool_setting_is_rebuilt_as_it_was_saved(tmp_path):
    from dataclasses import asdict

    from mmhal.config import ModelConfig
    from mmhal.engine.artifacts import build_saved_network
    from mmhal.models.network import build_network

    shapes = {"a": (3, 32)}
    net = build_network(shapes, ["a"], 4, ModelConfig(width=4, pool="mean"))
    model_config = {k: v for k, v in asdict(ModelConfig(width=4)).items() if k != "pool"}  # a file from before
    ckpt = {"model_config": model_config, "shapes": shapes, "modalities": ["a"], "num_classes": 4,
            "model": net.state_dict()}
    assert build_saved_network(ckpt).pool == "mean"

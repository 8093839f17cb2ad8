import hashlib

import pytest
import torch
import torchvision

from mmhal.config import ModelConfig, RunConfig, validate
from mmhal.errors import UserError
from mmhal.models import MultimodalNet, build_network, param_groups
from mmhal.models.resnet import ResNet18Net, SEBasicBlock, load_pretrained

FACE = {"rgb": (3, 112, 112), "depth": (1, 112, 112), "ir": (1, 112, 112)}
SMALL = {"rgb": (3, 32, 32), "depth": (1, 32, 32), "ir": (1, 32, 32)}


def r18(**kw) -> ModelConfig:
    return ModelConfig(backbone="resnet18", **kw)


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """A torchvision resnet18 state dict with random (seeded) values, saved as torchvision would ship it."""
    torch.manual_seed(123)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    for v in sd.values():
        if v.is_floating_point():
            v.normal_()  # BN weights etc. differ from their init, so a copy is visible
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(sd, path)
    return path, sd


def test_teacher_and_student_features_align_at_112():
    teacher = build_network(FACE, list(FACE), 2, r18())
    student = build_network(FACE, ["rgb"], 2, r18())
    x = {m: torch.randn(2, *s) for m, s in FACE.items()}
    with torch.no_grad():
        t, s = teacher(x), student(x)
    assert [tuple(f.shape) for f in t.features] == [(2, 256, 7, 7), (2, 512, 4, 4)]
    assert [f.shape for f in s.features] == [f.shape for f in t.features]
    assert t.embedding.shape == s.embedding.shape == (2, 512)
    assert t.logits.shape == s.logits.shape == (2, 2)
    assert teacher.head.in_features == 512 and teacher.dims == 2 and teacher.grid == (14, 14)
    assert s.fmap is s.features[-1]
    assert student.region_logits(s.fmap, [4, 2, 1]).shape == (2, 21, 2)


def test_stem_keys_are_torchvision_names_and_normalisation_is_in_the_state_dict():
    net = build_network(SMALL, ["depth", "rgb"], 3, r18())
    ref = [k for k in torchvision.models.resnet18(weights=None).state_dict() if k.split(".")[0] in
           ("conv1", "bn1", "layer1", "layer2")]
    sd = net.state_dict()
    for m in ("depth", "rgb"):
        assert [k[len(f"stems.{m}."):] for k in sd if k.startswith(f"stems.{m}.")] == ref
    assert [k for k in sd if k.startswith("layer")] == [
        k for k in torchvision.models.resnet18(weights=None).state_dict() if k.split(".")[0] in ("layer3", "layer4")
    ]
    assert sd["stems.depth.conv1.weight"].shape == (64, 1, 7, 7)
    net.set_normalization({"depth": ([0.5], [2.0]), "rgb": ([0.1, 0.2, 0.3], [1.0, 1.0, 2.0])})
    assert torch.equal(net.state_dict()["norms.depth.std"], torch.tensor([2.0]))
    # stems of different modalities share no parameter
    a = {p.data_ptr() for p in net.stems["depth"].parameters()}
    assert not a & {p.data_ptr() for p in net.stems["rgb"].parameters()}


def test_loading_weights_maps_stems_and_trunk(fake_weights):
    path, ref = fake_weights
    net = build_network(SMALL, ["rgb", "depth", "ir"], 2, r18(weights=str(path), pretrained_lr_mult=0.1))
    sd = net.state_dict()
    torch.testing.assert_close(sd["stems.depth.conv1.weight"], ref["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(sd["stems.rgb.conv1.weight"], ref["conv1.weight"])
    for k in ("layer3.0.conv1.weight", "layer4.1.bn2.running_var", "layer3.0.downsample.0.weight"):
        torch.testing.assert_close(sd[k], ref[k])
    for m in ("rgb", "ir"):
        torch.testing.assert_close(sd[f"stems.{m}.layer2.1.bn1.weight"], ref["layer2.1.bn1.weight"])
    assert not torch.equal(sd["head.weight"][:, :2], ref["fc.weight"][:2, :2].T)
    # 3 stems x (conv1 + bn1 + layer1 + layer2) + layer3 + layer4, every tensor but fc (num_batches_tracked too)
    stem = sum(1 for k in ref if k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2"))
    trunk = sum(1 for k in ref if k.split(".")[0] in ("layer3", "layer4"))
    assert net.pretrained_loaded == 3 * stem + trunk

    # param_groups: lr * mult for exactly the loaded parameters, lr for the rest (fusion, head)
    groups = param_groups(net, 1e-2, 5e-4)
    assert len(groups) == 2 and groups[0]["lr"] == 1e-2 and groups[1]["lr"] == pytest.approx(1e-3)
    loaded = {id(p) for n, p in net.named_parameters() if n in net.pretrained_names}
    expected = {id(p) for n, p in net.named_parameters()
                if n.split(".")[0] in ("layer3", "layer4") or (n.startswith("stems.") and ".se." not in n)}
    assert loaded == expected == {id(p) for p in groups[1]["params"]}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.parameters()} - loaded
    # a module holding the network (as a distillation method holds the student) is split the same way
    holder = torch.nn.ModuleDict({"student": net, "extra": torch.nn.Linear(3, 3)})
    g2 = param_groups(holder, 1e-2, 0.0)
    assert {id(p) for p in g2[1]["params"]} == loaded and len(g2[0]["params"]) == len(groups[0]["params"]) + 2
    torch.optim.SGD(groups, lr=1e-2)  # usable as they are


def test_param_groups_without_pretrained_weights_is_one_group_in_parameter_order():
    for cfg in (ModelConfig(), r18(pretrained_lr_mult=0.1)):
        net = build_network(SMALL, ["rgb"], 2, cfg)
        groups = param_groups(net, 3e-3, 1e-4)
        assert len(groups) == 1 and groups[0]["lr"] == 3e-3 and groups[0]["weight_decay"] == 1e-4
        assert [id(p) for p in groups[0]["params"]] == [id(p) for p in net.parameters()]


def test_se_wraps_torchvision_blocks_and_still_loads(fake_weights):
    path, ref = fake_weights
    plain = build_network(SMALL, ["rgb"], 2, r18())
    se = build_network(SMALL, ["rgb"], 2, r18(se=True, weights=str(path)))
    assert not any(isinstance(m, SEBasicBlock) for m in plain.modules())
    blocks = [m for m in se.modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert len(blocks) == 8 and all(isinstance(b, SEBasicBlock) for b in blocks)
    extra = set(se.state_dict()) - set(plain.state_dict())
    assert extra and all(".se." in k for k in extra)
    torch.testing.assert_close(se.state_dict()["layer4.0.conv2.weight"], ref["layer4.0.conv2.weight"])
    assert not any(".se." in n for n in se.pretrained_names)
    x = {"rgb": torch.randn(2, 3, 32, 32)}
    assert se(x).logits.shape == (2, 2)


def test_weights_checks(fake_weights, tmp_path):
    path, ref = fake_weights
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    net = build_network(SMALL, ["rgb"], 2, r18(weights=str(path), weights_sha256=good.upper()))
    assert net.pretrained_loaded > 0
    with pytest.raises(UserError, match="SHA-256"):
        build_network(SMALL, ["rgb"], 2, r18(weights=str(path), weights_sha256="0" * 64))
    with pytest.raises(UserError, match="no file"):
        build_network(SMALL, ["rgb"], 2, r18(weights=str(tmp_path / "absent.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        build_network(SMALL, ["rgb"], 2, r18(weights=str(junk)))
    other = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), other)
    with pytest.raises(UserError, match="not a torchvision resnet18"):
        build_network(SMALL, ["rgb"], 2, r18(weights=str(other)))
    # an older file without num_batches_tracked and with another fc still loads
    old = tmp_path / "old.pth"
    sd = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(10, 512), torch.zeros(10)
    torch.save(sd, old)
    assert load_pretrained(ResNet18Net(SMALL, ["rgb"], 2), str(old)) > 0


def test_conv1_for_other_channel_counts_is_the_average_repeated(fake_weights):
    path, ref = fake_weights
    spec = {"ms": (5, 32, 32)}
    net = build_network(spec, ["ms"], 2, r18(weights=str(path)))
    w = net.stems["ms"].conv1.weight
    assert w.shape == (64, 5, 7, 7)
    torch.testing.assert_close(w.sum(dim=1), ref["conv1.weight"].sum(dim=1))
    torch.testing.assert_close(w[:, 0], w[:, 4])


def test_non_image_inputs_and_unknown_settings_are_user_errors():
    with pytest.raises(UserError, match="backbone=small"):
        build_network({"acc": (3, 64), "rgb": (3, 32, 32)}, ["acc"], 2, r18())
    with pytest.raises(UserError, match="apply only to model.backbone=resnet18"):
        build_network(SMALL, ["rgb"], 2, ModelConfig(se=True))
    with pytest.raises(UserError, match="unknown backbone"):
        build_network(SMALL, ["rgb"], 2, ModelConfig(backbone="vgg"))
    for key, value in (("backbone", "vgg"), ("dropout", 1.0), ("pretrained_lr_mult", 0.0),
                       ("weights_sha256", "abc")):
        cfg = RunConfig()
        setattr(cfg.model, key, value)
        with pytest.raises(UserError, match=f"model.{key}"):
            validate(cfg)
    validate(RunConfig(model=r18(dropout=0.5, weights="x.pth", weights_sha256="a" * 64)))


def test_dropout_only_touches_the_training_logits():
    net = build_network(SMALL, ["rgb"], 2, r18(dropout=0.5))
    x = {"rgb": torch.randn(4, 3, 32, 32)}
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.logits, net.head(a.embedding))


def test_default_backbone_is_the_small_network_unchanged():
    spec = {"rgb": (3, 28, 28), "acc": (3, 32)}
    cfg = ModelConfig()
    assert cfg.backbone == "small"
    torch.manual_seed(0)
    built = build_network(spec, list(spec), 4, cfg)
    torch.manual_seed(0)
    direct = MultimodalNet(spec, list(spec), 4, width=cfg.width, blocks=cfg.blocks, se_reduction=cfg.se_reduction)
    a, b = built.state_dict(), direct.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = {m: torch.randn(2, *s) for m, s in spec.items()}
    built.eval(), direct.eval()
    torch.testing.assert_close(built(x).logits, direct(x).logits)


def test_the_tmm_face_backbone_is_the_authors_face_network():
    """FAITHFULNESS_AUDIT 1.1: one SE per stem after layer2 and none in the blocks, a 3x3 first convolution, the
    concatenated stems straight into layer3, dropout on the logits; the authors' RGB student measured 11,172,042
    parameters, layer3 7x7 and layer4 4x4 at 112x112."""
    from torch import nn as _nn

    from mmhal.config import ModelConfig
    from mmhal.errors import UserError
    from mmhal.models.layers import SqueezeExcite
    from mmhal.models.network import build_network

    spec = {"rgb": (3, 112, 112), "depth": (1, 112, 112), "ir": (1, 112, 112)}
    cfg = ModelConfig(backbone="tmm-face", dropout=0.5)
    student, teacher = build_network(spec, ["rgb"], 2, cfg), build_network(spec, ["rgb", "depth", "ir"], 2, cfg)
    assert sum(p.numel() for p in student.parameters()) == 11_172_042
    for net, m in ((student, 1), (teacher, 3)):
        ses = [n for n, mod in net.named_modules() if isinstance(mod, SqueezeExcite)]
        assert ses == [f"stems.{k}.se" for k in net.modalities]
        assert all(net.stems[k].conv1.kernel_size == (3, 3) for k in net.modalities)
        assert net.layer3[0].conv1.in_channels == 128 * m
        assert not any(isinstance(mod, _nn.Dropout) for mod in net.modules())  # dropout is on the logits
    x = {k: torch.randn(4, *s) for k, s in spec.items()}
    out = student.eval()(x)
    assert [tuple(f.shape[1:]) for f in out.features] == [(256, 7, 7), (512, 4, 4)]
    assert torch.allclose(out.logits, student.head(out.embedding))
    torch.manual_seed(0)
    train_out = student.train()(x)
    zeros = train_out.logits == 0
    assert zeros.any() and not (train_out.embedding == 0).all(dim=1).any()  # logits dropped, not the feature
    assert torch.allclose(train_out.logits[~zeros], 2 * student.head(train_out.embedding)[~zeros], atol=1e-5)
    with pytest.raises(UserError, match="do not apply to model.backbone=tmm-face"):
        build_network(spec, ["rgb"], 2, ModelConfig(backbone="tmm-face", se=True))

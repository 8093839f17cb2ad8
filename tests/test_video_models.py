"""The 3D video backbones (``models.video``: r3d18, r2plus1d18) and the late-fusion teacher, on tiny clips."""
import pytest
import torch
import torchvision

from mmhal.config import ModelConfig
from mmhal.distill.rad import rad_loss
from mmhal.errors import UserError
from mmhal.models import build_network, param_groups, region_pool
from mmhal.models.video import (
    LateFusionNet,
    VideoNet,
    adapt_input_conv,
    build_late_fusion,
    reference_shapes,
)

ARCHS = ["r3d18", "r2plus1d18"]
CLIP = {"rgb": (3, 8, 32, 32), "depth": (1, 8, 32, 32), "flow": (2, 8, 32, 32)}
TV = {"r3d18": torchvision.models.video.r3d_18, "r2plus1d18": torchvision.models.video.r2plus1d_18}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(arch, modalities, spec=CLIP, classes=5, **kw) -> VideoNet:
    torch.manual_seed(0)
    return VideoNet(spec, modalities, classes, arch=arch, width=8, **kw)


def clips(spec=CLIP, b=2):
    g = torch.Generator().manual_seed(1)
    return {m: torch.randn(b, *s, generator=g) for m, s in spec.items()}


@pytest.fixture(scope="module")
def fake_r3d(tmp_path_factory):
    """torchvision r3d_18(weights=None) with seeded random values in every float tensor, saved as a state dict."""
    torch.manual_seed(321)
    sd = torchvision.models.video.r3d_18(weights=None).state_dict()
    for v in sd.values():
        if v.is_floating_point():
            v.normal_()  # BN weights and statistics differ from their init, so a copy is visible
    path = tmp_path_factory.mktemp("w") / "r3d_18.pth"
    torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_teacher_student_grids_agree(arch):
    teacher, student = tiny(arch, ["rgb", "depth"]), tiny(arch, ["rgb"])
    x = clips()
    with torch.no_grad():
        t, s = teacher.eval()(x), student.eval()(x)
    # 8x32x32 -> stems 4x8x8 -> f3 2x4x4 -> f4 1x2x2; width 8: stems 16, f3 32, f4 64 channels
    assert teacher.grid == student.grid == (4, 8, 8)
    assert [tuple(f.shape) for f in t.features] == [(2, 32, 2, 4, 4), (2, 64, 1, 2, 2)]
    assert [f.shape for f in s.features] == [f.shape for f in t.features]
    assert t.logits.shape == s.logits.shape == (2, 5)
    assert t.embedding.shape == s.embedding.shape == (2, 64)
    torch.testing.assert_close(s.embedding, s.fmap.mean(dim=(2, 3, 4)))
    assert s.fmap is s.features[-1] and student.dims == 3


@pytest.mark.parametrize("arch", ARCHS)
def test_time_is_kept_in_the_stems_and_trunk(arch):
    net = tiny(arch, ["rgb"])
    x = clips()
    z = net.stems["rgb"](x["rgb"])
    assert tuple(z.shape[2:]) == (4, 8, 8)  # T = 8 -> 4 (layer2 strides time once), not averaged away
    f3 = net(x).features[0]
    assert f3.dim() == 5 and f3.shape[2] == 2
    with torch.no_grad():
        a = net.eval()(x).features[0]
        assert not torch.allclose(a[:, :, 0], a[:, :, 1])  # the two time steps carry different features
        # locality in time: changing only the last 8 of 32 frames leaves the stem's first time step unchanged
        # (its receptive field ends near frame 12) and changes its last one; averaging time would change both
        long = torch.randn(1, 3, 32, 16, 16)
        late = long.clone()
        late[:, :, 24:] = torch.randn(1, 3, 8, 16, 16)
        z, z2 = net.stems["rgb"](long), net.stems["rgb"](late)
    assert z.shape[2] == 16
    torch.testing.assert_close(z[:, :, 0], z2[:, :, 0])
    assert not torch.allclose(z[:, :, -1], z2[:, :, -1])


@pytest.mark.parametrize("arch", ARCHS)
def test_depth_and_flow_stems_take_their_channel_counts(arch):
    net = tiny(arch, ["rgb", "depth", "flow"])
    assert [net.stems[m].stem[0].in_channels for m in ("rgb", "depth", "flow")] == [3, 1, 2]
    out = net(clips())
    assert out.logits.shape == (2, 5) and torch.isfinite(out.logits).all()
    student = tiny(arch, ["flow"])
    assert student(clips()).fmap.shape == out.fmap.shape


def test_stem_and_trunk_names_are_torchvision_names():
    for arch in ARCHS:
        with torch.device("meta"):
            net = VideoNet(CLIP, ["depth", "rgb"], 7, arch=arch)
        ref = reference_shapes(arch)
        sd = net.state_dict()
        stem_ref = [k for k in ref if k.split(".")[0] in ("stem", "layer1", "layer2")]
        for m in ("depth", "rgb"):
            assert [k[len(f"stems.{m}."):] for k in sd if k.startswith(f"stems.{m}.")] == stem_ref
        assert [k for k in sd if k.startswith("layer")] == [k for k in ref if k.split(".")[0] in ("layer3", "layer4")]
        assert all(tuple(sd[f"stems.rgb.{k}"].shape) == tuple(ref[k]) for k in stem_ref)
        assert tuple(sd["stems.depth.stem.0.weight"].shape[:2]) == (ref["stem.0.weight"][0], 1)


def test_local_weights_load_into_stems_and_trunk_and_not_fc(fake_r3d):
    path, ref = fake_r3d
    cfg = ModelConfig(backbone="r3d18", weights=str(path), pretrained_lr_mult=0.1)
    net = build_network(CLIP, ["rgb", "depth"], 4, cfg)
    sd = net.state_dict()
    torch.testing.assert_close(sd["stems.rgb.stem.0.weight"], ref["stem.0.weight"])
    torch.testing.assert_close(sd["stems.depth.stem.0.weight"], ref["stem.0.weight"].sum(dim=1, keepdim=True))
    for m in ("rgb", "depth"):
        key = "layer2.0.downsample.1.running_var"
        torch.testing.assert_close(sd[f"stems.{m}.{key}"], ref[key])
        torch.testing.assert_close(sd[f"stems.{m}.layer1.1.conv2.0.weight"], ref["layer1.1.conv2.0.weight"])
    for k in ("layer3.0.conv1.0.weight", "layer4.1.conv2.1.bias", "layer4.0.downsample.0.weight"):
        torch.testing.assert_close(sd[k], ref[k])
    # fc is not loaded: the head keeps its own init (Linear 512 -> 4) and no head/fusion name is pretrained
    assert not any(n.startswith(("head", "proj", "se.")) for n in net.pretrained_names)
    assert not torch.equal(sd["head.weight"], ref["fc.weight"][:4])
    stem = sum(1 for k in ref if k.split(".")[0] in ("stem", "layer1", "layer2"))
    trunk = sum(1 for k in ref if k.split(".")[0] in ("layer3", "layer4"))
    assert net.pretrained_loaded == 2 * stem + trunk
    pre = {id(p) for p in net.pretrained_parameters()}
    expect = [p for n, p in net.named_parameters() if n.startswith(("stems.", "layer3.", "layer4."))]
    assert pre == {id(p) for p in expect}
    groups = param_groups(net, lr=1.0, weight_decay=0.0)
    assert sorted(g["lr"] for g in groups) == [pytest.approx(0.1), 1.0]


def test_weights_checks_are_user_errors_of_one_sentence(fake_r3d, tmp_path):
    path = fake_r3d[0]
    with pytest.raises(UserError) as e:
        build_network(CLIP, ["rgb"], 2, ModelConfig(backbone="r3d18", weights=str(path), weights_sha256="0" * 64))
    msg = str(e.value)
    assert "SHA-256" in msg and "\n" not in msg and msg.count(". ") == 0
    # an r3d_18 file offered to r2plus1d18 is refused by name/shape, before anything is copied
    with pytest.raises(UserError, match="not a torchvision r2plus1d_18 state dict"):
        build_network(CLIP, ["rgb"], 2, ModelConfig(backbone="r2plus1d18", weights=str(path)))
    with pytest.raises(UserError, match="names no file"):
        build_network(CLIP, ["rgb"], 2, ModelConfig(backbone="r3d18", weights=str(tmp_path / "none.pth")))
    with pytest.raises(UserError, match="is for clips"):
        build_network({"rgb": (3, 32, 32)}, ["rgb"], 2, ModelConfig(backbone="r3d18"))


def test_adapt_input_conv_averages_rgb_and_repeats():
    w = torch.randn(4, 3, 3, 7, 7)
    assert adapt_input_conv(w, 3) is w
    two = adapt_input_conv(w, 2)
    assert two.shape == (4, 2, 3, 7, 7)
    torch.testing.assert_close(two[:, 0], w.sum(1) / 2)
    torch.testing.assert_close(two[:, 1], two[:, 0])
    # a C-channel clip of equal channels responds as the RGB kernel does to the grey clip
    g = torch.randn(1, 1, 3, 7, 7)
    torch.testing.assert_close((two * g).sum(dim=(1, 2, 3, 4)), (w * g).sum(dim=(1, 2, 3, 4)))


@pytest.mark.parametrize("arch", ARCHS)
def test_region_logits_pool_time_first_by_default(arch):
    spec = {"rgb": (3, 16, 32, 32), "depth": (1, 16, 32, 32)}
    net = tiny(arch, ["rgb"], spec=spec).eval()
    with torch.no_grad():
        f4 = net(clips(spec)).fmap
        assert f4.shape[2] == 2  # 16 frames keep two time steps in f4, so pooling time is not trivial
        r = net.region_logits(f4, [4, 2, 1])
        assert r.shape == (2, 21, 5) and net.region_dims == 2
        want = net.head(region_pool(f4.mean(dim=2), [4, 2, 1]))
        torch.testing.assert_close(r, want)
        assert not torch.allclose(r, net.head(region_pool(f4[:, :, 0], [4, 2, 1])), atol=1e-5)
        cubic = tiny(arch, ["rgb"], spec=spec, region_pool_time=False).eval()
        assert cubic.region_logits(f4, [4, 2, 1]).shape == (2, 64 + 8 + 1, 5) and cubic.region_dims == 3


@pytest.mark.parametrize("arch", ARCHS)
def test_backward_reaches_every_stem_and_rad_works(arch):
    teacher = tiny(arch, ["rgb", "depth", "flow"])
    x = clips()
    out = teacher(x)
    (out.logits.logsumexp(1).sum() + teacher.region_logits(out.fmap, [4, 2, 1]).square().mean()).backward()
    for m in ("rgb", "depth", "flow"):
        grads = [p.grad for p in teacher.stems[m].parameters()]
        assert all(g is not None for g in grads), m
        assert all(g.abs().sum() > 0 for g in grads), m
    student = tiny(arch, ["rgb"])
    teacher.eval()
    with torch.no_grad():
        t_out = teacher(x)
    loss, per_region, _ = rad_loss(student, student(x).fmap, teacher, t_out.fmap, torch.tensor([0, 1]),
                                   weighting="uniform")
    assert per_region.shape == (2, 21)
    loss.backward()
    assert all(p.grad is not None for p in student.stems["rgb"].parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_block_se_and_dropout(arch):
    net = tiny(arch, ["rgb"], se=True, dropout=0.5)
    assert sum(1 for n, _ in net.named_modules() if n.endswith(".se")) == 8  # 4 stages x 2 blocks
    out = net(clips())
    assert out.logits.shape == (2, 5)
    net.eval()
    with torch.no_grad():
        o = net(clips())
    torch.testing.assert_close(o.logits, net.head(o.embedding))


def test_late_fusion_teacher_averages_its_members():
    spec = {"rgb": (3, 8, 32, 32), "depth": (1, 8, 32, 32)}
    build = lambda s, mods, k, cfg: tiny("r3d18", mods, spec=s, classes=k)
    net = build_late_fusion(spec, ["rgb", "depth"], 5, ModelConfig(), build=build).eval()
    assert isinstance(net, LateFusionNet) and net.modalities == ["rgb", "depth"]
    x = clips(spec)
    with torch.no_grad():
        out = net(x)
        parts = [net.members[m](x) for m in ("rgb", "depth")]
        torch.testing.assert_close(out.logits, (parts[0].logits + parts[1].logits) / 2)
        torch.testing.assert_close(out.embedding, (parts[0].embedding + parts[1].embedding) / 2)
        torch.testing.assert_close(out.features[0], (parts[0].features[0] + parts[1].features[0]) / 2)
        assert out.fmap.shape[1] == 2 * parts[0].fmap.shape[1]
        r = net.region_logits(out.fmap, [4, 2, 1])
        want = (net.members["rgb"].region_logits(parts[0].fmap, [4, 2, 1])
                + net.members["depth"].region_logits(parts[1].fmap, [4, 2, 1])) / 2
        torch.testing.assert_close(r, want)
        assert r.shape == (2, 21, 5)
    assert net.head.in_features == 64 and net.head.out_features == 5
    net.set_normalization({"rgb": ([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]), "depth": ([0.5], [4.0])})
    assert torch.equal(net.members["depth"].norms["depth"].std, torch.tensor([4.0]))
    # the members' parameters are the network's, each once
    assert sum(p.numel() for p in net.parameters()) == sum(
        p.numel() for m in ("rgb", "depth") for p in net.members[m].parameters()
    )

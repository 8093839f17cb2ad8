"""Action clips (data.clips): frame indices per split (random, centre, evenly spaced, loop-padded), the RGB -> flow
index map, one geometric draw shared by every modality and frame, flow's x negated under a flip, photometric
jitter on RGB only, evaluation crops, and one-sentence errors for bad settings and empty videos."""
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from mmhal.data.clips import (
    ClipConfig,
    augment_clip,
    center_crop,
    center_indices,
    clip_geometry,
    clip_indices,
    clip_span,
    eval_views,
    flow_indices,
    negate_flow_x,
    spaced_indices,
    take_frames,
    three_crop,
    train_indices,
)
from mmhal.errors import DataError, UserError

H, W = 24, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _coords(t=6, h=H, w=W):
    """(T, H, W) grids of each pixel's column x, row y and frame t (float32)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ts = torch.arange(t, dtype=torch.float32).view(t, 1, 1)
    return xs.expand(t, h, w), ys.expand(t, h, w), ts.expand(t, h, w)


def _position_sample(t=6):
    """Modalities that are functions of pixel position and frame: rgb = (x + 1000 t, y, 7), depth = x + 100 y,
    flow = (x - 16, y - 12) (signed, float)."""
    x, y, tt = _coords(t)
    return {"rgb": torch.stack([x + 1000 * tt, y, torch.full_like(x, 7.0)]),
            "depth": (x + 100 * y)[None],
            "flow": torch.stack([x - 16, y - 12])}


# ------------------------------------------------------------------------------------------------- indices


def test_one_set_of_indices_serves_every_modality():
    n = 30
    stamps = torch.arange(n, dtype=torch.float32).view(1, n, 1, 1)
    video = {"rgb": stamps.expand(3, n, 4, 5), "depth": stamps.expand(1, n, 4, 5),
             "flow": stamps[:, : n - 1].expand(2, n - 1, 4, 5)}
    cfg = ClipConfig(length=8, stride=2, num_test_clips=4)
    for split in ("train", "val", "test"):
        rows = clip_indices(n, cfg, split, seed=1, epoch=2, index=3)
        assert rows.dtype == np.int64 and rows.shape[1] == 8
        for idx in rows:
            clip = {m: take_frames(v, idx if m != "flow" else flow_indices(idx, n - 1)) for m, v in video.items()}
            assert clip["rgb"][0, :, 0, 0].tolist() == idx.tolist()
            assert torch.equal(clip["depth"][0], clip["rgb"][0])
            assert clip["flow"][0, :, 0, 0].tolist() == np.minimum(idx, n - 2).tolist()


def test_training_clip_is_reproducible_and_varies_with_seed_epoch_and_index():
    n, length, stride = 40, 8, 2
    span = clip_span(length, stride)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    first = train_indices(n, length, stride, seed=5, epoch=3, index=11)
    assert np.array_equal(first, train_indices(n, length, stride, seed=5, epoch=3, index=11))
    assert np.array_equal(np.diff(first), np.full(length - 1, stride))
    by_epoch = {int(train_indices(n, length, stride, 5, e, 11)[0]) for e in range(20)}
    by_index = {int(train_indices(n, length, stride, 5, 3, i)[0]) for i in range(20)}
    by_seed = {int(train_indices(n, length, stride, s, 3, 11)[0]) for s in range(20)}
    for starts in (by_epoch, by_index, by_seed):
        assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= n - span
    # no global random state is read or changed
    assert np.array_equal(np.random.get_state()[1], np_state) and torch.equal(torch.get_rng_state(), torch_state)


def test_training_starts_cover_every_possible_start():
    n, length = 10, 7  # starts 0..3
    starts = {int(train_indices(n, length, 1, 0, e, 0)[0]) for e in range(200)}
    assert starts == {0, 1, 2, 3}


def test_centre_clip_is_exact():
    assert center_indices(20, 4, 2).tolist() == [7, 9, 11, 13]  # span 7, start ceil(13 / 2)
    assert center_indices(16, 8, 1).tolist() == list(range(4, 12))  # 4 frames either side
    assert center_indices(8, 8, 1).tolist() == list(range(8))
    cfg = ClipConfig(length=4, stride=2)
    assert clip_indices(20, cfg, "val", seed=0, epoch=0, index=0).tolist() == [[7, 9, 11, 13]]
    assert clip_indices(20, cfg, "val", seed=9, epoch=4, index=2).tolist() == [[7, 9, 11, 13]]


def test_test_clips_are_evenly_spaced_and_deterministic():
    n, length, stride, k = 100, 8, 2, 10
    span = clip_span(length, stride)
    rows = spaced_indices(n, length, stride, k)
    assert rows.shape == (k, length) and rows.dtype == np.int64
    assert np.array_equal(rows, spaced_indices(n, length, stride, k))
    starts = rows[:, 0]
    assert starts.tolist() == [((2 * i + 1) * (n - span + 1)) // (2 * k) for i in range(k)]
    gaps = np.diff(starts)
    assert gaps.min() >= math.floor((n - span + 1) / k) and gaps.max() <= math.ceil((n - span + 1) / k)
    assert starts[0] >= 0 and rows.max() <= n - 1
    assert abs((starts[0] - 0) - (n - span - starts[-1])) <= 1  # as far from the start as from the end
    assert np.array_equal(np.diff(rows, axis=1), np.full((k, length - 1), stride))
    assert np.array_equal(spaced_indices(n, length, stride, 1)[0], center_indices(n, length, stride))
    cfg = ClipConfig(length=length, stride=stride, num_test_clips=k)
    assert np.array_equal(clip_indices(n, cfg, "test", seed=3, epoch=1, index=4), rows)


def test_short_videos_are_loop_padded_in_every_split():
    assert center_indices(5, 8, 2).tolist() == [0, 2, 4, 0, 2, 4, 0, 2]
    assert center_indices(3, 4, 1).tolist() == [0, 1, 2, 0]
    assert center_indices(1, 8, 1).tolist() == [0] * 8
    for epoch in range(5):
        assert train_indices(5, 8, 2, seed=0, epoch=epoch, index=epoch).tolist() == [0, 2, 4, 0, 2, 4, 0, 2]
    assert spaced_indices(5, 8, 2, 3).tolist() == [[0, 2, 4, 0, 2, 4, 0, 2]] * 3
    # exactly the span fits without padding; one frame fewer does not
    assert center_indices(15, 8, 2).tolist() == list(range(0, 15, 2))
    assert center_indices(14, 8, 2).tolist() == [0, 2, 4, 6, 8, 10, 12, 0]


def test_flow_index_map_clamps_to_the_last_flow_frame():
    n = 12
    rgb = np.arange(n)
    flow = flow_indices(rgb, n - 1)
    assert flow.dtype == np.int64
    assert flow.tolist() == list(range(n - 1)) + [n - 2]
    rows = spaced_indices(n, 4, 3, 2)  # 2-D in, 2-D out
    assert flow_indices(rows, n - 1).shape == rows.shape
    assert flow_indices(rows, n - 1).max() == n - 2 and rows.max() == n - 1


def test_empty_videos_are_data_errors():
    cfg = ClipConfig(length=4)
    for split in ("train", "val", "test"):
        with pytest.raises(DataError, match="0 frames"):
            clip_indices(0, cfg, split)
    with pytest.raises(DataError, match="0 frames"):
        flow_indices(np.arange(3), 0)
    with pytest.raises(DataError):
        center_indices(-2, 4)


# ------------------------------------------------------------------------------------------------- augmentation


def test_one_crop_box_for_every_modality_and_frame():
    sample = _position_sample()
    cfg = ClipConfig(size=[12, 16], scale=[0.2, 0.8], flip=False)
    boxes = set()
    for index in range(12):
        out = augment_clip(sample, cfg, seed=1, epoch=0, index=index)
        g = clip_geometry(cfg, 1, 0, index, (H, W))
        boxes.add(g["crop"])
        rgb, depth, flow = out["rgb"], out["depth"], out["flow"]
        assert rgb.shape == (3, 6, 12, 16) and depth.shape == (1, 6, 12, 16) and flow.shape == (2, 6, 12, 16)
        x, y = rgb[0, 0], rgb[1, 0]  # frame 0: x channel has no time offset
        torch.testing.assert_close(depth[0], (x + 100 * y).expand_as(depth[0]), atol=1e-3, rtol=0)
        torch.testing.assert_close(flow[0], (x - 16).expand_as(flow[0]), atol=1e-3, rtol=0)
        torch.testing.assert_close(flow[1], (y - 12).expand_as(flow[1]), atol=1e-3, rtol=0)
        for t in range(6):  # every frame has the same crop
            torch.testing.assert_close(rgb[0, t] - rgb[0, 0], torch.full_like(x, 1000.0 * t), atol=1e-2, rtol=0)
        top, left, ch, cw = g["crop"]  # the box the draw names is the one applied
        torch.testing.assert_close(depth, TF.resized_crop(sample["depth"], top, left, ch, cw, [12, 16], antialias=True))
        assert y.min() >= top - 0.5 and y.max() <= top + ch - 0.5
        assert x.min() >= left - 0.5 and x.max() <= left + cw - 0.5
    assert len(boxes) >= 8  # the boxes do vary, so a shared box is a real constraint


def test_the_draw_does_not_depend_on_which_modalities_are_loaded():
    sample = _position_sample()
    cfg = ClipConfig(size=[12, 16], brightness=0.3, contrast=0.3)
    for index in range(6):
        both = augment_clip(sample, cfg, seed=2, epoch=1, index=index)
        alone = augment_clip({"rgb": sample["rgb"]}, cfg, seed=2, epoch=1, index=index)
        assert torch.equal(both["rgb"], alone["rgb"])
        assert torch.equal(both["rgb"], augment_clip(sample, cfg, seed=2, epoch=1, index=index)["rgb"])
    other = augment_clip(sample, cfg, seed=2, epoch=2, index=0)["rgb"]
    assert not torch.equal(other, augment_clip(sample, cfg, seed=2, epoch=1, index=0)["rgb"])


def _identity_geometry(**kw):
    """Crop = the whole 24x32 frame (scale 1, ratio 4/3), output 24x32: only the flip and jitter change pixels."""
    return ClipConfig(size=[H, W], scale=[1.0, 1.0], ratio=[W / H, W / H], **kw)


def _flips(cfg, n=20):
    return {i: clip_geometry(cfg, 0, 0, i, (H, W))["flip"] for i in range(n)}


def test_flip_negates_flow_x_only_float():
    sample = _position_sample()
    cfg = _identity_geometry()
    flips = _flips(cfg)
    assert any(flips.values()) and not all(flips.values())
    for i, flipped in flips.items():
        assert clip_geometry(cfg, 0, 0, i, (H, W))["crop"] == (0, 0, H, W)
        out = augment_clip(sample, cfg, seed=0, epoch=0, index=i)
        if flipped:
            assert torch.equal(out["rgb"], sample["rgb"].flip(-1))  # mirrored, not negated
            assert torch.equal(out["depth"], sample["depth"].flip(-1))
            assert torch.equal(out["flow"][0], -sample["flow"][0].flip(-1))  # x negated
            assert torch.equal(out["flow"][1], sample["flow"][1].flip(-1))  # y kept
        else:
            for m in sample:
                assert torch.equal(out[m], sample[m])


def test_flip_negates_uint8_flow_x_about_its_centre():
    g = torch.Generator().manual_seed(0)
    flow = torch.randint(0, 256, (2, 4, H, W), generator=g, dtype=torch.uint8)
    rgb = torch.randint(0, 256, (3, 4, H, W), generator=g, dtype=torch.uint8)
    cfg = _identity_geometry()
    i = next(i for i, f in _flips(cfg).items() if f)
    out = augment_clip({"rgb": rgb, "flow": flow}, cfg, seed=0, epoch=0, index=i)
    assert out["flow"].dtype == torch.uint8 and out["rgb"].dtype == torch.uint8
    assert torch.equal(out["flow"][0], 255 - flow[0].flip(-1))  # default 127.5: p -> 255 - p
    assert torch.equal(out["flow"][1], flow[1].flip(-1))
    assert torch.equal(out["rgb"], rgb.flip(-1))
    out128 = augment_clip({"flow": flow}, _identity_geometry(flow_center=128), seed=0, epoch=0, index=i)
    assert torch.equal(out128["flow"][0], (256 - flow[0].flip(-1).long()).clamp(0, 255).to(torch.uint8))
    # the helper on its own: float flow centred at 0, and an explicit centre
    f = torch.tensor([[[[-2.0, 3.0]]], [[[1.0, -1.0]]]])
    assert negate_flow_x(f).tolist() == [[[[2.0, -3.0]]], [[[1.0, -1.0]]]]
    assert negate_flow_x(f, flow_center=1.0)[0].tolist() == [[[4.0, -1.0]]]
    with pytest.raises(DataError, match="2"):
        negate_flow_x(torch.zeros(3, 1, 2, 2))


def test_photometric_jitter_touches_rgb_only():
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.uint8):
        sample = {"rgb": torch.randint(20, 230, (3, 4, H, W), generator=g).to(dtype),
                  "depth": torch.randint(20, 230, (1, 4, H, W), generator=g).to(dtype),
                  "flow": torch.randint(20, 230, (2, 4, H, W), generator=g).to(dtype)}
        cfg = _identity_geometry(flip=False, brightness=0.5, contrast=0.5)
        changed = 0
        for i in range(5):
            out = augment_clip(sample, cfg, seed=4, epoch=0, index=i)
            assert torch.equal(out["depth"], sample["depth"]) and torch.equal(out["flow"], sample["flow"])
            assert out["rgb"].dtype == dtype
            changed += not torch.equal(out["rgb"], sample["rgb"])
        assert changed == 5
        # the same draw without jitter leaves RGB unchanged too, so the change above is the jitter
        plain = augment_clip(sample, _identity_geometry(flip=False), seed=4, epoch=0, index=0)
        assert torch.equal(plain["rgb"], sample["rgb"])
    named = _identity_geometry(flip=False, brightness=0.5, photometric_modalities=["depth"], flow_modalities=[])
    out = augment_clip(sample, named, seed=4, epoch=0, index=0)
    assert torch.equal(out["rgb"], sample["rgb"]) and not torch.equal(out["depth"], sample["depth"])


def test_bad_samples_are_data_errors():
    cfg = ClipConfig(size=[8, 8])
    x = torch.zeros(3, 2, H, W)
    with pytest.raises(DataError, match="different sizes"):
        augment_clip({"rgb": x, "depth": torch.zeros(1, 2, H, W + 1)}, cfg, 0, 0, 0)
    with pytest.raises(DataError, match="flow"):
        augment_clip({"rgb": x, "flow": torch.zeros(3, 2, H, W)}, cfg, 0, 0, 0)
    with pytest.raises(DataError, match="C, T, H, W"):
        augment_clip({"rgb": torch.zeros(3, H, W)}, cfg, 0, 0, 0)
    with pytest.raises(DataError, match="smaller than"):
        center_crop({"rgb": x}, [H + 1, 8])


# ------------------------------------------------------------------------------------------------- evaluation views


def _stamped(h, w):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    v = (xs + 100 * ys).float()
    return {"rgb": v.expand(3, 2, h, w).clone(), "depth": v.expand(1, 2, h, w).clone()}


def test_center_crop_and_three_crop_positions():
    sample = _stamped(H, W)  # landscape: crops step along x
    c = center_crop(sample, [16, 16])
    assert c["rgb"].shape == (3, 2, 16, 16) and c["rgb"][0, 0, 0, 0].item() == 8 + 100 * 4
    assert torch.equal(c["depth"][0], c["rgb"][0])
    crops = three_crop(sample, [24, 24])
    assert [v["rgb"][0, 0, 0, 0].item() for v in crops] == [0, 4, 8]
    assert [v["depth"][0, 1, -1, -1].item() for v in crops] == [23 + 2300, 27 + 2300, 31 + 2300]
    portrait = three_crop(_stamped(W, H), [24, 24])  # portrait: crops step along y
    assert [v["rgb"][0, 0, 0, 0].item() for v in portrait] == [0, 400, 800]
    views = eval_views(sample, ClipConfig(size=[16, 16], test_crops=3))
    assert len(views) == 3 and [v["rgb"][0, 0, 0, 0].item() for v in views] == [400, 408, 416]
    one = eval_views(sample, ClipConfig(size=[16, 16], test_crops=1))
    assert len(one) == 1 and torch.equal(one[0]["rgb"], c["rgb"])


# ------------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("key,value", [
    ("length", 0), ("length", 1.5), ("length", True), ("stride", 0), ("num_test_clips", 0), ("test_crops", 2),
    ("size", [0, 5]), ("size", [224]), ("size", "224"), ("scale", [0.0, 1.0]), ("scale", [0.6, 0.2]),
    ("scale", [0.5, 1.5]), ("ratio", [0.0, 1.0]), ("ratio", [2.0, 1.0]), ("flip", "yes"), ("brightness", -0.1),
    ("brightness", 1.5), ("contrast", float("nan")), ("photometric_modalities", "rgb"), ("flow_center", "x"),
])
def test_bad_config_values_are_user_errors(key, value):
    with pytest.raises(UserError, match=f"data.clip.{key}") as exc:
        ClipConfig(**{key: value})
    assert str(exc.value).startswith(f"config key 'data.clip.{key}' expects ") and "\n" not in str(exc.value)


def test_config_rejects_flow_with_photometric_jitter_and_accepts_good_values():
    with pytest.raises(UserError, match="flow"):
        ClipConfig(photometric_modalities=["rgb", "flow"])
    cfg = ClipConfig(length=8, stride=2, num_test_clips=10, test_crops=1, size=(112, 112), scale=(0.5, 1.0),
                     ratio=(1.0, 1.0), brightness=0.2, contrast=0.2, flow_center=127.5)
    assert cfg.out_size == (112, 112)
    with pytest.raises(UserError, match="clip.length"):
        cfg.length = 0
        cfg.check()

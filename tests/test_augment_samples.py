"""Paired augmentation (data.augment) and splits read sample by sample (engine.samples): the same geometric
draw for every modality, draws that are a function of (seed, epoch, index), the same batches for every
method and worker count, exact resume, streamed statistics, and data that travel as paths."""
import copy
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from mmhal.config import AugmentConfig, DistillConfig, TrainConfig, load_config
from mmhal.data.augment import augment_sample, geometry
from mmhal.data.base import PAD_CLASSES, MultimodalData
from mmhal.data.files import FileData
from mmhal.distill import METHODS
from mmhal.engine.loader import EpochBatches, TrainBatches
from mmhal.engine.loop import fit, make_split
from mmhal.engine.run import check_augment, normalization_stats, teacher_key
from mmhal.engine.samples import SampleSplit
from mmhal.errors import UserError
from mmhal.models.network import MultimodalNet

FULL = AugmentConfig(flip=True, rotate=25.0, crop=0.7, erase=0.5)


def _pair(seed=0, size=(20, 24)):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
    return {"rgb": rgb, "depth": rgb[:1].clone()}


def test_one_geometric_draw_is_applied_to_every_modality():
    for index in range(20):
        out = augment_sample(_pair(index), FULL, seed=3, epoch=1, index=index)
        assert out["rgb"].shape == (3, 20, 24) and out["depth"].shape == (1, 20, 24)
        assert torch.equal(out["depth"][0], out["rgb"][0]), index  # same rotation, crop, flip and erased box


def test_flip_alone_flips_every_modality_or_none():
    cfg = AugmentConfig(flip=True)
    flips = 0
    for index in range(40):
        s = _pair(index)
        out = augment_sample(s, cfg, seed=0, epoch=0, index=index)
        flipped = geometry(cfg, 0, 0, index, (20, 24))["flip"]
        flips += flipped
        for m in s:
            assert torch.equal(out[m], s[m].flip(-1) if flipped else s[m])
    assert 10 < flips < 30


def test_photometric_jitter_touches_only_the_named_modalities_and_is_drawn_per_modality_name():
    geo = AugmentConfig(flip=True, crop=0.8)
    photo = AugmentConfig(flip=True, crop=0.8, brightness=0.4, contrast=0.4)
    s = _pair(1)
    a, b = augment_sample(s, geo, 5, 2, 7), augment_sample(s, photo, 5, 2, 7)
    assert torch.equal(a["depth"], b["depth"])  # depth is never jittered (photometric_modalities = [rgb])
    assert not torch.equal(a["rgb"], b["rgb"])
    alone = augment_sample({"rgb": s["rgb"]}, photo, 5, 2, 7)  # a student that loads RGB only sees the same RGB
    assert torch.equal(alone["rgb"], b["rgb"])


def test_draws_are_a_function_of_seed_epoch_and_index_only():
    s = _pair(2)
    ref = augment_sample(s, FULL, 1, 4, 9)
    assert torch.equal(augment_sample(copy.deepcopy(s), FULL, 1, 4, 9)["rgb"], ref["rgb"])
    assert all(not torch.equal(augment_sample(s, FULL, *k)["rgb"], ref["rgb"]) for k in [(2, 4, 9), (1, 5, 9), (1, 4, 10)])
    assert torch.get_rng_state().equal(torch.get_rng_state())  # (no global state is consumed: see below)
    before = torch.get_rng_state()
    augment_sample(s, FULL, 1, 4, 9)
    assert torch.equal(before, torch.get_rng_state())


def test_off_by_default_and_non_images_pass_unchanged():
    s = {"rgb": _pair()["rgb"], "gyro": torch.randn(3, 16)}
    assert not AugmentConfig().active
    out = augment_sample(s, FULL, 0, 0, 0)
    assert torch.equal(out["gyro"], s["gyro"])


def _write_files(folder, n=24, size=(12, 10)):
    rng = np.random.default_rng(0)
    labels = (np.arange(n) % 2).astype(np.int64)
    files = {"rgb": [], "depth": []}
    for i in range(n):
        a = np.clip(60 + 100 * labels[i] + rng.normal(0, 30, (*size, 3)), 0, 255).astype(np.uint8)
        for m, img in (("rgb", a), ("depth", a[..., 0])):
            p = folder / f"{i}-{m}.png"
            Image.fromarray(img).save(p)
            files[m].append(p.name)
    split = np.array((["train"] * 2 + ["val", "test"]) * (n // 4))
    return FileData("fixture", {m: np.array(v) for m, v in files.items()}, labels, split, PAD_CLASSES,
                    {"rgb": 3, "depth": 1}, size, root=str(folder), bona_fide=labels.astype(bool))


def _epoch(split, seed, epoch, workers_note=""):
    batches = TrainBatches(split, ["rgb", "depth"], EpochBatches(len(split), 4, seed))
    batches.set_epoch(epoch)
    out = [(copy.deepcopy(x), y.clone(), i.clone()) for x, y, i in batches]
    batches.close()
    return out


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(xa[m], xb[m]) for (xa, _, _), (xb, _, _) in zip(a, b) for m in xa) and \
        all(torch.equal(ia, ib) and torch.equal(ya, yb) for (_, ya, ia), (_, yb, ib) in zip(a, b))


def test_file_batches_are_the_same_for_every_method_and_worker_count_and_differ_between_seeds(tmp_path):
    data = _write_files(tmp_path)
    split0 = make_split(data, "train", ["rgb", "depth"], "cpu", workers=0, augment=FULL)
    split2 = make_split(data, "train", ["rgb", "depth"], "cpu", workers=2, augment=FULL)
    assert isinstance(split0, SampleSplit) and split0.augment is not None
    a, b = _epoch(split0, 3, 1), _epoch(split2, 3, 1)
    assert _same(a, b)
    assert all(x["rgb"].dtype == torch.float32 for x, _, _ in a)
    assert not _same(a, _epoch(split0, 4, 1))
    assert not _same(a, _epoch(split0, 3, 2))
    for x, _, _ in a:  # paired: depth is channel 0 of the RGB image after the same geometry
        assert torch.equal(x["depth"][:, 0], x["rgb"][:, 0])


def test_validation_and_test_splits_are_never_augmented(tmp_path):
    data = _write_files(tmp_path)
    val = make_split(data, "val", ["rgb"], "cpu", augment=FULL)
    assert val.augment is None
    x, _ = val.batch(torch.arange(2), ["rgb"])
    assert torch.equal(x["rgb"][0], data.read(int(val.index[0]), ["rgb"])["rgb"].float())


def test_streamed_statistics_equal_the_in_memory_ones(tmp_path):
    data = _write_files(tmp_path)
    idx = data.indices("train")
    arrays = {m: np.stack([data.read(int(i), [m])[m].numpy() for i in range(len(data.labels))]).astype(np.float32)
              for m in ("rgb", "depth")}
    mem = MultimodalData("mem", arrays, data.labels, data.split, PAD_CLASSES)
    want = normalization_stats(mem, ["rgb", "depth"])
    got = normalization_stats(data, ["rgb", "depth"], workers=2)
    assert len(idx) == 12
    for m in want:
        np.testing.assert_allclose(got[m][0], want[m][0], rtol=1e-5)
        np.testing.assert_allclose(got[m][1], want[m][1], rtol=1e-4)


def test_file_data_travels_to_workers_as_paths_not_pixels(tmp_path):
    data = _write_files(tmp_path, n=200, size=(64, 64))
    pixels = 200 * 64 * 64 * 4
    assert len(pickle.dumps(data)) < pixels / 20


def _split_method(seed):
    spec = {"rgb": (3, 12, 10), "depth": (1, 12, 10)}
    torch.manual_seed(100)
    teacher = MultimodalNet(spec, ["rgb", "depth"], 2, width=4)
    torch.manual_seed(seed)
    student = MultimodalNet(spec, ["rgb"], 2, width=4)
    return METHODS.get("mmh")(student, teacher, DistillConfig())


class _Killed(Exception):
    pass


def test_resume_under_augmentation_ends_exactly_as_the_uninterrupted_training(tmp_path):
    data = _write_files(tmp_path, n=32)
    train = make_split(data, "train", ["rgb", "depth"], "cpu", workers=0, augment=FULL)
    val = make_split(data, "val", ["rgb", "depth"], "cpu")
    tcfg = TrainConfig(epochs=4, batch_size=4)
    ref = fit(_split_method(0), train, val, tcfg, seed=0, progress=False)

    ckpt = tmp_path / "job.pt"

    def kill(epoch, rec):
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        fit(_split_method(0), train, val, tcfg, seed=0, progress=False, checkpoint=ckpt, resume=True, on_epoch=kill)
    assert ckpt.is_file()
    torch.manual_seed(12345)  # the resumed process starts with other global random state
    res = fit(_split_method(0), train, val, tcfg, seed=0, progress=False, checkpoint=ckpt, resume=True)
    assert res.history == ref.history
    assert all(torch.equal(res.last_state[k], v) for k, v in ref.last_state.items())


def test_the_teachers_cache_key_names_the_augmentation_and_hapt_keys_are_unchanged():
    base = load_config()
    aug = load_config(None, ["data.augment.flip=true"])
    assert teacher_key(base, "fp", ["a"]) != teacher_key(aug, "fp", ["a"])
    assert teacher_key(base, "fp", ["a"]) == teacher_key(load_config(None, ["data.augment.flip=false"]), "fp", ["a"])


def test_augmentation_of_data_without_images_is_refused():
    cfg = load_config(None, ["data.augment.flip=true"])
    data = MultimodalData("v", {"gyro": np.zeros((4, 3, 8), np.float32)}, np.zeros(4, np.int64),
                          np.array(["train", "val", "test", "train"]), ["a"])
    with pytest.raises(UserError, match="image modalities"):
        check_augment(cfg, data)


def test_the_fused_warp_agrees_with_torchvisions_v2_kernels_applied_one_by_one():
    import torchvision.transforms.v2.functional as tvf

    from mmhal.data.augment import apply_geometry

    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(48.0), indexing="ij")
    img = (128 + 60 * torch.sin(x / 5) + 50 * torch.cos(y / 4))[None].repeat(3, 1, 1)  # smooth: interpolation agrees
    for g in [{"angle": 17.0, "crop": None, "flip": False, "erase": None},
              {"angle": 0.0, "crop": (4, 6, 30, 36), "flip": False, "erase": None},
              {"angle": -25.0, "crop": (5, 3, 32, 38), "flip": True, "erase": None}]:
        want = img
        if g["angle"]:
            want = tvf.rotate(want, g["angle"], interpolation=tvf.InterpolationMode.BILINEAR)
        if g["crop"] is not None:
            want = tvf.resized_crop(want, *g["crop"], [40, 48], antialias=False)
        if g["flip"]:
            want = tvf.horizontal_flip(want)
        got = apply_geometry({"rgb": img}, g)["rgb"]
        inner = (slice(None), slice(6, -6), slice(6, -6))  # borders: zeros vs edge handling may differ by a pixel
        assert (got[inner] - want[inner]).abs().mean() < 2.0, g
        assert (got[inner] - want[inner]).abs().mean() < (img[inner] - want[inner]).abs().mean() / 5, g


def test_photometric_jitter_follows_torchvisions_v2_kernels():
    import torchvision.transforms.v2.functional as tvf

    from mmhal.data.augment import jitter

    img = _pair(4)["rgb"].float()
    for b, c in [(1.3, 1.0), (1.0, 0.7), (0.8, 1.2), (1.2, 0.6)]:
        want = tvf.adjust_contrast(tvf.adjust_brightness(img / 255, b), c) * 255  # torchvision's float path, [0, 1]
        got = jitter(img, {"brightness": b, "contrast": c}, (0, 255))
        assert (got - want).abs().max() < 1e-3, (b, c)
        grey = jitter(img[:1], {"brightness": b, "contrast": c}, (0, 255))
        want = tvf.adjust_contrast(tvf.adjust_brightness(img[:1] / 255, b), c) * 255
        assert (grey - want).abs().max() < 1e-3, (b, c)


def test_in_memory_images_are_augmented_too_and_keep_their_float_values_elsewhere():
    rng = np.random.default_rng(0)
    arrays = {"rgb": rng.normal(size=(16, 3, 12, 10)).astype(np.float32),
              "depth": rng.normal(size=(16, 1, 12, 10)).astype(np.float32)}
    data = MultimodalData("mem", arrays, (np.arange(16) % 2).astype(np.int64), np.array(["train"] * 12 + ["val"] * 4),
                          ["a", "b"])
    train = make_split(data, "train", ["rgb", "depth"], "cpu", augment=AugmentConfig(flip=True, rotate=15.0))
    val = make_split(data, "val", ["rgb", "depth"], "cpu", augment=AugmentConfig(flip=True, rotate=15.0))
    assert isinstance(train, SampleSplit) and not isinstance(val, SampleSplit)  # val stays tensors, unaugmented
    a, b = _epoch(train, 0, 0), _epoch(train, 0, 0)
    assert _same(a, b)
    x, _, idx = a[0]
    raw = torch.from_numpy(arrays["rgb"][train.index[idx.numpy()]])
    assert x["rgb"].dtype == torch.float32 and not torch.equal(x["rgb"], raw)
    assert x["rgb"].min() < -1.0  # standardised values are not clamped to [0, 1] or 0..255
    assert torch.equal(x["depth"][:, 0] != 0, x["rgb"][:, 0] != 0)  # one warp: the same zero-filled corners

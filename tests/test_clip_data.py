"""Action clips read from frame folders (``data.frames.ClipData``), through a manifest.csv that names folders:
frame order and pairing, frame-count checks, flow layouts, 16-bit depth, the clip policy per split, multi-view
test scoring and an end-to-end run."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_fixtures import save, write_clip_manifest, write_rows
from mmhal.config import load_config
from mmhal.data.base import load_dataset
from mmhal.errors import DataError

CLIP = ["data.clip.length=4", "data.clip.size=16,16", "data.clip.num_test_clips=2"]


def _load(path: Path, *extra: str):
    cfg = load_config(None, [f"data.name={path}", *CLIP, *extra])
    return load_dataset(cfg.data)


def test_a_manifest_of_frame_folders_gives_clips_with_their_frame_counts(tmp_path):
    path = write_clip_manifest(tmp_path, modalities=("rgb", "depth", "flow"), frames=7, short={0: 3})
    data = _load(path, "data.depth_range=1000,3500")
    assert type(data).__name__ == "ClipData" and not data.in_memory
    assert data.shapes == {"rgb": (3, 4, 16, 16), "depth": (1, 4, 16, 16), "flow": (2, 4, 16, 16)}
    assert data.num_frames[0] == 3 and (data.num_frames[1:] == 7).all()
    assert data.frame_size == (20, 24)
    assert data.info["frames"] == {"min": 3, "median": 7.0, "max": 7}
    assert list(np.unique(data.split)) == ["test", "train", "val"]


def _constant_frames(folder: Path, numbers, template: str, value_of, dtype=np.uint8, channels: int = 1):
    for n in numbers:
        px = np.full((20, 24) if channels == 1 else (20, 24, 3), value_of(n), dtype=dtype)
        save(folder / template.format(n), px)


def _manifest(tmp_path: Path, rows: list[dict]) -> Path:
    return write_rows(tmp_path, rows)


def _two_samples(tmp_path: Path, rgb_numbers, depth_numbers, depth_template="d_{}.png", depth_dtype=np.uint16):
    rows = []
    for k in range(2):
        _constant_frames(tmp_path / f"rgb{k}", rgb_numbers, "frame_{}_rgb.png", lambda n: 10 * n, channels=3)
        _constant_frames(tmp_path / f"dep{k}", depth_numbers if k == 1 else rgb_numbers, depth_template,
                         lambda n: 500 + 100 * n, dtype=depth_dtype)
        rows.append({"label": k, "split": ("train", "val")[k], "x.rgb": f"rgb{k}", "x.depth": f"dep{k}"})
    rows.append({"label": 0, "split": "train", "x.rgb": "rgb0", "x.depth": "dep0"})
    rows.append({"label": 1, "split": "train", "x.rgb": "rgb1", "x.depth": "dep1"})
    return _manifest(tmp_path, rows)


def test_frames_are_ordered_by_their_number_not_by_name_and_modalities_pair_by_number(tmp_path):
    numbers = range(1, 13)  # unpadded: frame_10 sorts before frame_2 as text
    path = _two_samples(tmp_path, numbers, numbers)
    data = _load(path, "data.depth_range=500,4500", "data.image_size=20,24")
    clip = data.read_clip(0, ["rgb", "depth"], np.array([0, 1, 9, 11]))
    assert clip["rgb"][0, :, 0, 0].tolist() == [10, 20, 100, 120]
    # depth 500 + 100 n mm clipped to [500, 4500] and scaled to 0..255, rounded half up
    want = [int(np.floor((100 * n) * 255 / 4000 + 0.5)) for n in (1, 2, 10, 12)]
    assert clip["depth"][0, :, 0, 0].tolist() == want and clip["depth"].dtype == torch.uint8


def test_16_bit_depth_without_a_range_keeps_its_raw_values(tmp_path):
    path = _two_samples(tmp_path, range(1, 6), range(1, 6))
    clip = _load(path).read_clip(0, ["depth"], np.array([0, 4]))
    assert clip["depth"].dtype == torch.int32 and clip["depth"][0, :, 0, 0].tolist() == [600, 1000]


def test_a_sample_whose_modalities_have_other_frame_counts_is_one_sentence_naming_it(tmp_path):
    path = _two_samples(tmp_path, range(1, 9), range(1, 8))
    with pytest.raises(DataError) as exc:
        _load(path)
    msg = str(exc.value)
    assert "line 3 of 'manifest.csv'" in msg and "8 'rgb' frames but 7 'depth' frames" in msg and "\n" not in msg


def test_other_frame_numbers_with_the_same_count_are_refused(tmp_path):
    path = _two_samples(tmp_path, range(1, 9), range(2, 10))
    with pytest.raises(DataError, match="with other frame numbers"):
        _load(path)


def test_two_frames_with_one_number_are_refused(tmp_path):
    path = _two_samples(tmp_path, range(1, 6), range(1, 6))
    save(tmp_path / "rgb0" / "frame_01_rgb.png", np.zeros((20, 24, 3), np.uint8))  # 01 and 1: both frame 1
    with pytest.raises(DataError, match="two frames numbered 1"):
        _load(path)


@pytest.mark.parametrize("layout", ["prefix", "subfolders"])
def test_flow_has_one_frame_fewer_than_rgb_in_either_layout_and_two_channels(tmp_path, layout):
    path = write_clip_manifest(tmp_path, modalities=("rgb", "flow"), frames=6, flow_layout=layout)
    data = _load(path)
    assert data.channels("flow") == 2 and len(data.sources["flow"]) == 2
    clip = data.read_clip(0, ["rgb", "flow"], np.array([2, 3, 4, 5]))  # RGB's last frame takes flow's last
    assert clip["flow"].shape == (2, 4, 20, 24)
    assert torch.equal(clip["flow"][:, 2], clip["flow"][:, 3])


def test_flow_two_frames_short_is_refused(tmp_path):
    path = write_clip_manifest(tmp_path, n_per_class=1, classes=2, modalities=("rgb", "flow"), frames=6, split=False)
    flow = tmp_path / "flow" / "c0-0"
    for axis in ("x", "y"):
        (flow / f"flow_{axis}_00005.jpg").unlink()
    rows = list(csv.DictReader(open(path)))
    path = _manifest(tmp_path, rows * 3)
    with pytest.raises(DataError, match="6 'rgb' frames but 4 'flow' frames"):
        _load(path)


def test_frames_smaller_than_the_crop_are_refused_in_one_sentence(tmp_path):
    path = write_clip_manifest(tmp_path, modalities=("rgb",), frames=5)
    with pytest.raises(DataError, match="data.clip.size is 32x32"):
        load_dataset(load_config(None, [f"data.name={path}", "data.clip.size=32,32"]).data)


def test_the_clip_policy_per_split(tmp_path):
    path = write_clip_manifest(tmp_path, modalities=("rgb", "depth"), frames=9)
    data = _load(path, "data.depth_range=1000,3500", "data.clip.num_test_clips=3")
    mods = ["rgb", "depth"]
    a = data.sample(3, mods, "train", seed=7, epoch=2)
    b = data.sample(3, mods, "train", seed=7, epoch=2)
    c = data.sample(3, mods, "train", seed=7, epoch=3)
    assert all(torch.equal(a[m], b[m]) for m in mods)  # a function of (seed, epoch, index)
    assert not all(torch.equal(a[m], c[m]) for m in mods)
    assert a["rgb"].shape == (3, 4, 16, 16) and a["depth"].shape == (1, 4, 16, 16)
    val = data.sample(3, mods, "val")
    assert torch.equal(val["rgb"], data.read(3, mods)["rgb"])
    test = data.sample(3, mods, "test")
    assert test["rgb"].shape == (9, 3, 4, 16, 16) and data.views("test") == 9  # 3 clips x 3 crops
    assert torch.equal(test["rgb"][4], val["rgb"])  # the middle clip's centre crop is the validation view


@pytest.mark.parametrize("frames", [5, 12])  # overlapping test clips (and loop-padded ones), and apart ones
def test_test_clips_decode_each_frame_once_and_equal_clips_read_one_by_one(tmp_path, monkeypatch, frames):
    from mmhal.data import frames as frames_module
    from mmhal.data.clips import clip_indices, eval_views

    path = write_clip_manifest(tmp_path, modalities=("rgb", "depth", "flow"), frames=frames)
    data = _load(path, "data.depth_range=1000,3500", "data.clip.num_test_clips=4", "data.clip.stride=2")
    mods = ["rgb", "depth", "flow"]
    rows = clip_indices(int(data.num_frames[4]), data.clip, "test", 0, 0, 4)
    want = [v for r in rows for v in eval_views(data.read_clip(4, mods, r), data.clip)]
    decoded = []
    stack = frames_module.ClipData._frames
    monkeypatch.setattr(frames_module.ClipData, "_frames",
                        lambda self, m, paths, ch: decoded.append(len(paths)) or stack(self, m, paths, ch))
    got = data.sample(4, mods, "test")
    for m in mods:
        assert torch.equal(got[m], torch.stack([v[m] for v in want])), m
    assert decoded == [len(np.unique(rows))] * 4  # rgb, depth, flow x, flow y: each distinct frame once
    assert len(np.unique(rows)) < rows.size or frames == 12


def test_test_views_are_scored_by_their_mean_probability(tmp_path):
    from mmhal.engine.loop import predict
    from mmhal.engine.samples import SampleSplit

    path = write_clip_manifest(tmp_path, modalities=("rgb",), frames=5)
    data = _load(path)

    class Probe(torch.nn.Module):
        modalities = ["rgb"]

        def forward(self, inputs):
            x = inputs["rgb"]
            z = torch.stack([x.mean(dim=(1, 2, 3, 4)), x[:, 0].std(dim=(1, 2, 3)), -x.amax(dim=(1, 2, 3, 4))], 1) / 50
            return type("Out", (), {"logits": z})()

    idx = data.indices("test")
    split = SampleSplit(data, idx, ["rgb"], "cpu", mode="test")
    assert split.views == 6
    got = predict(Probe(), split, batch_size=12)
    want = []
    for i in idx:
        views = data.sample(int(i), ["rgb"], "test")["rgb"].float()
        want.append(Probe()({"rgb": views}).logits.softmax(-1).mean(0).log())
    torch.testing.assert_close(got, torch.stack(want))


@pytest.mark.slow
@pytest.mark.parametrize("fusion, methods", [("early", "unimodal,mmh"), ("late", "mmh,fitnet")])
def test_a_clip_manifest_runs_end_to_end_with_multi_view_test_scores_and_top5(tmp_path, fusion, methods):
    """Also with the authors' late-fusion action teacher (one network per modality, logits averaged)."""
    from mmhal.cli import main

    path = write_clip_manifest(tmp_path / "d", n_per_class=6, classes=6, modalities=("rgb", "depth"), frames=6)
    out = tmp_path / "run"
    rc = main(["run", "--data", str(path), "--student", "rgb", "--methods", methods, "--seeds", "1",
               "--epochs", "1", "--out", str(out), "--no-progress", "model.width=4", "train.batch_size=4",
               "workers=1", "train.loader_workers=0", *CLIP, "data.depth_range=1000,3500",
               f"model.teacher_fusion={fusion}", f"cache_dir={tmp_path / 'cache'}"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())["results"]
    teachers = list((tmp_path / "cache" / "teachers").glob("*.pt"))
    assert len(teachers) == 1
    keys = torch.load(teachers[0], map_location="cpu", weights_only=True)["model"]
    assert any(k.startswith("members.depth.") for k in keys) == (fusion == "late")
    for name in ("teacher", *methods.split(",")):
        assert 0.0 <= res[name]["top5_accuracy"]["mean"] <= 1.0
        assert res[name]["top5_accuracy"]["mean"] >= res[name]["accuracy"]["mean"]
    # mmhal predict on the manifest's frame folders scores every test view as the run did: the same logits
    from mmhal.engine.artifacts import open_run
    from mmhal.engine.predict import load_networks, open_inputs, predict_logits

    run = open_run(out)
    test = load_dataset(run.config.data).indices("test")
    for name in methods.split(","):
        nets = load_networks(run, name)
        z = predict_logits(nets, open_inputs(str(path), None, run, nets), 64)
        want = torch.load(out / "jobs" / f"{name}-seed0.pt", weights_only=True)["logits"].numpy()
        np.testing.assert_allclose(z[0, test], want, rtol=0, atol=1e-5)
    # the exported model takes one clip; its card says the test figures average the test views
    assert main(["export", str(out), "--method", methods.split(",")[-1], "--seed", "0", "--format", "torchscript",
                 "--out", str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "average the softmax over 2 evenly spaced clips x 3 crop(s)" in card


def test_training_clips_of_an_epoch_do_not_depend_on_the_epochs_before_and_seeds_are_independent(tmp_path):
    """What makes a resumed clip run exact: a TrainBatches made fresh at epoch 2 (as after --resume) yields the
    very batches of an uninterrupted one at epoch 2; another seed gets other clips and crops."""
    from mmhal.engine.loader import EpochBatches, TrainBatches
    from mmhal.engine.samples import SampleSplit

    path = write_clip_manifest(tmp_path, modalities=("rgb", "depth"), frames=9)
    data = _load(path, "data.depth_range=1000,3500")
    idx = data.indices("train")

    def epoch_batches(seed: int, epochs: range) -> list:
        split = SampleSplit(data, idx, ["rgb", "depth"], "cpu", mode="train")
        batches = TrainBatches(split, ["rgb", "depth"], EpochBatches(len(idx), 3, seed))
        out = []
        for e in epochs:
            batches.set_epoch(e)
            out = [(x, y, i) for x, y, i in batches]
        batches.close()
        return out

    straight, resumed, other = epoch_batches(5, range(3)), epoch_batches(5, range(2, 3)), epoch_batches(6, range(2, 3))
    assert len(straight) == len(resumed) > 1
    for (xa, ya, ia), (xb, yb, ib) in zip(straight, resumed):
        assert torch.equal(ia, ib) and torch.equal(ya, yb)
        assert all(torch.equal(xa[m], xb[m]) for m in ("rgb", "depth"))
    same_order = [(b[2].tolist()) for b in straight] == [(b[2].tolist()) for b in other]
    assert not same_order or not all(torch.equal(a[0]["rgb"], b[0]["rgb"]) for a, b in zip(straight, other))

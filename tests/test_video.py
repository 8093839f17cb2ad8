"""Clips decoded from video files (``mmhal.data.video``, the extra ``mmhal[video]``): frame counts, frame order,
repeated indices, grey and resize; a manifest of RGB videos and depth frame folders, end to end; a video whose
frame count differs from its depth folder's, a video cell of optical flow, PyAV missing and a corrupt file, each
one sentence. Videos are written here with PyAV (MPEG-4 Part 2, lossy: pixels are compared with a tolerance)."""
from __future__ import annotations

import csv
import json
import pickle
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from clip_fixtures import frame_pixels, sample_keys, write_frames, write_rows
from mmhal.config import load_config
from mmhal.data.base import load_dataset
from mmhal.data import video as video_module
from mmhal.data.video import read_video_frames, video_channels, video_frame_count, video_frame_size, video_index
from mmhal.errors import DataError, UserError

H, W = 32, 40
CLIP = ["data.clip.length=4", "data.clip.size=16,16", "data.clip.num_test_clips=2"]


def write_video(path: Path, frames, codec: str = "mpeg4", rate: int = 10, gop: int = 0, options=None) -> Path:
    """``frames`` (uint8 (H, W, 3) arrays) as a video file at ``path`` (container from the suffix); ``gop``: a key
    frame every ``gop`` frames (0: the codec's default); ``options``: the encoder's own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.bit_rate = 4_000_000
        if gop:
            s.codec_context.gop_size = gop
        if options:
            s.options = dict(options)
        for px in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(px), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def level(t: int) -> int:
    """The grey level of ramp frame ``t``: rising with the frame number, so the order of frames shows."""
    return 12 + 9 * t


def ramp(path: Path, n: int = 24) -> Path:
    """A video of ``n`` grey frames of level ``level(t)`` with a dark 8x8 square in the top-left corner."""
    frames = []
    for t in range(n):
        px = np.full((H, W, 3), level(t), np.uint8)
        px[:8, :8] = 0
        frames.append(px)
    return write_video(path, frames)


def centre_level(x: torch.Tensor) -> list[float]:
    """The mean of each frame's lower-right quarter (away from the square), per frame of a (T, H, W, C) tensor."""
    return x[:, x.shape[1] // 2:, x.shape[2] // 2:].float().mean(dim=(1, 2, 3)).tolist()


# ----------------------------------------------------------------------------- the decoder
def test_frames_are_counted_and_decoded_in_their_order(tmp_path):
    path = ramp(tmp_path / "ramp.mp4")
    assert video_frame_count(str(path)) == 24
    assert video_frame_size(str(path)) == (H, W)
    assert video_channels(str(path)) == 3
    x = read_video_frames(str(path), range(24), 3)
    assert x.dtype == torch.uint8 and x.shape == (24, H, W, 3) and x.is_contiguous()
    np.testing.assert_allclose(centre_level(x), [level(t) for t in range(24)], atol=3)
    assert x[:, :6, :6].float().mean() < 8  # the dark square is where it was written: rows, columns, not swapped


def test_a_matroska_video_without_a_frame_count_in_its_header_is_counted_by_decoding(tmp_path):
    path = ramp(tmp_path / "ramp.MKV", n=13)  # suffixes are case-insensitive
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # the header has no count to trust
    assert video_frame_count(str(path)) == 13


def test_repeated_and_loop_padded_indices_decode_each_frame_once_in_the_order_asked(tmp_path):
    path = str(ramp(tmp_path / "ramp.avi"))
    x = read_video_frames(path, [0, 2, 4, 0, 2, 4, 0, 2], 3)  # a loop-padded clip
    np.testing.assert_allclose(centre_level(x), [level(t) for t in (0, 2, 4, 0, 2, 4, 0, 2)], atol=3)
    assert torch.equal(x[0], x[3]) and torch.equal(x[1], x[7])
    y = read_video_frames(path, [5, 5, 23, 23], 3)
    assert torch.equal(y[0], y[1]) and torch.equal(y[2], y[3]) and not torch.equal(y[1], y[2])
    assert torch.equal(y[2], read_video_frames(path, [23], 3)[0])


def test_grey_reads_luma_and_a_size_resizes_as_image_frames_are_resized(tmp_path):
    from torchvision.transforms.v2 import functional as tvf

    path = str(ramp(tmp_path / "ramp.mp4"))
    grey = read_video_frames(path, [1, 20], 1)
    assert grey.shape == (2, H, W, 1)
    np.testing.assert_allclose(centre_level(grey), [level(1), level(20)], atol=3)
    full = read_video_frames(path, [3, 7], 3)
    small = read_video_frames(path, [3, 7], 3, (16, 20))
    assert small.shape == (2, 16, 20, 3) and small.dtype == torch.uint8
    for k in range(2):  # each frame as files.decode_image resizes a (C, H, W) image: antialiased bilinear
        want = tvf.resize(full[k].permute(2, 0, 1).contiguous(), [16, 20], antialias=True).permute(1, 2, 0)
        assert torch.equal(small[k], want)
    assert torch.equal(read_video_frames(path, [3, 7], 3, (H, W)), full)  # the same size: not resized


# ----------------------------------------------------------------------------- reads from a key frame
def textured(n: int, seed: int = 0) -> list:
    """``n`` frames of a moving bright block over per-frame noise (so that inter frames differ from key frames)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        px = np.full((H, W, 3), level(t) % 200, np.uint8)
        px[8:20, (2 * t) % 24:(2 * t) % 24 + 12] = 250
        out.append(np.clip(px + rng.integers(0, 24, px.shape), 0, 255).astype(np.uint8))
    return out


def _counting_frames(monkeypatch) -> list:
    """Make ``_Video.frames`` note how many frames each decoding pass gave (the last number: the last read's)."""
    given = []
    frames = video_module._Video.frames

    def counted(self):
        given.append(0)
        for f in frames(self):
            given[-1] += 1
            yield f

    monkeypatch.setattr(video_module._Video, "frames", counted)
    return given


ENCODERS = [("mpeg4", None), ("libx264", {"x264-params": "bframes=3:open-gop=1:keyint=12:min-keyint=4"}),
            ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"})]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
@pytest.mark.parametrize("codec, options", ENCODERS, ids=[c for c, _ in ENCODERS])
def test_a_read_from_a_recorded_key_frame_gives_the_frames_of_a_read_from_the_start(tmp_path, monkeypatch, suffix,
                                                                                   codec, options):
    """MPEG-4 Part 2, H.264 with B-frames and an open GOP, VP9; MP4, Matroska, AVI. Pixels compared exactly."""
    n = 60
    path = str(write_video(tmp_path / f"v{suffix}", textured(n), codec=codec, gop=12, options=options))
    count, keys = video_index(path)
    assert count == n and keys.dtype == np.int64 and keys.ndim == 2 and len(keys) >= 3, keys
    assert np.all(np.diff(keys[:, 0]) > 0) and np.all(keys[:, 0] > 0) and np.all(keys[:, 0] < n)
    given = _counting_frames(monkeypatch)
    whole = read_video_frames(path, range(n), 3)
    assert given == [n]
    for first in (0, 5, int(keys[0, 0]), int(keys[1, 0]) + 1, n - 8, n - 1):
        rows = [first, min(first + 3, n - 1), min(first + 7, n - 1), first]  # repeats and order kept
        got = read_video_frames(path, rows, 3, keys=keys)
        assert torch.equal(got, whole[rows]), (first, given)
        start = int(keys[keys[:, 0] <= first, 0].max()) if (keys[:, 0] <= first).any() else 0
        assert given[-1] <= max(rows) - start + 1 + 4, (first, start, given)  # from the key frame on (+ leading)
    assert given[-1] < n // 2  # the last read did not decode from the start


def test_a_key_frame_record_the_decoder_disagrees_with_falls_back_to_the_start_with_the_same_frames(tmp_path,
                                                                                                     monkeypatch):
    n = 48
    path = str(write_video(tmp_path / "v.mp4", textured(n, seed=1), gop=12))
    _, keys = video_index(path)
    whole = read_video_frames(path, range(n), 3)
    given = _counting_frames(monkeypatch)
    late = keys.copy()
    late[-1, 0] += 1  # the last key frame recorded one position late: the decoder shows it elsewhere
    rows = [int(keys[-2, 0]) + 1, int(keys[-1, 0]) + 2]  # from after the last-but-one key frame to past the last
    assert rows[1] < n
    for wrong in (late,
                  keys + np.array([0, 1]),  # timestamps no frame has
                  np.array([[rows[0], 10**9]])):  # a key frame past the file's end
        got = read_video_frames(path, rows, 3, keys=wrong)
        assert torch.equal(got, whole[rows]), wrong
        assert given[-1] == rows[1] + 1  # the read that counted: from the start
    assert video_index(path)[1].tolist() == keys.tolist()  # the same record every time


def test_clip_data_of_video_files_records_their_key_frames_and_reads_from_them(tmp_path, monkeypatch):
    root = tmp_path / "d"
    rows = []
    for i in range(4):  # two classes: one class is refused
        rel = f"rgb/s{i}.mp4"
        write_video(root / rel, textured(40, seed=i), gop=10)
        rows.append({"x.rgb": rel, "label": i % 2, "split": ("train", "train", "val", "test")[i]})
    write_rows(root, rows)
    data = load_dataset(load_config(None, [f"data.name={root / 'manifest.csv'}", *CLIP, "data.clip.stride=2"]).data)
    (src,) = data.sources["rgb"]
    assert src.video and len(src.keys) == 4 and all(0 < k[0, 0] <= 10 for k in src.keys)
    assert pickle.loads(pickle.dumps(data)).sources["rgb"][0].keys[2].tolist() == src.keys[2].tolist()
    given = _counting_frames(monkeypatch)
    frames = np.array([30, 32, 34, 36])
    clip = data.read_clip(1, ["rgb"], frames)["rgb"]
    start = int(src.keys[1][src.keys[1][:, 0] <= 30, 0].max())
    assert given == [37 - start] and start > 0  # from the last key frame at or before frame 30
    whole = read_video_frames(str(root / "rgb/s1.mp4"), range(40), 3)
    assert torch.equal(clip.permute(1, 2, 3, 0), whole[frames])


def test_a_frame_past_the_end_is_a_data_error_naming_the_file(tmp_path):
    path = str(ramp(tmp_path / "short.mp4", n=5))
    with pytest.raises(DataError, match=r"short\.mp4' has 5 frames, but frame 5 \(0-based\)"):
        read_video_frames(path, [3, 5], 3)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_corrupt_video_is_one_sentence_naming_the_file(tmp_path, how):
    path = ramp(tmp_path / "broken.mp4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00not a video at all\x01" * 200)
    with pytest.raises(DataError) as exc:
        video_frame_count(str(path))
    msg = str(exc.value)
    assert str(path) in msg and "cannot be decoded as a video" in msg and "\n" not in msg


def test_without_pyav_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = str(ramp(tmp_path / "ramp.mp4", n=3))
    monkeypatch.setitem(sys.modules, "av", None)  # ``import av`` raises ImportError
    for call in (lambda: video_frame_count(path), lambda: read_video_frames(path, [0], 3)):
        with pytest.raises(UserError) as exc:
            call()
        assert type(exc.value) is UserError
        assert 'pip install "mmhal[video]"' in str(exc.value) and "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- manifests of videos
def write_video_manifest(root: Path, n_per_class: int = 6, classes: int = 3, frames: int = 8,
                         short: dict[int, int] | None = None, gop: int = 0) -> Path:
    """``root/manifest.csv``: per sample an RGB video ``rgb/<key>.mp4`` (the fixtures' moving square; a key frame
    every ``gop`` frames, 0: the encoder's default) and a depth folder of 16-bit PNGs
    ``depth/<key>/depth_<n>.png``, both ``frames`` frames (``short``: sample -> the video's frame count instead);
    split by sample position: train, val, test, train, train, test, ..."""
    rows = []
    for i, label, key in sample_keys(classes, n_per_class):
        n = (short or {}).get(i, frames)
        write_video(root / "rgb" / f"{key}.mp4", [frame_pixels(key, label, "rgb", t, (H, W)) for t in range(n)],
                    gop=gop)
        write_frames(root / "depth" / key, key, label, "depth", range(1, frames + 1), "depth_{}.png", (H, W))
        rows.append({"label": label, "split": ("train", "val", "test", "train", "train", "test")[i % 6],
                     "group": key, "x.rgb": f"rgb/{key}.mp4", "x.depth": f"depth/{key}"})
    return write_rows(root, rows)


def _load(path: Path, *extra: str):
    return load_dataset(load_config(None, [f"data.name={path}", *CLIP, *extra]).data)


class _Reads(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.data.read(i, ["rgb", "depth"])["rgb"]


def test_a_video_column_pairs_with_a_depth_folder_column_and_reads_in_worker_processes(tmp_path):
    path = write_video_manifest(tmp_path, n_per_class=2, classes=2, frames=6)
    data = _load(path, "data.depth_range=1000,3500")
    assert [s.video for s in data.sources["rgb"]] == [True] and not data.sources["depth"][0].video
    assert data.num_frames.tolist() == [6] * 4 and data.frame_size == (H, W)
    assert data.shapes == {"rgb": (3, 4, 16, 16), "depth": (1, 4, 16, 16)}
    clip = data.read_clip(2, ["rgb", "depth"], np.array([0, 1, 4, 4]))  # sample 2: c1-0, the square moving left
    assert clip["rgb"].shape == (3, 4, H, W) and clip["depth"].shape == (1, 4, H, W)
    got = clip["rgb"].permute(1, 2, 3, 0).numpy().astype(float).mean(-1)  # brightness: chroma is subsampled

    def error(ts) -> float:
        want = np.stack([frame_pixels("c1-0", 1, "rgb", t, (H, W)) for t in ts]).astype(float).mean(-1)
        return float(np.abs(got - want).mean())

    assert error((0, 1, 4, 4)) < 7 < 10 < error((4, 1, 0, 0))  # the frames asked for, not others
    assert len(data.fingerprint()) == 16
    pickle.dumps(data)  # no decoder is held: the dataset goes to worker processes as it is
    loader = torch.utils.data.DataLoader(_Reads(data), batch_size=None, num_workers=1)
    for i, x in enumerate(loader):
        assert torch.equal(x, data.read(i, ["rgb", "depth"])["rgb"])


def test_optical_flow_folders_pair_with_an_rgb_video_by_count_with_one_frame_fewer(tmp_path):
    path = write_video_manifest(tmp_path, n_per_class=2, classes=2, frames=6)
    rows = list(csv.DictReader(open(path)))
    for row in rows:
        key = row["group"]
        for axis in ("x", "y"):
            write_frames(tmp_path / "flow" / key, key, int(row["label"]), f"flow_{axis}", range(1, 6),
                         f"flow_{axis}_{{:05d}}.jpg", (H, W))
        row["x.flow"] = f"flow/{key}"
    write_rows(tmp_path, rows)
    data = _load(path)
    assert data.num_frames.tolist() == [6] * 4 and data.channels("flow") == 2
    clip = data.read_clip(0, ["rgb", "flow"], np.array([2, 3, 4, 5]))  # RGB's last frame takes flow's last
    assert clip["flow"].shape == (2, 4, H, W) and torch.equal(clip["flow"][:, 2], clip["flow"][:, 3])
    for axis in ("x", "y"):
        (tmp_path / "flow" / "c0-1" / f"flow_{axis}_00005.jpg").unlink()
    with pytest.raises(DataError, match="line 3 of 'manifest.csv' has 6 'rgb' frames but 4 'flow' frames"):
        _load(path)


def test_a_video_with_other_frame_count_than_its_depth_folder_is_one_sentence_naming_the_sample(tmp_path, capsys):
    from mmhal.cli import main

    path = write_video_manifest(tmp_path / "d", n_per_class=2, classes=2, frames=6, short={1: 5})
    rc = main(["run", "--data", str(path), "--student", "rgb", "--methods", "mmh", "--seeds", "1", "--epochs", "1",
               "--out", str(tmp_path / "run"), "--no-progress", *CLIP])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("mmhal: error: ")]
    assert len(errors) == 1
    assert "the sample on line 3 of 'manifest.csv' has 5 'rgb' frames but 6 'depth' frames" in errors[0]


def test_a_video_cell_of_optical_flow_or_a_column_mixing_videos_and_folders_is_refused(tmp_path):
    path = write_video_manifest(tmp_path, n_per_class=2, classes=2, frames=4)
    text = path.read_text()
    path.write_text(text.replace("x.rgb", "x.flow"))
    with pytest.raises(DataError, match=r"is a video file, but optical flow \('flow'\) is read from folders"):
        _load(path)
    write_frames(tmp_path / "rgbf" / "c1-0", "c1-0", 1, "rgb", range(1, 5), "img_{}.jpg", (H, W))
    path.write_text(text.replace("rgb/c1-0.mp4", "rgbf/c1-0"))
    with pytest.raises(DataError, match="is a folder of frames but the first 'rgb' cell names a video file"):
        _load(path)
    path.write_text(text.replace("rgb/c1-0.mp4", "rgb/gone.webm"))
    with pytest.raises(DataError, match=r"line 4 of 'manifest.csv', column 'x.rgb': video file '.*gone\.webm' does"):
        _load(path)


@pytest.mark.slow
def test_a_manifest_of_rgb_videos_and_depth_frame_folders_runs_end_to_end(tmp_path):
    from mmhal.cli import main

    """Videos with a key frame every 3 frames: the clips are read from recorded key frames. `mmhal predict` on the
    manifest then scores every test view as the run did (the same logits)."""
    from mmhal.engine.artifacts import open_run
    from mmhal.engine.predict import load_networks, open_inputs, predict_logits

    path = write_video_manifest(tmp_path / "d", n_per_class=6, classes=3, frames=8, gop=3)
    out = tmp_path / "run"
    rc = main(["run", "--data", str(path), "--student", "rgb", "--methods", "mmh", "--seeds", "1", "--epochs", "1",
               "--out", str(out), "--no-progress", "model.width=4", "train.batch_size=4", "workers=1",
               "train.loader_workers=0", *CLIP, "data.depth_range=1000,3500", f"cache_dir={tmp_path / 'cache'}"])
    assert rc == 0
    report = json.loads((out / "results.json").read_text())
    assert {"teacher", "mmh"} <= set(report["results"])
    assert report["data_info"]["frames"] == {"min": 8, "median": 8.0, "max": 8}
    assert report["data_info"]["modalities"] == {"rgb": [3, 4, 16, 16], "depth": [1, 4, 16, 16]}
    assert 0.0 <= report["results"]["mmh"]["accuracy"]["mean"] <= 1.0

    run = open_run(out)
    data = load_dataset(run.config.data)
    assert all(len(k) >= 1 and k[0, 0] <= 3 for k in data.sources["rgb"][0].keys)  # key frames recorded
    nets = load_networks(run, "mmh")
    z = predict_logits(nets, open_inputs(str(path), None, run, nets), 64)
    want = torch.load(out / "jobs" / "mmh-seed0.pt", weights_only=True)["logits"].numpy()
    np.testing.assert_allclose(z[0, data.indices("test")], want, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- the frame-count cache
def _indexed(monkeypatch) -> list:
    """Make ``video.video_index`` (the decoding pass that counts a file's frames) note the files it decodes."""
    seen = []
    index = video_module.video_index

    def noted(path):
        seen.append(Path(path).name)
        return index(path)

    monkeypatch.setattr(video_module, "video_index", noted)
    return seen


def test_video_frame_counts_are_kept_in_the_cache_and_counted_again_when_a_file_changes(tmp_path, monkeypatch):
    path = write_video_manifest(tmp_path / "d", n_per_class=2, classes=2, frames=6)
    seen = _indexed(monkeypatch)
    first = _load(path)
    assert len(seen) == 4
    kept = sorted((tmp_path / "mmhal-cache" / "video-index").glob("*.npy"))  # conftest: MMHAL_CACHE
    assert len(kept) == 4

    seen.clear()
    again = _load(path)
    assert seen == []  # every count and key frame from the cache
    assert again.num_frames.tolist() == first.num_frames.tolist()
    for a, b in zip(first.sources["rgb"][0].keys, again.sources["rgb"][0].keys):
        assert a.dtype == b.dtype == np.int64 and a.tolist() == b.tolist()

    # a video rewritten with other frames (and so another size or time) is counted again, and only it
    victim = tmp_path / "d" / str(again.sources["rgb"][0].folders[1])
    write_video(victim, textured(6, seed=9))
    seen.clear()
    assert _load(path).num_frames.tolist() == first.num_frames.tolist()
    assert seen == [victim.name]

    # a damaged or foreign cache file is not used (nor unpickled): the video is decoded again
    files = sorted((tmp_path / "mmhal-cache" / "video-index").glob("*.npy"))
    assert len(files) == 5  # the rewritten video's new entry beside its old one
    for f in files[:-1]:
        f.write_bytes(b"not an index")
    with open(files[-1], "wb") as f:  # an object array: loading it would unpickle
        np.save(f, np.array([[6, 0]], dtype=object), allow_pickle=True)
    seen.clear()
    assert _load(path).num_frames.tolist() == first.num_frames.tolist()
    assert len(seen) == 4


def test_a_cache_that_cannot_be_written_is_one_warning_and_the_counts_are_still_right(tmp_path, monkeypatch):
    path = write_video_manifest(tmp_path / "d", n_per_class=2, classes=2, frames=6)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("MMHAL_CACHE", str(blocked))
    data = _load(path)
    assert data.num_frames.tolist() == [6] * 4
    (warning,) = [w for w in data.info.get("warnings", []) if "video files" in w]
    assert warning.startswith("the frame counts of 4 video files could not be kept in the cache (")
    assert warning.endswith("set $MMHAL_CACHE to a writable folder")
    assert blocked.read_text() == "not a folder"

"""What does reading clips from video files cost, from a recorded key frame against from the first frame?

``mmhal.data.video.read_video_frames`` starts a read at the last key frame (recorded when the frames were
counted, ``video_index``) at or before the clip's first frame; without the record it decodes from the first
frame. Both give the same frames (tests/test_video.py); this script measures what the record saves.

It writes ``--videos`` synthetic RGB videos (a moving block over per-frame noise, so inter frames are not
empty) of ``--frames`` frames at ``--frame-size`` (default 240x320 at 25 fps, 186 frames: the size, rate and
mean length of UCF101's clips) with each ``--codecs`` entry (``mpeg4``: MPEG-4 Part 2 as UCF101's Xvid AVIs,
a key frame every 12 frames; ``h264``: libx264 with 3 B-frames, an open GOP and a key frame at most every 250
frames, x264's default), into ``--root`` (or a temporary folder). Then, per codec, in this process with one
torch thread: ``--clips`` training-clip reads (``--length`` consecutive frames from a uniformly drawn start, the
same starts for both ways, drawn from ``--seed``), each ``read_video_frames(path, frames, 3)`` from the first
frame and ``read_video_frames(..., keys=...)`` from the key frame, interleaved clip by clip. The table gives
CPU ms per clip and clips per CPU second each way, the frames decoded per clip, and the speed-up; first, the CPU
ms per video of the counting pass (``video_index``, when the data are loaded) and of reading its result back
from the cache (``cached_index``, every later load).

    taskset -c 0 python benchmarks/video_clips.py
    taskset -c 0 python benchmarks/video_clips.py --codecs mpeg4 --frames 300 --clips 100 --json video.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent / "src"))

CODECS = {"mpeg4": ("mpeg4", ".avi", {}, 12),
          "h264": ("libx264", ".mp4", {"x264-params": "bframes=3:open-gop=1"}, 0)}


def write(path: Path, codec: str, frames: int, size: tuple[int, int], seed: int) -> Path:
    """A synthetic video at ``path`` (see the module docstring); kept when it exists."""
    import av

    if path.exists():
        return path
    name, _, options, gop = CODECS[codec]
    rng = np.random.default_rng(seed)
    h, w = size
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(tmp), mode="w") as c:
        s = c.add_stream(name, rate=25)
        s.height, s.width, s.pix_fmt, s.bit_rate = h, w, "yuv420p", 1_500_000
        if gop:
            s.codec_context.gop_size = gop
        if options:
            s.options = dict(options)
        for t in range(frames):
            px = np.full((h, w, 3), 40 + (t % 50), np.uint8)
            x = (5 * t) % (w - w // 4)
            px[h // 3:h // 3 + h // 4, x:x + w // 4] = 230
            px = np.clip(px + rng.integers(0, 16, px.shape, dtype=np.uint8), 0, 255).astype(np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(px, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    tmp.rename(path)
    return path


def decoded_frames(path: str, frames, keys) -> int:
    """How many frames a read of ``frames`` decodes (``_Video.frames`` counted)."""
    from mmhal.data import video

    given = [0]
    original = video._Video.frames

    def counted(self):
        for f in original(self):
            given[0] += 1
            yield f

    video._Video.frames = counted
    try:
        video.read_video_frames(path, frames, 3, keys=keys)
    finally:
        video._Video.frames = original
    return given[0]


def measure(paths, length: int, clips: int, seed: int) -> dict:
    from mmhal.data.video import cached_index, read_video_frames, video_index

    video_index(paths[0])  # warm-up
    c0 = time.process_time()
    index = {p: video_index(p) for p in paths}
    count_ms = 1000 * (time.process_time() - c0) / len(paths)
    with tempfile.TemporaryDirectory() as cache:
        for p in paths:
            cached_index(p, cache)  # written
        c0 = time.process_time()
        for p in paths:
            cached_index(p, cache)  # read back
        hit_ms = 1000 * (time.process_time() - c0) / len(paths)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(clips):
        p = paths[int(rng.integers(len(paths)))]
        start = int(rng.integers(index[p][0] - length + 1))
        draws.append((p, np.arange(start, start + length)))
    cpu = {"start": 0.0, "key": 0.0}
    read_video_frames(*draws[0], 3)  # warm-up: the files in the page cache, FFmpeg's tables
    for p, frames in draws:
        for way, keys in (("start", None), ("key", index[p][1])):
            c0 = time.process_time()
            read_video_frames(p, frames, 3, keys=keys)
            cpu[way] += time.process_time() - c0
    sample = draws[: min(20, len(draws))]
    return {
        "count_ms_per_video": count_ms,  # the counting pass (video_index): decoding every frame once
        "cached_count_ms_per_video": hit_ms,  # the same from the cache (cached_index)
        "key_frames_per_video": float(np.mean([len(index[p][1]) for p in paths])),
        "ms_per_clip": {w: 1000 * t / clips for w, t in cpu.items()},
        "clips_per_cpu_s": {w: clips / t for w, t in cpu.items()},
        "frames_decoded_per_clip": {"start": float(np.mean([decoded_frames(p, f, None) for p, f in sample])),
                                    "key": float(np.mean([decoded_frames(p, f, index[p][1]) for p, f in sample]))},
        "speed_up": cpu["start"] / cpu["key"],
    }


def main(argv=None) -> int:
    def pair(text):
        h, w = (int(v) for v in text.split(","))
        return h, w

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="folder for the videos (kept; reused)")
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--frames", type=int, default=186, help="frames per video")
    p.add_argument("--frame-size", type=pair, default=(240, 320), metavar="H,W")
    p.add_argument("--codecs", default="mpeg4,h264", help=f"comma-separated, of: {', '.join(CODECS)}")
    p.add_argument("--length", type=int, default=16, help="frames per clip")
    p.add_argument("--clips", type=int, default=60, help="clip reads per way and codec")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the records to this file")
    args = p.parse_args(argv)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if not codecs or any(c not in CODECS for c in codecs) or args.frames < args.length or args.videos < 1:
        print(f"video_clips: --codecs from {', '.join(CODECS)}, --frames >= --length, --videos >= 1", file=sys.stderr)
        return 2
    try:
        import av  # noqa: F401
    except ImportError:
        print('video_clips: needs PyAV: pip install "mmhal[video]"', file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    from clip_loading import device_name

    tmp = None if args.root else tempfile.TemporaryDirectory()
    root = Path(args.root or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    print(f"# {device_name()}; torch {torch.__version__}; {args.videos} videos x {args.frames} frames of "
          f"{args.frame_size[0]}x{args.frame_size[1]} per codec; {args.clips} clips of {args.length} frames each way")
    print(f"{'codec':8} {'count ms':>8} {'cached':>6} {'keys/video':>10} {'from start ms':>14} {'from key ms':>12} "
          f"{'clips/CPU s':>16} {'frames decoded':>16} {'speed-up':>8}")
    for codec in codecs:
        suffix = CODECS[codec][1]
        tag = f"{codec}-{args.frames}f-{args.frame_size[0]}x{args.frame_size[1]}"
        paths = [str(write(root / f"{tag}-{i}{suffix}", codec, args.frames, args.frame_size, args.seed + i))
                 for i in range(args.videos)]
        r = measure(paths, args.length, args.clips, args.seed)
        r.update(codec=codec, videos=args.videos, frames=args.frames, frame_size=list(args.frame_size),
                 length=args.length, clips=args.clips, device_name=device_name(), torch=torch.__version__)
        records.append(r)
        ms, rate, dec = r["ms_per_clip"], r["clips_per_cpu_s"], r["frames_decoded_per_clip"]
        print(f"{codec:8} {r['count_ms_per_video']:8.1f} {r['cached_count_ms_per_video']:6.2f} "
              f"{r['key_frames_per_video']:10.1f} {ms['start']:14.1f} {ms['key']:12.1f} "
              f"{rate['start']:7.1f} -> {rate['key']:6.1f} {dec['start']:7.1f} -> {dec['key']:5.1f} "
              f"{r['speed_up']:7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

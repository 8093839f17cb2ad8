"""How many training clips per second does clip loading deliver from folders of JPEG/PNG frames, per CPU core?

Target (issue): >= 50 clips/s per CPU core of 16-frame 112x112 RGB + depth clips read from JPEG/PNG frames.

The script writes (into a temporary folder, or ``--root``) ``--samples`` synthetic samples of ``--frames``
frames each, at a stored frame size ``--frame-size`` (default 128x171, the size the paper's pipelines resize
videos to before a 112x112 crop): RGB JPEG frames ``img_%05d.jpg`` and 16-bit depth PNG frames
``depth_<n>.png`` in millimetres, one folder per sample and modality, and a ``manifest.csv`` naming them
(``tests/clip_fixtures.py``: a moving bright square with per-pixel noise, so the files do not compress to
nothing). It reads them back through ``mmhal.data.base.load_dataset`` as a ``ClipData`` with
``data.clip.length=16 data.clip.size=112,112 data.depth_range=500,4500`` (frames decoded at their stored size)
and times training clips, ``ClipData.sample(i, ["rgb", "depth"], "train", seed, epoch)``: the random clip's
16 frames of each modality decoded (depth clipped to 500-4500 mm and scaled to uint8), then one random
resized crop to 112x112 and a horizontal flip shared by both modalities; the outputs are uint8
(3, 16, 112, 112) and (1, 16, 112, 112).

  (a) ``in-process``: one process, ``torch.set_num_threads(1)``: clips/s of one CPU core;
  (b) ``loader W``: the trainer's own ``engine.samples.SampleDataset`` (mode ``train``) through a
      ``torch.utils.data.DataLoader`` with ``W`` worker processes (each with one torch thread, as torch sets),
      batches of ``--batch`` clips; clips/s, and clips/s per core = rate / W. The first (untimed) epoch
      starts the workers.

``CPU s`` is the CPU time (user + system) the measurement used: of this process in process; of this process
and the loader's workers (``/proc/<pid>/stat``) through the loader. ``clips/CPU s`` = clips / CPU s is the rate
per fully used core, the figure to read when other jobs share the cores (wall-clock rates then fall with the
share of the core this job gets; CPU time rises less, through shared caches).

Every figure is over ``--passes`` passes over all samples (pass p is training epoch p + 1: other clips and
crops each pass; all draws are functions of (seed, epoch, sample), so two runs read the same frames and
produce the same crops). Warm-up (pass 0 in process: the folder listings are cached, the files are in the page
cache; the first loader epoch) is excluded. Nothing prints progress; the table comes at the end.

``--breakdown`` also times the parts of one clip on its own, in process: reading the frame files' bytes,
decoding the 16 JPEGs (and stacking them), decoding the 16 PNGs, stacking them and scaling depth to uint8, the crop
+ flip (``augment_clip``), and the whole ``sample()`` (CPU time; the parts do not include Python's own overhead
in ``read_clip``, so they add up to a little less than the whole).

    python benchmarks/clip_loading.py                               # 64 samples x 32 frames, 128x171, workers 1
    taskset -c 0 python benchmarks/clip_loading.py --workers 1 --breakdown --json clips.json
    python benchmarks/clip_loading.py --workers 1,2,4 --samples 256 --passes 3 --root /tmp/clipbench
    taskset -c 0 python benchmarks/clip_loading.py --depth-noise 3 --root /tmp/clipbench3   # camera-like depth noise
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))  # clip_fixtures: the frame writers of the tests

TARGET = 50.0  # clips/s per CPU core
MODALITIES = ["rgb", "depth"]
CLASSES = 4  # the fixtures' motion classes (right, left, down, still)


def device_name() -> str:
    """The CPU's model name (``step_overhead.device_name``, this folder's other timing script)."""
    import torch
    from step_overhead import device_name as name_of

    return name_of(torch.device("cpu"))


def make(root: Path, samples: int, frames: int, size: tuple[int, int], depth_noise: float = 50.0) -> Path:
    """``root/manifest.csv`` over ``samples`` samples of ``frames`` RGB JPEG + 16-bit depth PNG frames of ``size``
    (H, W); label = sample % 4; sample 0 is ``val`` (a manifest needs one), the rest ``train``.
    Folders already written (same sample count, frames and size) are kept."""
    from clip_fixtures import write_frames

    root.mkdir(parents=True, exist_ok=True)
    stamp = root / "written.json"
    want = {"samples": samples, "frames": frames, "size": list(size), "depth_noise": depth_noise}
    manifest = root / "manifest.csv"
    if stamp.exists() and manifest.exists() and json.loads(stamp.read_text()) == want:
        return manifest
    rows = []
    for i in range(samples):
        label, key = i % CLASSES, f"s{i:05d}"
        nums = range(1, frames + 1)
        write_frames(root / "rgb" / key, key, label, "rgb", nums, "img_{:05d}.jpg", size)
        write_frames(root / "depth" / key, key, label, "depth", nums, "depth_{}.png", size, depth_noise)
        rows.append({"label": label, "split": "val" if i == 0 else "train", "group": key,
                     "x.rgb": f"rgb/{key}", "x.depth": f"depth/{key}"})
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    stamp.write_text(json.dumps(want) + "\n")
    return manifest


def load(manifest: Path, length: int, size: tuple[int, int]):
    from mmhal.config import load_config
    from mmhal.data.base import load_dataset

    cfg = load_config(overrides=[f"data.name={manifest}", f"data.clip.length={length}",
                                 f"data.clip.size={size[0]},{size[1]}", "data.depth_range=500,4500"])
    return load_dataset(cfg.data)


def bytes_per_frame(root: Path) -> dict:
    out = {}
    for m, ext in (("rgb", ".jpg"), ("depth", ".png")):
        sizes = [p.stat().st_size for p in (root / m).rglob(f"*{ext}")]
        out[m] = float(np.mean(sizes)) if sizes else 0.0
    return out


def cpu_seconds(pids) -> float:
    """User + system CPU seconds used so far by the processes ``pids`` (Linux /proc; 0 where unreadable)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def in_process(data, passes: int, seed: int) -> dict:
    """Clips/s of ``data.sample(i, rgb+depth, "train", seed, epoch)`` over every sample, ``passes`` times."""
    n = len(data.labels)
    for i in range(n):  # warm-up: epoch 0 (listings cached, files in the page cache)
        data.sample(i, MODALITIES, "train", seed, 0)
    t0, c0 = time.perf_counter(), time.process_time()
    for p in range(passes):
        for i in range(n):
            data.sample(i, MODALITIES, "train", seed, p + 1)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    clips = n * passes
    return {"mode": "in-process", "workers": 0, "cores": 1, "clips": clips, "seconds": sec, "cpu_seconds": cpu,
            "clips_per_s": clips / sec, "clips_per_s_per_core": clips / sec, "clips_per_cpu_s": clips / cpu}


def through_loader(data, workers: int, batch: int, passes: int, seed: int) -> dict:
    """Clips/s of the trainer's SampleDataset (mode train) through a DataLoader with ``workers`` processes."""
    from torch.utils.data import DataLoader

    from mmhal.engine.samples import SampleDataset, _whole_batch

    n = len(data.labels)
    ds = SampleDataset(data, np.arange(n), MODALITIES, None, seed, mode="train")

    class Batches:  # a fixed order (deterministic); the epoch travels with the positions
        epoch = 0

        def __iter__(self):
            for s in range(0, n, batch):
                yield [(p, self.epoch) for p in range(s, min(s + batch, n))]

        def __len__(self):
            return (n + batch - 1) // batch

    sampler = Batches()
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=_whole_batch,
                        persistent_workers=workers > 0)

    def epoch(e: int) -> int:
        sampler.epoch = e
        count = 0
        for inputs, labels, _ in loader:
            assert tuple(inputs["rgb"].shape[1:]) == (3, data.clip.length, *data.clip.out_size)
            count += int(labels.shape[0])
        return count

    t0 = time.perf_counter()
    epoch(0)  # warm-up: starts the workers
    first = time.perf_counter() - t0
    it = loader._iterator  # the persistent workers (None with workers=0)
    pids = [w.pid for w in getattr(it, "_workers", [])]
    t0, c0, w0 = time.perf_counter(), time.process_time(), cpu_seconds(pids)
    clips = sum(epoch(p + 1) for p in range(passes))
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0 + cpu_seconds(pids) - w0
    cores = max(workers, 1)
    return {"mode": f"loader {workers}", "workers": workers, "cores": cores, "batch": batch, "clips": clips,
            "seconds": sec, "first_epoch_s": first, "cpu_seconds": cpu, "clips_per_s": clips / sec,
            "clips_per_s_per_core": clips / sec / cores, "clips_per_cpu_s": clips / cpu}


def breakdown(data, passes: int, seed: int) -> dict:
    """CPU milliseconds per clip of each part of ``sample(i, rgb+depth, "train")``, timed apart in process."""
    import torchvision.io as tio

    from mmhal.data.clips import augment_clip, clip_indices
    from mmhal.data.frames import _listing, _range_table

    n = len(data.labels)
    jobs = []  # (i, epoch, rgb paths, depth paths)
    for p in range(passes):
        for i in range(n):
            rows = clip_indices(int(data.num_frames[i]), data.clip, "train", seed, p + 1, i)[0].tolist()
            paths = {}
            for m in MODALITIES:
                src = data.sources[m][0]
                folder = data.folder(src, i)
                names = _listing(folder, src.pattern)
                paths[m] = [os.path.join(folder, names[k]) for k in rows]
            jobs.append((i, p + 1, paths))
    raw = {m: [[tio.read_file(f) for f in paths[m]] for _, _, paths in jobs] for m in MODALITIES}
    t = {}

    def timed(name, fn):
        fn(0)  # warm-up
        t0 = time.process_time()
        out = [fn(j) for j in range(len(jobs))]
        t[name] = 1e3 * (time.process_time() - t0) / len(jobs)
        return out

    timed("read files (rgb + depth)", lambda j: [tio.read_file(f) for m in MODALITIES for f in jobs[j][2][m]])
    # as ClipData.read_clip: frames stacked channel-last (T, H, W, C), the (C, T, H, W) clip a view of them
    rgb = timed("decode 16 JPEG + stack (rgb)",
                lambda j: torch.stack([tio.decode_image(b, mode=tio.ImageReadMode.RGB).permute(1, 2, 0)
                                       for b in raw["rgb"][j]]).permute(3, 0, 1, 2))
    png = timed("decode 16 PNG (depth)", lambda j: [tio.decode_image(b, mode=tio.ImageReadMode.GRAY)
                                                    for b in raw["depth"][j]])
    lo, hi = (float(v) for v in data.value_range["depth"])
    table = _range_table(lo, hi)  # what ClipData._decode does to a 16-bit frame decoded at its stored size
    depth = timed("depth stack + mm -> uint8",
                  lambda j: torch.from_numpy(np.take(table, torch.stack([f.permute(1, 2, 0) for f in png[j]]).numpy()))
                  .permute(3, 0, 1, 2))
    timed("crop + flip (augment_clip)", lambda j: augment_clip({"rgb": rgb[j], "depth": depth[j]}, data.clip, seed,
                                                                jobs[j][1], jobs[j][0]))
    timed("whole sample()", lambda j: data.sample(jobs[j][0], MODALITIES, "train", seed, jobs[j][1]))
    return t


def pair(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="folder for the frames (kept; reused when it holds the same samples); "
                                  "default: a temporary folder, removed at the end")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--frames", type=int, default=32, help="frames per sample (>= --length)")
    p.add_argument("--frame-size", type=pair, default=(128, 171), metavar="H,W", help="stored frame size")
    p.add_argument("--length", type=int, default=16, help="frames per clip (data.clip.length)")
    p.add_argument("--size", type=pair, default=(112, 112), metavar="H,W", help="crop size (data.clip.size)")
    p.add_argument("--passes", type=int, default=2, help="timed passes over all samples per measurement")
    p.add_argument("--workers", default="1", help="comma-separated DataLoader worker counts (0: in the main process)")
    p.add_argument("--batch", type=int, default=8, help="clips per DataLoader batch")
    p.add_argument("--depth-noise", type=float, default=50.0, metavar="MM",
                   help="per-pixel Gaussian noise of the depth frames in mm (default 50, the test fixtures': PNGs "
                        "that barely compress; 3 is of the order of a time-of-flight depth sensor's noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--breakdown", action="store_true", help="also time the parts of one clip (in process)")
    p.add_argument("--json", help="write the records to this file")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(1)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.samples <= CLASSES or args.frames < args.length or args.passes < 1 or min(workers, default=0) < 0:
        print(f"clip_loading: needs --samples > {CLASSES}, --frames >= --length, --passes >= 1 and workers >= 0",
              file=sys.stderr)
        return 2
    tmp = None
    if args.root:
        root = Path(args.root)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="clip-loading-")
        root = Path(tmp.name)
    try:
        t0 = time.perf_counter()
        manifest = make(root, args.samples, args.frames, args.frame_size, args.depth_noise)
        write_s = time.perf_counter() - t0
        data = load(manifest, args.length, args.size)
        sizes = bytes_per_frame(root)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        common = {"device_name": device_name(), "cores_allowed": cores, "torch": torch.__version__,
                  "samples": args.samples, "frames": args.frames, "frame_size": list(args.frame_size),
                  "depth_noise": args.depth_noise,
                  "decode_size": list(data.frame_size), "length": args.length, "crop": list(args.size),
                  "passes": args.passes, "jpeg_bytes": sizes["rgb"], "png_bytes": sizes["depth"]}
        records = [{**common, **in_process(data, args.passes, args.seed)}]
        for w in workers:
            records.append({**common, **through_loader(data, w, args.batch, args.passes, args.seed)})
        parts = breakdown(data, args.passes, args.seed) if args.breakdown else None
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"# {common['device_name']}; {cores} cores allowed; torch {torch.__version__}; {args.samples} samples x "
          f"{args.frames} frames of {args.frame_size[0]}x{args.frame_size[1]} (JPEG {sizes['rgb'] / 1e3:.1f} kB, "
          f"16-bit PNG {sizes['depth'] / 1e3:.1f} kB per frame, depth noise {args.depth_noise:g} mm; written in "
          f"{write_s:.1f} s); clips of "
          f"{args.length} frames cropped to {args.size[0]}x{args.size[1]}, rgb + depth; {args.passes} timed passes")
    head = (f"{'mode':<11} {'workers':>7} {'clips':>6} {'seconds':>8} {'clips/s':>8} {'clips/s/core':>12} {'target':>7} "
            f"{'CPU s':>6} {'clips/CPU s':>11}")
    print(head)
    print("-" * len(head))
    for r in records:
        ok = "met" if r["clips_per_s_per_core"] >= TARGET else "missed"
        print(f"{r['mode']:<11} {r['workers']:>7} {r['clips']:>6} {r['seconds']:>8.2f} {r['clips_per_s']:>8.1f} "
              f"{r['clips_per_s_per_core']:>12.1f} {ok:>7} {r['cpu_seconds']:>6.2f} {r['clips_per_cpu_s']:>11.1f}")
    if parts:
        print("\nCPU ms per clip, in process (each part timed on its own, over the same clips):")
        for name, ms in parts.items():
            print(f"  {name:<28} {ms:8.2f}")
        for r in records:
            r["breakdown_ms"] = parts
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

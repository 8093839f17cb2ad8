"""Image files at face-anti-spoofing scale: how fast they are decoded and augmented, and how much memory a
run over them needs.

    python benchmarks/face_files.py make --samples 20000 --dir /tmp/faces     # write the manifest + JPEGs
    python benchmarks/face_files.py loader --dir /tmp/faces --samples 3000   # triplets/s, 1 process, 1 thread
    python benchmarks/face_files.py memory --dir /tmp/faces --json mem.json  # `mmhal run` peak memory

``make`` writes ``manifest.csv`` and RGB (3-channel) + depth + IR (grey) JPEGs at 112x112 (quality 90; smooth
face-like patterns plus noise, so they compress like photographs rather than like pure noise), bona fide /
attack labels, 80 subjects as groups. ``loader`` times what a DataLoader worker does per training sample
(``engine.samples.SampleDataset``: decode the three files, the shared geometric draw, RGB-only jitter) in one
process with one torch thread, i.e. per CPU core, with the face recipe's augmentation; and without it.
``memory`` runs ``mmhal run`` on the manifest (1 epoch, methods mmh, 1 seed, small network, 2 loader workers)
as a child process and samples, every 0.2 s, the proportional set size (PSS: shared pages split between the
processes that map them, so forked workers are not counted twice) of that process and all its descendants;
it reports the peak, with N, so that runs at two N show whether memory grows with the data.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SIZE = 112


def make(folder: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        bona = int(i % 3 == 0)
        phase = rng.uniform(0, 6.3, 3)
        base = np.stack([128 + 50 * np.sin(x / 9 + p) + 40 * np.cos(y / 7 + p) for p in phase], -1)
        rgb = np.clip(base + (20 if bona else -20) + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        depth = np.clip(80 + (60 * np.exp(-((x - 56) ** 2 + (y - 56) ** 2) / 900) if bona else 0)
                        + rng.normal(0, 6, (SIZE, SIZE)), 0, 255).astype(np.uint8)
        ir = np.clip(base[..., 0] * 0.6 + rng.normal(0, 6, (SIZE, SIZE)), 0, 255).astype(np.uint8)
        sub = folder / "img" / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        paths = {}
        for m, a in (("rgb", rgb), ("depth", depth), ("ir", ir)):
            p = sub / f"{i:06d}-{m}.jpg"
            Image.fromarray(a).save(p, quality=90)
            paths[m] = str(p.relative_to(folder))
        rows.append({"bona_fide": bona, "group": f"s{i % 80}", **{f"x.{m}": paths[m] for m in paths}})
    out = folder / "manifest.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def loader(folder: Path, n: int) -> dict:
    import torch

    from mmhal.config import AugmentConfig, DataConfig
    from mmhal.data.manifest import load_manifest
    from mmhal.engine.samples import SampleDataset

    torch.set_num_threads(1)
    data = load_manifest(DataConfig(), path=str(folder / "manifest.csv"))
    idx = np.arange(min(n, len(data.labels)))
    face = AugmentConfig(flip=True, rotate=30.0, crop=0.78, brightness=0.2, contrast=0.2)
    out = {"samples": int(len(idx)), "image_size": list(data.image_size), "torch_threads": 1}
    for name, aug in (("decode_only", None), ("decode_and_face_augment", face)):
        ds = SampleDataset(data, idx, ["rgb", "depth", "ir"], aug, seed=0)
        ds.__getitems__([(0, 0)])  # warm-up
        t0 = time.perf_counter()
        for start in range(0, len(idx), 64):
            ds.__getitems__([(int(p), 0) for p in range(start, min(start + 64, len(idx)))])
        sec = time.perf_counter() - t0
        out[name] = {"seconds": round(sec, 3), "triplets_per_s_per_core": round(len(idx) / sec, 1)}
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def memory(folder: Path, extra: list[str]) -> dict:
    csv_path = folder / "manifest.csv"
    n = sum(1 for _ in open(csv_path)) - 1
    out_dir = folder / "run"
    cmd = [sys.executable, "-m", "mmhal", "run", "--data", str(csv_path), "--student", "rgb", "--methods", "mmh",
           "--seeds", "1", "--epochs", "1", "--out", str(out_dir), "--overwrite", "--no-progress",
           "model.width=8", "train.batch_size=64", "train.loader_workers=2", "data.augment.flip=true",
           "data.augment.rotate=30", "data.augment.crop=0.78", *extra]
    env = {**os.environ, "MMHAL_CACHE": str(folder / "cache")}
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"pss_kib": 0, "processes": 0}
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        pids = _tree(proc.pid)
        total = sum(_pss_kib(p) for p in pids)
        if total > peak["pss_kib"]:
            peak = {"pss_kib": total, "processes": len(pids)}
        time.sleep(0.2)
    reader.join(timeout=5)
    if proc.returncode != 0:
        raise SystemExit("".join(lines[-20:]))
    return {"samples": n, "command": " ".join(cmd[1:]), "peak_pss_gib": round(peak["pss_kib"] / 1024**2, 3),
            "processes_at_peak": peak["processes"], "seconds": round(time.time() - t0, 1), "log_tail": lines[-6:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["make", "loader", "memory"])
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--json", type=Path)
    args, extra = ap.parse_known_args()
    if args.what == "make":
        res = {"manifest": str(make(args.dir, args.samples)), "samples": args.samples}
    elif args.what == "loader":
        res = loader(args.dir, args.samples)
    else:
        res = memory(args.dir, extra)
    import torch

    res.update({"torch": torch.__version__, "cpu": os.cpu_count()})
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

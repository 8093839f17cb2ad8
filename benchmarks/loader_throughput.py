"""How fast do training batches reach the device with ``train.loader=memory`` and ``train.loader=workers``?

Times one epoch of batch delivery alone (no training step) through the trainer's own
``engine.loader.TrainBatches``: every batch of every modality is made, moved to the device and touched
(one reduction per modality, so a lazy copy cannot hide; CUDA synchronised at the end). The data are
random float32 arrays in the face setting of ``step_overhead.py`` (rgb 3x112x112, depth and ir 1x112x112)
or the hapt setting (acc and gyro 3x128).

``memory`` holds the split on the device (the time to put it there is reported apart, as ``load_s``),
``workers`` keeps it in host memory and gathers batches in N DataLoader processes (pinned memory on CUDA).
The first epoch of ``workers`` includes starting the processes; the figures are over ``--epochs``
further epochs (persistent workers), after that untimed first one.

    python benchmarks/loader_throughput.py --setting face --samples 2048 --workers 0,2
    python benchmarks/loader_throughput.py --device cuda --setting face --samples 8192 --workers 0,2,4,8 --json gpu-loader.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmhal.engine.loader import EpochBatches, TrainBatches
from mmhal.engine.loop import Split
from step_overhead import device_name, sync  # this folder is on sys.path when a script in it runs

SHAPES = {
    "face": {"rgb": (3, 112, 112), "depth": (1, 112, 112), "ir": (1, 112, 112)},
    "hapt": {"acc": (3, 128), "gyro": (3, 128)},
}


def one_epoch(batches: TrainBatches, epoch: int, device: torch.device) -> tuple[float, int]:
    """Seconds to deliver and touch every batch of one epoch, and the number of samples delivered."""
    batches.set_epoch(epoch)
    sync(device)
    t0 = time.perf_counter()
    acc, n = torch.zeros((), device=device), 0
    for inputs, target, _ in batches:
        for x in inputs.values():
            acc += x.sum()
        n += int(target.shape[0])
    sync(device)
    return time.perf_counter() - t0, n


def measure(setting: str, n: int, batch: int, loader: str, workers: int, device: torch.device, epochs: int) -> dict:
    g = torch.Generator().manual_seed(0)
    host = Split({m: torch.randn((n, *s), generator=g) for m, s in SHAPES[setting].items()},
                 torch.randint(0, 2, (n,), generator=g), device)
    t0 = time.perf_counter()
    if loader == "memory":
        split = Split({m: x.to(device) for m, x in host.inputs.items()}, host.labels.to(device), device)
    else:
        split = host
    sync(device)
    load_s = time.perf_counter() - t0
    batches = TrainBatches(split, list(SHAPES[setting]), EpochBatches(n, batch, seed=0), loader, workers)
    first_s, _ = one_epoch(batches, 0, device)
    secs, count = 0.0, 0
    for e in range(1, epochs + 1):
        s, c = one_epoch(batches, e, device)
        secs, count = secs + s, count + c
    batches.close()
    mb = sum(x[0].numel() * x.element_size() for x in host.inputs.values()) * count / 1e6
    return {"setting": setting, "device": str(device), "loader": loader, "workers": workers if loader == "workers" else 0,
            "samples": n, "batch": batch, "samples_per_s": count / secs, "mb_per_s": mb / secs,
            "first_epoch_s": first_s, "epoch_s": secs / epochs, "epochs": epochs, "load_s": load_s,
            "torch": torch.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--setting", default="face", choices=sorted(SHAPES))
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts for loader=workers")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs after the first")
    p.add_argument("--json", help="write the records to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("loader_throughput: --device cuda was asked for but this machine has no usable CUDA GPU", file=sys.stderr)
        return 2
    try:
        counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        print(f"loader_throughput: --workers must be comma-separated integers, got '{args.workers}'", file=sys.stderr)
        return 2
    if args.samples < args.batch or args.batch < 2 or any(w < 0 for w in counts) or args.epochs < 1:
        print("loader_throughput: need --samples >= --batch >= 2, --epochs >= 1 and worker counts >= 0", file=sys.stderr)
        return 2
    name = device_name(device)
    print(f"# {args.setting}, {args.samples} samples, batch {args.batch}, {name}, torch {torch.__version__}")
    print(f"{'loader':<8} {'workers':>7} {'samples/s':>10} {'MB/s':>9} {'1st epoch s':>11} {'to device s':>11}")
    records = []
    for loader, w in [("memory", 0)] + [("workers", w) for w in counts]:
        r = measure(args.setting, args.samples, args.batch, loader, w, device, args.epochs)
        r["device_name"] = name
        records.append(r)
        print(f"{loader:<8} {r['workers']:>7} {r['samples_per_s']:>10.0f} {r['mb_per_s']:>9.0f} {r['first_epoch_s']:>11.2f} "
              f"{r['load_s']:>11.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

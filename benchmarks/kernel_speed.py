"""How much faster are the fused formulations than the plain ones they replace? (CPU, one thread)

Three A/B timings of code that is in the package, each pair on the same inputs, interleaved call by call
(so both sides see the same machine load), reporting the median and quartiles of per-call CPU time:

* ``rkd``: RKD's angle + distance loss, forward and backward, at batch ``--batch`` and embedding ``--dim``:
  ``distill.rkd.rkd_losses`` (the angle term fused over chunks of anchors, its gradient formed in the
  forward) against the plain formula through autograd (``rkd.potentials`` of both networks, then smooth L1:
  the (B, B, B) tensors whole).
* ``crd``: CRD's NCE loss, forward and backward, with the HAPT sizes (N = 5128 train samples, K = 4129
  negatives, dim 128): the counted whole-bank path (``CRDLoss(..., negatives=, scores=False)``) against the
  gathered (B, K + 1) scores through autograd (``scores=True``), the same draws.
* ``resize``: one training crop of a (3, 16, 128, 171) uint8 clip to 112x112 (antialiased bilinear, as
  ``data.clips.augment_clip``) from frames stored channels-last (what ``ClipData.read_clip`` gives) against
  frames stored channels-first (what it gave before).

    OMP_NUM_THREADS=1 python benchmarks/kernel_speed.py
    OMP_NUM_THREADS=1 python benchmarks/kernel_speed.py --parts rkd --batch 256 --calls 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent / "src"))


def interleaved(fns: dict, calls: int, warmup: int = 2) -> dict:
    """Per-call CPU milliseconds of each function in ``fns``, called in turn ``calls`` times."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {k: [] for k in fns}
    for _ in range(calls):
        for k, fn in fns.items():
            t0 = time.process_time()
            fn()
            out[k].append(1e3 * (time.process_time() - t0))
    return out


def rkd_part(batch: int, dim: int):
    import torch.nn.functional as F

    from mmhal.distill.rkd import potentials, rkd_losses

    torch.manual_seed(0)
    s = torch.randn(batch, dim, requires_grad=True)
    t = torch.randn(batch, dim)

    def fused():
        s.grad = None
        l_d, l_a = rkd_losses(s, t)
        (25 * l_d + 50 * l_a).backward()

    def plain():
        s.grad = None
        with torch.no_grad():
            t_d, t_a = potentials(t)
        s_d, s_a = potentials(s)
        (25 * F.smooth_l1_loss(s_d, t_d) + 50 * F.smooth_l1_loss(s_a, t_a)).backward()

    return {"fused (rkd_losses)": fused, "plain (B, B, B) autograd": plain}


def crd_part(batch: int, n: int = 5128, k: int = 4129):
    from mmhal.distill.crd import CRDLoss

    torch.manual_seed(0)
    counted, gathered = CRDLoss(96, 96, n, k=k), CRDLoss(96, 96, n, k=k)
    gathered.load_state_dict(counted.state_dict())
    f_s = torch.randn(batch, 96, requires_grad=True)
    f_t = torch.randn(batch, 96)
    index = torch.randperm(n)[:batch]
    neg = torch.randint(0, n, (batch, k))
    idx = torch.cat([index.view(-1, 1), neg], dim=1)

    def count():
        loss, _, _ = counted(f_s, f_t, index, negatives=neg, scores=False)
        loss.backward()

    def gather():
        loss, _, _ = gathered(f_s, f_t, index, contrast_index=idx, scores=True)
        loss.backward()

    return {"counted (whole bank, reused arrays)": count, "gathered (B, K + 1) autograd": gather}


def resize_part():
    import torchvision.transforms.v2.functional as TF

    torch.manual_seed(0)
    thwc = torch.randint(0, 256, (16, 128, 171, 3), dtype=torch.uint8)
    last = thwc.permute(0, 3, 1, 2)  # (T, C, H, W) view of channel-last frames
    first = last.contiguous()  # the same frames stored channels-first

    def crop(x):
        return lambda: TF.resized_crop(x, 10, 12, 100, 130, [112, 112], antialias=True).contiguous()

    return {"channels-last frames": crop(last), "channels-first frames": crop(first)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="rkd,crd,resize")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dim", type=int, default=96, help="RKD's embedding width (HAPT's student: 96)")
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    builders = {"rkd": lambda: rkd_part(args.batch, args.dim), "crd": lambda: crd_part(args.batch),
                "resize": resize_part}
    print(f"# torch {torch.__version__}; {torch.get_num_threads()} thread(s); {args.calls} interleaved calls each; "
          "CPU ms per call: median [q25, q75]")
    for part in args.parts.split(","):
        if part not in builders:
            p.error(f"unknown part '{part}' (rkd, crd, resize)")
        times = interleaved(builders[part](), args.calls)
        for name, ms in times.items():
            q = statistics.quantiles(ms, n=4)
            print(f"{part:7s} {name:36s} {statistics.median(ms):8.2f} [{q[0]:.2f}, {q[2]:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What does MMH distillation cost per training step, compared with training the student alone?

For each setting it times one training step (forward, backward, optimiser step; warm-up steps excluded;
``torch.cuda.synchronize`` around the timed block on CUDA) of

  (a) the student alone with cross-entropy (method ``unimodal``), and
  (b) the full MMH step (method ``mmh``): frozen teacher forward (no teacher cache), student forward,
      CE + RAD + DAD, backward, optimiser step,

through the trainer's own ``TrainStep`` (so ``--precision``, ``--channels-last`` and ``--compile`` act as in
``mmhal run``). ``ratio`` = time of step (b) / time of step (a) = (a samples/s) / (b samples/s).
``loss share`` = time of the RAD + DAD loss computation alone (forward and backward of the two losses on
fixed features, with the same autocast) / time of step (b).

With ``--methods`` (default ``mmh``) step (b) is timed for each named method instead (e.g. the baselines
``fitnet,at,sp,pkt,rkd,crd,dkd,mars,hallucination``), one row per setting and method; step (a) is timed again
right before each method's (b), so a ratio compares two timings under the same machine load, and with
``--repeats N`` the pair of median ratio out of N is reported. The loss share is measured for ``mmh`` only
(``-`` for the others). A method refused for a setting (``dkd`` on 2 classes, ``at`` on vectors) is reported
as refused.

Settings (random tensors as data):
  hapt      teacher acc+gyro, student gyro, (3, 128) sequences, default ModelConfig, 12 classes, batch 128
  face-64   teacher rgb(3,112,112) + depth(1,112,112) + ir(1,112,112), student rgb, width 64, blocks 2
            (ResNet-18-SE-like), 2 classes, batch 64
  face-256  as face-64, batch 256
  clip      teacher rgb(3,16,112,112) + depth(1,16,112,112) clips, student rgb, model.backbone=r3d18 (torchvision
            R3D-18 stems and trunk, early fusion), 10 classes (NW-UCLA-like), batch 4
  clip-late as clip, with the action recipes' late-fusion teacher (one R3D-18 per modality, logits averaged)

    python benchmarks/step_overhead.py --settings hapt,face-64 --threads 1 --json cpu.json
    python benchmarks/step_overhead.py --device cuda --precision bf16 --channels-last --settings hapt,face-64,face-256
    python benchmarks/step_overhead.py --settings hapt --threads 1 --repeats 3 \
        --methods mmh,kd,fitnet,at,sp,pkt,rkd,crd,dkd,mars,hallucination
    taskset -c 0 python benchmarks/step_overhead.py --settings clip --threads 1 --steps 3 --warmup 1
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

try:
    import mmhal  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmhal.config import DistillConfig, ModelConfig, TrainConfig
from mmhal.distill import METHODS, build_method, dad_loss, rad_loss
from mmhal.engine.loop import make_optimizer
from mmhal.engine.step import TrainStep, autocast, channels_last_inputs, compiled_forward, to_channels_last
from mmhal.errors import UserError
from mmhal.models.network import build_network

# Train-split sizes (CRD's memory banks have one row per train sample; its labels are drawn at random here):
# HAPT's default split, CASIA-SURF's training frames, and NW-UCLA's train views (1 and 2).
HAPT_TRAIN, FACE_TRAIN, UCLA_TRAIN = 5240, 29266, 1020
FACE = {"rgb": (3, 112, 112), "depth": (1, 112, 112), "ir": (1, 112, 112)}
CLIP = {"rgb": (3, 16, 112, 112), "depth": (1, 16, 112, 112)}  # (C, T, H, W): 16-frame clips
SETTINGS = {
    "hapt": dict(spec={"acc": (3, 128), "gyro": (3, 128)}, teacher=["acc", "gyro"], student=["gyro"], classes=12,
                 model=ModelConfig(), batch=128, train_size=HAPT_TRAIN),
    "face-64": dict(spec=FACE, teacher=["rgb", "depth", "ir"], student=["rgb"], classes=2,
                    model=ModelConfig(width=64, blocks=2), batch=64, train_size=FACE_TRAIN),
    "face-256": dict(spec=FACE, teacher=["rgb", "depth", "ir"], student=["rgb"], classes=2,
                     model=ModelConfig(width=64, blocks=2), batch=256, train_size=FACE_TRAIN),
    "clip": dict(spec=CLIP, teacher=["rgb", "depth"], student=["rgb"], classes=10,
                 model=ModelConfig(backbone="r3d18"), batch=4, train_size=UCLA_TRAIN),
    # the action recipes' teacher: one R3D-18 per modality, logits averaged (model.teacher_fusion=late)
    "clip-late": dict(spec=CLIP, teacher=["rgb", "depth"], student=["rgb"], classes=10,
                      model=ModelConfig(backbone="r3d18", teacher_fusion="late"), batch=4, train_size=UCLA_TRAIN),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Mean wall time of ``fn()`` over ``steps`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_setting(name: str, args, device: torch.device) -> list[dict]:
    s = SETTINGS[name]
    tcfg = TrainConfig(batch_size=s["batch"], precision=args.precision, channels_last=args.channels_last,
                       compile=args.compile)
    dcfg = DistillConfig()
    for item in args.distill:  # e.g. crd.k=1024
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        target = dcfg
        for part in path:
            target = getattr(target, part)
        setattr(target, last, type(getattr(target, last))(value))
    torch.manual_seed(0)
    b = s["batch"]
    inputs = {m: torch.randn(b, *s["spec"][m], device=device) for m in s["teacher"]}
    target = torch.randint(0, s["classes"], (b,), device=device)
    index = torch.randperm(s["train_size"])[:b].to(device)
    train_labels = torch.randint(0, s["classes"], (s["train_size"],))
    train_labels[index.cpu()] = target.cpu()

    def net(mods):
        return build_network(s["spec"], mods, s["classes"], s["model"]).to(device)

    def make(method_name, teacher):
        method = build_method(method_name, net(s["student"]), teacher, dcfg, train_labels).to(device)
        if tcfg.channels_last:
            to_channels_last(method)
            if teacher is not None:
                to_channels_last(teacher)
        opt = make_optimizer([p for p in method.parameters() if p.requires_grad], tcfg)
        return method, TrainStep(method, opt, None, tcfg.precision, tcfg.channels_last, device)

    # (a) the student alone, cross-entropy
    method_a, step_a = make("unimodal", None)
    method_a.train()

    def time_a() -> float:
        with compiled_forward(method_a.student, tcfg.compile):
            return seconds_per_call(lambda: step_a(inputs, target), args.steps, args.warmup, device)

    t_a = time_a()
    if s["model"].teacher_fusion == "late":
        from mmhal.models.video import build_late_fusion

        teacher = build_late_fusion(s["spec"], s["teacher"], s["classes"], s["model"]).to(device)
    else:
        teacher = net(s["teacher"])
    common = {"distill": list(args.distill), "setting": name, "device": device.type, "device_name": device_name(device), "batch": b,
              "precision": tcfg.precision, "channels_last": tcfg.channels_last, "compiled": tcfg.compile,
              "steps": args.steps, "warmup": args.warmup, "threads": torch.get_num_threads(),
              "torch": torch.__version__}
    records = []
    for i, method_name in enumerate(args.methods):
        # (b) the method's full step: teacher forward + student (+ the method's own modules) + its losses
        try:
            method_b, step_b = make(method_name, teacher)
        except UserError as exc:
            records.append({**common, "method": method_name, "refused": str(exc)})
            continue
        method_b.train()
        pairs = []
        for r in range(args.repeats):  # (a) again next to each (b): the pair sees the same machine load
            if i or r:
                t_a = time_a()
            with compiled_forward(method_b.student, tcfg.compile):
                extra = {"index": index} if method_b.needs_index else {}
                t_b = seconds_per_call(lambda: step_b(inputs, target, **extra), args.steps, args.warmup, device)  # noqa: B023
            pairs.append((t_a, t_b))
        t_a, t_b = sorted(pairs, key=lambda p: p[1] / p[0])[len(pairs) // 2]  # the pair of median ratio
        rec = {**common, "method": method_name, "a_per_s": b / t_a, "a_step_ms": 1e3 * t_a, "b_per_s": b / t_b,
               "ratio": t_b / t_a, "b_step_ms": 1e3 * t_b, "repeats": args.repeats}
        if method_name == "mmh":
            t_loss = loss_seconds(method_b, step_b, teacher, inputs, target, dcfg, tcfg, args, device)
            rec.update(loss_ms=1e3 * t_loss, loss_share=t_loss / t_b)
        records.append(rec)
    return records


def loss_seconds(method_b, step_b, teacher, inputs, target, dcfg, tcfg, args, device) -> float:
    """Seconds of the RAD + DAD losses alone (forward and backward) on fixed features of this batch."""
    x = channels_last_inputs(inputs) if tcfg.channels_last else inputs
    with torch.no_grad(), autocast(device, step_b.dtype):
        t_out = teacher(x)
        s_out = method_b.student(x)
    s_feats = [f.detach().requires_grad_(True) for f in s_out.features]

    def losses():
        for f in s_feats:
            f.grad = None
        with autocast(device, step_b.dtype):
            rad, _, _ = rad_loss(method_b.student, s_feats[-1], teacher, t_out.fmap, target, dcfg.temperature,
                                 dcfg.rad_weighting, dcfg.rad_levels)
            dad = dad_loss(s_feats, t_out.features, dcfg.dad_variant, dcfg.dad_k)
            loss = dcfg.rad_lambda * rad + dcfg.dad_lambda * dad
        loss.backward()

    return seconds_per_call(losses, args.steps, args.warmup, device)


def rate(per_s: float) -> str:
    """Samples/s in 12 characters: one decimal, or three below 10 (a 3D-network step on CPU takes seconds)."""
    return f"{per_s:>12.1f}" if per_s >= 10 else f"{per_s:>12.3f}"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--precision", default="32", help="32, bf16 or 16 (16: CUDA only)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the student's forward (compile time is in warm-up)")
    p.add_argument("--settings", default="hapt,face-64", help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: 5 on cpu, 50 on cuda)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 2, or 3 with --compile)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--methods", default="mmh", help="comma-separated methods timed as step (b) (default: mmh)")
    p.add_argument("--repeats", type=int, default=1,
                   help="time (a) then (b) this many times per method and report the pair of median ratio")
    p.add_argument("--distill", action="append", default=[], metavar="KEY=VALUE",
                   help="a distill setting for every method, e.g. crd.k=1024 or rkd.angle=0 (repeatable)")
    p.add_argument("--json", help="write one record per setting and method to this file")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("step_overhead: --device cuda was asked for but this machine has no usable CUDA GPU", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        print(f"step_overhead: unknown setting '{unknown[0]}'; known: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS or not METHODS.get(m).needs_teacher]
    if bad:
        print(f"step_overhead: '{bad[0]}' is not a distillation method; known: "
              f"{', '.join(n for n in METHODS.names() if METHODS.get(n).needs_teacher)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("step_overhead: --repeats must be at least 1", file=sys.stderr)
        return 2
    args.steps = args.steps or (50 if device.type == "cuda" else 5)
    args.warmup = args.warmup if args.warmup is not None else (3 if args.compile else 2)
    records = []
    head = (f"{'setting':<9} {'method':<13} {'device':<6} {'batch':>5} {'a samples/s':>12} {'b samples/s':>12} "
            f"{'ratio b/a':>9} {'loss share':>10}")
    print(f"# {device_name(device)}; torch {torch.__version__}; {torch.get_num_threads()} threads; precision "
          f"{args.precision}{', channels-last' if args.channels_last else ''}{', compiled' if args.compile else ''}; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(head)
    print("-" * len(head))
    for name in names:
        for r in bench_setting(name, args, device):
            records.append(r)
            if "refused" in r:
                print(f"{name:<9} {r['method']:<13} refused: {r['refused']}", flush=True)
                continue
            share = f"{100 * r['loss_share']:>9.1f}%" if "loss_share" in r else f"{'-':>10}"
            print(f"{name:<9} {r['method']:<13} {r['device']:<6} {r['batch']:>5} {rate(r['a_per_s'])} "
                  f"{rate(r['b_per_s'])} {r['ratio']:>9.2f} {share}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

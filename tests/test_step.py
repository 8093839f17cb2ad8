"""The training step's options (precision, channels-last, compile) and resuming ``fit`` from an epoch checkpoint."""
import copy
import dataclasses
import shutil

import pytest
import torch
import torch.nn.functional as F

from mmhal.config import DistillConfig, TrainConfig
from mmhal.distill import METHODS, full_precision
from mmhal.distill.dad import similarity
from mmhal.engine.checkpoint import load_checkpoint
from mmhal.engine.loop import Split, fit, make_optimizer, predict, warmup_cosine
from mmhal.engine.step import TrainStep, autocast_dtype, compiled_forward
from mmhal.errors import UserError
from mmhal.models import MultimodalNet
from mmhal.utils import derive_seed


def _data(n=96, image=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    strong = torch.randn(n, 5, generator=g)
    strong[torch.arange(n), y] += 3.0
    if image:
        weak = torch.randn(n, 1, 8, 8, generator=g)
        weak[:, 0, :4, :4] += 0.8 * y[:, None, None]
    else:
        weak = torch.randn(n, 2, 16, generator=g)
        weak[:, 0] += 0.5 * y[:, None]
    spec = {"weak": tuple(weak.shape[1:]), "strong": (5,)}
    train = Split({"weak": weak[: n * 2 // 3], "strong": strong[: n * 2 // 3]}, y[: n * 2 // 3])
    val = Split({"weak": weak[n * 2 // 3:], "strong": strong[n * 2 // 3:]}, y[n * 2 // 3:])
    return spec, train, val


def _method(spec, name="mmh", seed=0):
    torch.manual_seed(100)
    teacher = MultimodalNet(spec, ["strong", "weak"], 3, width=4)
    torch.manual_seed(seed)
    student = MultimodalNet(spec, ["weak"], 3, width=4)
    return METHODS.get(name)(student, teacher if METHODS.get(name).needs_teacher else None, DistillConfig())


def _tcfg(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 16, **kw})


def _fit(spec, train, val, tcfg, name="mmh", **kw):
    method = _method(spec, name)
    snapshots = []
    res = fit(method, train, val, tcfg, seed=0, progress=False,
              on_epoch=lambda e, r: snapshots.append(copy.deepcopy(method.student.state_dict())), **kw)
    return res, snapshots, method


def test_fp32_fit_is_bit_identical_to_a_plain_training_loop():
    spec, train, val = _data()
    tcfg = _tcfg()
    res, snapshots, _ = _fit(spec, train, val, tcfg)
    # The loop as it was before precision/compile/checkpoint options existed.
    method = _method(spec)
    opt = make_optimizer([p for p in method.parameters() if p.requires_grad], tcfg)
    spe = -(-len(train) // tcfg.batch_size)  # 64 samples, batch 16: no short last batch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(spe * tcfg.epochs, int(round(tcfg.warmup_epochs * spe))))
    for epoch in range(tcfg.epochs):
        method.train()
        sums, n = {}, 0
        # The documented data order: epoch e is randperm(n) seeded derive_seed(seed, "order", stream, e).
        g = torch.Generator().manual_seed(derive_seed(0, "order", "student", epoch))
        perm = torch.randperm(len(train), generator=g)
        for idx in perm.split(tcfg.batch_size):
            inputs, target = train.batch(idx, method.modalities)
            _, losses = method(inputs, target)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            n += 1
        for k in sums:
            assert res.history[epoch][k] == float(sums[k]) / n
        state = method.student.state_dict()
        assert all(torch.equal(state[k], snapshots[epoch][k]) for k in state)


def test_bf16_on_cpu_trains_with_finite_losses_close_to_fp32():
    spec, train, val = _data()
    ref, _, _ = _fit(spec, train, val, _tcfg())
    res, _, _ = _fit(spec, train, val, _tcfg(precision="bf16"))
    for r32, r16 in zip(ref.history, res.history):
        for k in ("ce", "rad", "dad", "val_loss"):
            assert torch.isfinite(torch.tensor(r16[k]))
            assert r16[k] == pytest.approx(r32[k], rel=0.15, abs=0.02), k


def test_losses_are_fp32_under_bf16_autocast_while_the_networks_run_in_bf16():
    spec, train, _ = _data()
    method = _method(spec)
    step = TrainStep(method, torch.optim.SGD(method.parameters(), lr=0.0), precision="bf16", device=torch.device("cpu"))
    inputs, target = train.batch(torch.arange(16), method.modalities)
    logits, losses = step.forward(inputs, target)
    assert logits.dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in losses.values())
    f = torch.randn(8, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = similarity(f)
        with full_precision(f):
            mm = f.flatten(1) @ f.flatten(1).t()
    assert inside.dtype == torch.float32 and mm.dtype == torch.float32
    assert torch.equal(inside, similarity(f))


def test_fp16_without_cuda_and_unknown_precisions_are_user_errors():
    with pytest.raises(UserError, match="needs a CUDA device"):
        autocast_dtype("16", torch.device("cpu"))
    with pytest.raises(UserError, match="must be 32, bf16 or 16"):
        autocast_dtype("8", torch.device("cpu"))
    spec, train, val = _data()
    with pytest.raises(UserError, match="needs a CUDA device"):
        _fit(spec, train, val, _tcfg(precision="16"))


def test_channels_last_converts_image_models_and_trains_like_contiguous():
    spec, train, val = _data(image=True)
    ref, _, _ = _fit(spec, train, val, _tcfg())
    res, _, method = _fit(spec, train, val, _tcfg(channels_last=True))
    _assert_channels_last_like(method, 4, torch.channels_last, ref, res)


def _assert_channels_last_like(method, dim: int, layout, ref, res) -> None:
    """``method``'s student and teacher hold their ``dim``-D parameters in ``layout`` (the student has some), and
    the channels-last fit ``res`` trained like the contiguous one ``ref``."""
    kernels = [p for p in method.student.parameters() if p.dim() == dim]
    assert kernels and all(p.is_contiguous(memory_format=layout) for p in kernels)
    assert all(p.is_contiguous(memory_format=layout) for p in method.teacher.parameters() if p.dim() == dim)
    for a, b in zip(ref.history, res.history):
        for k in ("ce", "rad", "dad", "val_loss"):
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-5), k


def test_channels_last_stores_3d_video_models_and_clips_ndhwc_and_trains_like_contiguous():
    from mmhal.models.video import VideoNet

    spec = {"rgb": (3, 4, 16, 16), "depth": (1, 4, 16, 16)}
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (24,), generator=g)
    x = {m: torch.randn(24, *shape, generator=g) for m, shape in spec.items()}
    x["rgb"][:, 0] += y[:, None, None, None].float()
    train = Split({m: v[:16] for m, v in x.items()}, y[:16])
    val = Split({m: v[16:] for m, v in x.items()}, y[16:])

    def method():
        torch.manual_seed(5)
        teacher = VideoNet(spec, ["rgb", "depth"], 3, arch="r3d18", width=4)
        student = VideoNet(spec, ["rgb"], 3, arch="r3d18", width=4)
        return METHODS.get("mmh")(student, teacher, DistillConfig())

    tcfg = _tcfg(epochs=2, batch_size=8)
    ref = fit(method(), train, val, tcfg, seed=0, progress=False)
    m = method()
    res = fit(m, train, val, dataclasses.replace(tcfg, channels_last=True), seed=0, progress=False)
    _assert_channels_last_like(m, 5, torch.channels_last_3d, ref, res)


class _FakeCompileError(torch._dynamo.exc.TorchDynamoException):
    pass


def test_a_compile_failure_is_a_user_error_naming_the_cause_and_eager_forward_comes_back(monkeypatch):
    spec, train, val = _data()

    def broken_compile(fn, **kw):
        def run(*a, **k):
            raise _FakeCompileError("no C++ compiler found\nlong details")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    method = _method(spec, "unimodal")
    with pytest.raises(UserError, match=r"could not compile .*no C\+\+ compiler found\); run without") as info:
        fit(method, train, val, _tcfg(compile=True), seed=0, progress=False)
    assert "\n" not in str(info.value)
    assert "forward" not in method.student.__dict__
    method.student(train.batch(torch.arange(4), ["weak"])[0])  # eager again

    def refusing_compile(fn, **kw):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refusing_compile)
    with pytest.raises(UserError, match="Dynamo is not supported"):
        with compiled_forward(method.student):
            pass


def test_errors_that_are_not_from_the_compiler_pass_through_unchanged():
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="mine"):
        with compiled_forward(net, enabled=False):
            raise ValueError("mine")


@pytest.mark.slow
def test_compiled_student_trains_like_the_eager_one():
    spec, train, val = _data()
    tcfg = _tcfg(epochs=1)
    ref, _, _ = _fit(spec, train, val, tcfg, name="unimodal")
    res, _, method = _fit(spec, train, val, dataclasses.replace(tcfg, compile=True), name="unimodal")
    assert "forward" not in method.student.__dict__
    assert res.history[0]["ce"] == pytest.approx(ref.history[0]["ce"], rel=1e-4)
    assert res.history[0]["val_loss"] == pytest.approx(ref.history[0]["val_loss"], rel=1e-4)


@pytest.mark.parametrize("name, ema", [("mmh", 0.0), ("unimodal", 0.0), ("mmh", 0.9)])
def test_fit_resumed_from_an_epoch_checkpoint_ends_exactly_as_the_uninterrupted_fit(tmp_path, name, ema):
    spec, train, val = _data()
    tcfg = _tcfg(epochs=3, ema=ema)
    ckpt, kept = tmp_path / "job.pt", tmp_path / "after-epoch-1.pt"

    def keep_first(epoch, rec):
        if epoch == 0:
            shutil.copy(ckpt, kept)

    method = _method(spec, name)
    full = fit(method, train, val, tcfg, seed=0, progress=False, on_epoch=keep_first, checkpoint=ckpt)
    saved = load_checkpoint(kept)  # weights_only=True
    assert saved["epoch"] == 1 and len(saved["history"]) == 1
    assert {"method", "optimizer", "scheduler", "scaler", "rng", "best", "history"} <= set(saved)

    torch.manual_seed(12345)  # other global RNG state than the interrupted process had
    method = _method(spec, name, seed=7)  # other initial weights: the checkpoint must overwrite them
    resumed = fit(method, train, val, tcfg, seed=0, progress=False, checkpoint=kept, resume=True)
    assert resumed.history == full.history
    assert resumed.best_epoch == full.best_epoch
    assert all(torch.equal(resumed.best_state[k], full.best_state[k]) for k in full.best_state)
    assert all(torch.equal(resumed.last_state[k], full.last_state[k]) for k in full.last_state)


def test_weight_averaging_selects_and_returns_the_averaged_weights():
    spec, train, val = _data()
    seen = []
    method = _method(spec, "unimodal")
    res = fit(method, train, val, _tcfg(epochs=2, ema=0.5), seed=0, progress=False,
              on_epoch=lambda e, r: seen.append(copy.deepcopy(method.student.state_dict())))
    own = seen[-1]  # the student's own weights after the last epoch (the average is applied only to evaluate)
    assert any(not torch.equal(res.last_state[k], own[k]) for k in own if own[k].is_floating_point())
    # a = min(0.5, (1 + t) / (10 + t)) = 0.5 from t = 8 on: the average stays within the last steps' weights
    assert all(torch.equal(res.last_state[k], own[k]) for k in own if not own[k].is_floating_point())
    method.student.load_state_dict(res.best_state)
    assert F.cross_entropy(predict(method.student, val), val.labels).item() == pytest.approx(
        res.history[res.best_epoch - 1]["val_loss"], rel=1e-6)


def test_fit_without_resume_ignores_an_existing_checkpoint(tmp_path):
    spec, train, val = _data()
    ckpt = tmp_path / "job.pt"
    a = fit(_method(spec, "unimodal"), train, val, _tcfg(), seed=0, progress=False, checkpoint=ckpt)
    b = fit(_method(spec, "unimodal"), train, val, _tcfg(), seed=0, progress=False, checkpoint=ckpt)
    assert a.history == b.history and len(b.history) == 2


def test_an_epoch_checkpoint_of_another_number_of_processes_is_refused(tmp_path):
    spec, train, val = _data()
    ckpt = tmp_path / "job.pt"
    _fit(spec, train, val, _tcfg(epochs=1), checkpoint=ckpt)
    saved = load_checkpoint(ckpt)
    assert saved["world_size"] == 1
    torch.save({**saved, "world_size": 4, "epochs": 2}, ckpt)
    with pytest.raises(UserError, match="written by a run of 4 process"):
        _fit(spec, train, val, _tcfg(epochs=2), checkpoint=ckpt, resume=True)

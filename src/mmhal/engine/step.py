"""One optimisation step, and the settings that make it faster: mixed precision, channels-last, compile.

* ``precision`` "32": plain fp32, no autocast context at all (results as before these options existed).
  "bf16": the forward runs under ``torch.autocast(device_type, torch.bfloat16)`` (CPU or CUDA).
  "16": float16 autocast with a ``torch.amp.GradScaler`` (CUDA only: fp16 needs loss scaling, and
  the CPU has no fast fp16 kernels). The distillation losses and the cross-entropy are computed in fp32
  either way (the methods cast logits and features with ``.float()`` and keep their matrix products
  out of autocast, see ``mmhal.distill.base.full_precision``).
* ``channels_last``: 4-D parameters (2-D convolutions) and 4-D inputs (images) are stored NHWC, 5-D ones
  (3-D convolutions, clips) NDHWC, the layouts cuDNN's tensor-core kernels and oneDNN prefer. Sequence and
  vector models are unaffected.
* ``compile``: the student's forward is wrapped in ``torch.compile``. A compilation failure is raised
  as a ``UserError`` naming the cause: there is no silent fallback to eager mode.

A step does no host-device synchronisation of its own: the losses it returns are detached device
tensors, accumulated by the caller and read once per epoch (``GradScaler.step`` with fp16 reads its
inf/nan flag, which is the one sync that mode needs).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from ..errors import UserError

PRECISIONS = ("32", "bf16", "16")


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of a precision setting on ``device`` (None for fp32); a UserError where unsupported."""
    precision = str(precision)
    if precision not in PRECISIONS:
        raise UserError(f"train.precision must be 32, bf16 or 16, got '{precision}'")
    if precision == "32":
        return None
    if precision == "16":
        if device.type != "cuda":
            raise UserError(f"train.precision 16 (float16 with loss scaling) needs a CUDA device, not {device.type}; use bf16 or 32")
        return torch.float16
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"train.precision bf16 is supported on cpu and cuda, not {device.type}; use 32")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bfloat16 support; use train.precision 16 or 32")
    return torch.bfloat16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for a reduced-precision dtype; no context at all for fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


#: the channels-last memory format of a tensor of each rank (images and 2-D kernels; clips and 3-D kernels)
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store every 4-D and 5-D parameter and buffer of ``module`` channels-last (NHWC, NDHWC), in place (other
    ranks untouched)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dim() in CHANNELS_LAST:
            t.data = t.data.contiguous(memory_format=CHANNELS_LAST[t.dim()])
    return module


def channels_last_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with every 4-D (image) and 5-D (clip) input channels-last; other inputs as they are."""
    return {m: x.contiguous(memory_format=CHANNELS_LAST[x.dim()]) if x.dim() in CHANNELS_LAST else x
            for m, x in inputs.items()}


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by torch.compile's machinery (Dynamo tracing or Inductor code generation)."""
    return any(c.__module__.startswith(("torch._dynamo", "torch._inductor")) for c in type(exc).__mro__)


def _compile_failed(exc: BaseException) -> UserError:
    first = (str(exc).strip().splitlines() or [""])[0].strip()
    cause = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if len(cause) > 240:
        cause = cause[:237] + "..."
    return UserError(f"torch.compile could not compile the model ({cause}); run without train.compile / --compile")


@contextlib.contextmanager
def compiled_forward(module: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block, ``module(...)`` runs a ``torch.compile``-d forward; the eager forward comes back after.

    Compilation happens lazily on the first call (and again for a new mode or shape); a failure there
    or in ``torch.compile`` itself is raised as a one-sentence UserError.
    """
    if not enabled:
        yield module
        return
    try:
        module.forward = torch.compile(module.forward)
    except Exception as exc:  # e.g. a Python version Dynamo does not support
        raise _compile_failed(exc) from exc
    try:
        yield module
    except Exception as exc:
        if is_compile_error(exc):
            raise _compile_failed(exc) from exc
        raise
    finally:
        module.__dict__.pop("forward", None)


class TrainStep:
    """forward (under autocast), backward (loss-scaled for fp16), optimiser step, scheduler step.

    ``step(inputs, target, teacher_out)`` returns the method's losses, detached, as device tensors.
    """

    def __init__(self, method: nn.Module, optimizer, scheduler=None, precision: str = "32",
                 channels_last: bool = False, device: Optional[torch.device] = None):
        if device is None:
            device = next(method.parameters()).device
        self.method, self.opt, self.sched = method, optimizer, scheduler
        self.device = device
        self.dtype = autocast_dtype(precision, device)
        self.channels_last = channels_last
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None

    def forward(self, inputs, target, teacher_out=None, index=None):
        """The method's (logits, losses) on one batch under this step's precision and layout, with graph;
        ``index`` (the samples' positions in the train split) goes to methods that ask for it."""
        if self.channels_last:
            inputs = channels_last_inputs(inputs)
        extra = {"index": index} if index is not None else {}
        with autocast(self.device, self.dtype):
            return self.method(inputs, target, teacher_out=teacher_out, **extra)

    def __call__(self, inputs, target, teacher_out=None, index=None) -> dict[str, torch.Tensor]:
        _, losses = self.forward(inputs, target, teacher_out, index)
        loss = sum(losses.values())
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        if self.sched is not None:
            self.sched.step()
        return {k: v.detach() for k, v in losses.items()}

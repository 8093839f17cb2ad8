"""Epoch checkpoints of one training job: everything needed to continue it exactly where it stopped.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written atomically after
every epoch, so it loads with ``torch.load(..., weights_only=True)`` and is never seen half-written:

    {"version", "epoch" (epochs done), "epochs" (planned), "seed",
     "method" (state dict: student and the method's trainable extras), "optimizer", "scheduler",
     "scaler" (fp16 only, else None), "rng" (python, numpy, torch and cuda states),
     "best": {"epoch", "key", "state"}, "history", "world_size"}

The data order needs no state: it is a function of the seed and the epoch (``engine.loader``).

Random-number states are stored as tensors and plain numbers (never pickled objects) for the same reason.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import UserError
from ..utils import atomic_torch_save

VERSION = 2  # 2: the data order follows (seed, epoch); no generator state; world_size


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) global RNG states, as tensors and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)},
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: Path, **entries: Any) -> None:
    """Write one epoch checkpoint atomically (``entries`` as documented in this module)."""
    atomic_torch_save({"version": VERSION, **entries}, path)


def load_checkpoint(path: Path) -> Optional[dict]:
    """The checkpoint at ``path`` (tensors on the CPU), or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file from elsewhere, or a damaged disk: say which file
        raise UserError(f"checkpoint '{path}' cannot be read ({type(exc).__name__}); delete it to restart that job") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != VERSION:
        raise UserError(f"checkpoint '{path}' is not an mmhal epoch checkpoint of this version; delete it to restart that job")
    return ckpt

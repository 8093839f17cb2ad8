"""Small helpers shared by every layer: atomic writes, seeding, hashing."""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any file
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    _atomic(path, w)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic(path, w)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed for one random stream of a run, a function of ``seed`` and ``keys`` (strings, ints).

    Streams of different (seed, keys) are statistically independent (``numpy.random.SeedSequence`` over
    the seed and a hash of the keys), unlike ``seed + epoch``-style offsets, where seed s at epoch e + 1
    replays seed s + 1 at epoch e. Used for every data order and initialisation: independent replicates.
    """
    tag = hashlib.sha256(json.dumps([str(k) for k in keys]).encode()).digest()
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, *np.frombuffer(tag[:16], dtype=np.uint32).tolist()]
    hi, lo = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).tolist()
    return ((hi << 32) | lo) & (2**63 - 1)


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short hex digest of a JSON-serialisable object (keys sorted), stable across runs."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def state_digest(state: dict, n: int = 16) -> str:
    """A short SHA-256 of a state dict's names, shapes, dtypes and values: identifies one set of weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:n]


def file_sha256(path) -> str:
    """The SHA-256 (hex) of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine); one we may not signal counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def return_freed_memory() -> bool:
    """On glibc, fix malloc's mmap threshold at 1 MiB (``mallopt(M_MMAP_THRESHOLD)``), so that every buffer
    of 1 MiB or more is its own mapping and goes back to the system when freed. By default glibc raises the
    threshold to the largest buffer freed so far (up to 32 MiB), after which batches of decoded images are
    carved from the heap, whose freed space the process keeps: a run over image files then grew with the
    number of batches (1.4 GiB at 5,000 triplets, 2.9 GiB at 20,000; benchmarks/face_files.py). Processes
    forked later (DataLoader workers) inherit the setting. Returns False where there is no glibc (nothing
    to change there)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD = -3
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 20))

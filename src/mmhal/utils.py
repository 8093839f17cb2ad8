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

from .errors import UserError, machine_limit


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any file
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        why = machine_limit(exc, path.parent if path.parent.is_dir() else None)
        if why is None:
            raise
        raise UserError(f"'{path}' cannot be written: {why}") from None


def atomic_write_text(path: Path, text: str) -> None:
    def w(tmp: str) -> None:
        # UTF-8 whatever the locale; a path the locale could not decode (surrogate escapes) is written as its bytes
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
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


def load_mapped(path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped (``mmap=True``: tensors are not read until
    used), for a quick look at a saved file's record. torch's mapping hands the path to C++ as UTF-8, which fails
    for a name the locale could not decode (surrogate escapes: a non-ASCII path under LANG=C); such a file is
    opened by Python and mapped through ``/proc/self/fd``, or read whole where that does not exist."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        fd = os.open(name, os.O_RDONLY)
        try:
            proxy = f"/proc/self/fd/{fd}"
            if os.path.exists(proxy):
                return torch.load(proxy, map_location="cpu", weights_only=True, mmap=True)
        finally:
            os.close(fd)
        return torch.load(name, map_location="cpu", weights_only=True)
    return torch.load(name, map_location="cpu", weights_only=True, mmap=True)


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


def _quota(folder: Path, v2: bool) -> float | None:
    """The CPU quota set in cgroup folder ``folder``, in CPUs, or None (no limit, or nothing readable)."""
    try:
        if v2:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        else:
            quota, period = (folder / "cpu.cfs_quota_us").read_text().strip(), (folder / "cpu.cfs_period_us").read_text().strip()
        return float(quota) / float(period) if quota not in ("max", "-1") and float(period) > 0 else None
    except (OSError, ValueError):
        return None


def cgroup_cpu_limit(cgroup_file: str = "/proc/self/cgroup", mount: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``quota / period``, the smallest along the hierarchy up to
    the mount point), or None when there is none (no quota, no cgroup, not Linux). cgroup v2 reads ``cpu.max``;
    v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of the cpu controller. ``cgroup_file`` and ``mount`` are
    parameters for the tests."""
    try:
        lines = Path(cgroup_file).read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        v2 = hier == "0" and controllers == ""
        if v2:
            roots = [Path(mount), Path(mount) / "unified"]
        elif "cpu" in controllers.split(","):
            roots = [Path(mount) / controllers, Path(mount) / "cpu"]
        else:
            continue
        root = next((r for r in roots if (r / rel.lstrip("/")).is_dir()), None)
        if root is None:
            continue
        folder = root / rel.lstrip("/")
        for f in [folder, *folder.parents]:
            q = _quota(f, v2)
            if q is not None:
                limits.append(q)
            if f == root:
                break
    return min(limits) if limits else None


def usable_cpus() -> int:
    """The CPUs this process may use: those its affinity mask allows (``taskset``, a batch system's cpuset),
    capped by its cgroup's CPU quota (a container's or a cluster job's ``--cpus``; a fraction counts down,
    at least 1). ``os.cpu_count()`` counts the machine's CPUs instead: 2 workers on 1 allowed CPU ran 3x
    slower than 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


OPEN_FILES_PER_PROCESS = 16  # pipes, queues and tensors in flight of one worker process (32 base; 20 hung a run)


def require_open_files(processes: int, what: str) -> None:
    """A UserError in one sentence unless this process may open enough files (``ulimit -n``) to start
    ``processes`` worker processes (``what``, e.g. "2 DataLoader workers"): when the limit runs out while they
    start, PyTorch's DataLoader can wait forever on a batch that was never sent. ``cli`` has already raised the
    soft limit to the hard one where it could."""
    if processes < 1:
        return
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return
    need = 32 + OPEN_FILES_PER_PROCESS * processes
    if soft != resource.RLIM_INFINITY and soft < need:
        raise UserError(f"this process may open only {soft} files at once (ulimit -n), too few for {what} (about "
                        f"{need} needed); raise the limit (e.g. ulimit -n 4096) or use fewer workers "
                        "(workers=1 train.loader_workers=0)")


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

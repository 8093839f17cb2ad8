"""Errors a user can cause, and the limits of the machine a command can run into. The CLI prints their message
as one sentence and exits with code 2."""
from __future__ import annotations

import errno
import locale
import os
import re
import shutil
from typing import Optional


class UserError(Exception):
    """A mistake in the user's input (a path, a file, a name, a shape); its message is one sentence."""


class DataError(UserError):
    """A data file that cannot be used as it is."""


class TrainingDiverged(UserError):
    """A network whose training or validation loss became NaN or infinite (``engine.loop.fit``): its weights are of
    no use. ``network`` names it (the teacher, a student job and seed, a tuning trial), ``epoch`` (1-based) is the
    epoch whose loss was not finite, ``what`` says which loss, and ``hint`` which settings most likely caused it;
    the message is one sentence of them. A student's divergence is recorded and the run goes on without it; the
    teacher's stops the run (a UserError: exit code 2)."""

    def __init__(self, network: str, epoch: int, what: str, hint: str):
        self.network, self.epoch, self.what, self.hint = network, int(epoch), what, hint
        super().__init__(f"{network} diverged at epoch {epoch} ({what}): {hint}")

    def __reduce__(self):  # rebuilt from its parts when it crosses a process boundary
        return type(self), (self.network, self.epoch, self.what, self.hint)


class TrialPruned(Exception):
    """A tuning trial's student stopped after ``epoch`` (1-based) because the pruner found the trial's validation
    curve behind the others' (``engine.tune``): not an error, a trial without a score."""

    def __init__(self, epoch: int):
        self.epoch = int(epoch)
        super().__init__(f"pruned after epoch {epoch}")

    def __reduce__(self):
        return type(self), (self.epoch,)


def not_a_file(path, what: str = "a file") -> Optional[str]:
    """Why ``path`` cannot be read as a file, as the end of a sentence that starts with its name ("does not
    exist", "is a folder, not ``what``", "is a named pipe (FIFO), not a regular file", ...), or None for a regular
    file (or a link to one): a path that exists is never said not to."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a link to '{os.readlink(path)}', which does not exist"
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a part of its path is a file, not a folder)"
    except (OSError, ValueError) as exc:
        if getattr(exc, "errno", None) == errno.ENAMETOOLONG:
            return "has a name too long for this file system"
        return f"cannot be reached ({getattr(exc, 'strerror', None) or type(exc).__name__})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"is a folder, not {what}"
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    return f"is {kind}, not a regular file"


_DISK = (errno.ENOSPC, getattr(errno, "EDQUOT", -1))
_FILES = (errno.EMFILE, errno.ENFILE)
# torch.save's writer reports a short write as a RuntimeError without an errno ("unexpected pos 704 vs 598")
_SHORT_WRITE = ("unexpected pos", "PytorchStreamWriter failed", "file write failed")
_OUT_OF_MEMORY = ("can't allocate memory", "DefaultCPUAllocator", "CUDA out of memory", "out of memory")


def _gib(n: float) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    return f"{n / 1024**2:.0f} MiB" if n >= 1024**2 else f"{n / 1024:.0f} KiB"


def _free(folder) -> str:
    if folder is None:
        return ""
    try:
        return f" ({_gib(shutil.disk_usage(folder).free)} free in '{folder}')"
    except OSError:
        return ""


def _limit(resource_name: str) -> Optional[int]:
    """The soft limit ``resource.RLIMIT_<name>`` of this process (None: unlimited or unknown)."""
    try:
        import resource

        soft, _ = resource.getrlimit(getattr(resource, f"RLIMIT_{resource_name}"))
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    return None if soft == getattr(resource, "RLIM_INFINITY", -1) else soft


def _memory() -> str:
    try:
        return f" (this machine has {_gib(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'))})"
    except (ValueError, OSError, AttributeError):
        return ""


def machine_limit(exc: BaseException, folder=None) -> Optional[str]:
    """The limit of the machine that ``exc`` ran into, as one sentence with what to do, or None when ``exc`` is
    no such limit: a full disk or quota (``folder``: where it was writing), a file-size limit, too few open
    files for the worker processes, a name longer than the file system allows, memory, or text the locale's
    encoding cannot hold. Recognised by errno and, for errors passed on by torch and its worker processes (which
    keep only the message), by their text."""
    no, text = getattr(exc, "errno", None), str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or \
            any(s in text for s in _OUT_OF_MEMORY):
        asked = re.search(r"allocate (\d+) bytes", text)
        gpu = "CUDA" in text or type(exc).__name__ == "OutOfMemoryError"
        what = f"asked for {_gib(int(asked.group(1)))}" if asked else "did not fit"
        where = "GPU memory" if gpu else f"memory{_memory()}"
        return (f"out of {where}: an allocation {what}; a size setting may be far too large (model.width, "
                "train.batch_size, data.image_size, data.clip.*), or use a machine with more memory")
    if no in _DISK or "No space left on device" in text or "Disk quota exceeded" in text:
        return (f"no space is left on the device{_free(folder)}; free some space, or write elsewhere "
                "(--out; cache_dir or $MMHAL_CACHE for the cache)")
    if no == errno.EFBIG or "File too large" in text:
        return "a file would grow past this process's file-size limit (ulimit -f); raise the limit or write elsewhere"
    if no in _FILES or "Too many open files" in text or "received 0 items of ancdata" in text:
        n = _limit("NOFILE")
        return (f"this process may open only {n if n is not None else 'a few'} files at once (ulimit -n), too few "
                "for its worker processes; raise the limit (e.g. ulimit -n 4096) or use fewer workers "
                "(workers=1 train.loader_workers=0)")
    if no == errno.ENAMETOOLONG:
        name = getattr(exc, "filename", None)
        return (f"a file or folder name is longer than the file system allows{f' ({name!r})' if name else ''}; "
                "choose a shorter name")
    if any(s in text for s in _SHORT_WRITE):
        size = _limit("FSIZE")
        if size is not None:
            return f"a file would grow past this process's file-size limit (ulimit -f, {size} bytes); raise it"
        return (f"the write stopped short, so the disk may be full{_free(folder)}; free some space, or write "
                "elsewhere (--out; cache_dir or $MMHAL_CACHE for the cache)")
    if isinstance(exc, (UnicodeEncodeError, UnicodeDecodeError)):
        encoding = locale.getpreferredencoding(False)
        if encoding.lower().replace("-", "") != "utf8":
            verb = "written" if isinstance(exc, UnicodeEncodeError) else "read"
            return (f"a file name or text cannot be {verb} in this locale's encoding ({encoding}); run mmhal under a "
                    "UTF-8 locale (e.g. LC_ALL=C.UTF-8) or with PYTHONUTF8=1")
    return None

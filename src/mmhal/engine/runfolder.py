"""Run folders: where ``mmhal run`` and ``mmhal tune`` write, and how, by the rule of ``engine.outputs`` (shared
with predict, export and report).

mmhal marks every folder it makes for a run or a tuning with ``MARKER`` (JSON: mmhal version, when,
which command), and writes into a folder only when it does not exist yet, is empty, or carries the
marker (a run folder of an mmhal from before the marker is recognised by its config.yaml and results), and never
among another run's own files (``outputs.check_not_in_run``). It removes only what it wrote (``outputs.is_own``):
a user's files in a run folder are never deleted, also in its report/, predictions/ and export/ folders, where
only what the records of those commands claim is mmhal's. ``--overwrite`` builds the new run in a sibling folder
and swaps it in once it is complete, so the old run stays whole until then.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .. import __version__
from ..errors import UserError
from ..utils import atomic_write_json
from .outputs import (EVALUATION_FILE, FOLDER_MARKERS, LOCK, MARKER, OWN_DIRS, OWN_FILES, OWN_TREES,  # noqa: F401
                      SIBLING_EXTRA, check_not_in_run, check_path, files_below as _files, is_own, out_path,
                      path_exists, read_marker, remove_empty as _remove_empty, remove_own, run_marker, sibling,
                      stale_siblings)


def probe_writable(folder: Path, what: str, hint: str = "") -> None:
    """A UserError in one sentence (``what`` cannot be created or written, then ``hint``) unless a file can
    be created in the existing folder ``folder``."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".mmhal-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{what} cannot be created or written ({exc.strerror or type(exc).__name__}){hint}") from None


_HELD_LOCKS: set = set()  # descriptors of the FolderLocks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader worker): close the lock descriptors inherited from the parent, so that a
    child which outlives a killed parent does not keep the run locked (a flock lasts while any descriptor of
    its open file is open)."""
    for fd in list(_HELD_LOCKS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class FolderLock:
    """The lock of a run (or tuning) folder that a process is writing: ``LOCK`` in the folder, held with
    ``fcntl.flock`` for as long as the process lives. The operating system releases it when the process ends,
    however it ends (Ctrl-C, SIGKILL, a lost node), so a lock never outlives its writer and never blocks a
    later command; the file itself (the writer's pid and start) may stay, and then means nothing. Processes
    forked from the writer do not hold it (``_drop_inherited_locks``); started ones never inherit descriptors.
    Where there is no ``fcntl`` (Windows) nothing is locked."""

    def __init__(self, folder: Path):
        self.folder, self.fd = Path(folder), None

    @staticmethod
    def holder(folder: Path) -> Optional[str]:
        """Who holds the lock of ``folder`` (e.g. "pid 1234, since 2026-12-07T14:03:00"), or None when no live
        process does."""
        try:
            import fcntl
        except ImportError:
            return None
        path = Path(folder) / LOCK
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            except OSError:
                return "another process"
        except OSError:
            return None
        finally:
            os.close(fd)
        return None

    def acquire(self, what: str) -> None:
        """Hold the lock; a UserError in one sentence when another live process holds it."""
        try:
            import fcntl
        except ImportError:
            return
        path = self.folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = (os.read(fd, 200).decode("utf-8", "replace").strip() or "another process")
            os.close(fd)
            raise UserError(busy(self.folder, what, who)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%S')}".encode())
        self.fd = fd
        _HELD_LOCKS.add(fd)

    def release(self) -> None:
        if self.fd is not None:
            _HELD_LOCKS.discard(self.fd)
            os.close(self.fd)  # closing the last descriptor releases the lock
            self.fd = None


def busy(folder: Path, what: str, who: str) -> str:
    return (f"the {what} in '{folder}' is being written by another mmhal process ({who}); wait until it ends, "
            "or give another --out")


class RunLog:
    """``run.log`` of a run folder: every line the run prints to the terminal (not the progress bars), appended as it
    is printed, so that the folder keeps its own record; a ``--resume`` appends to it. Lines printed before the
    folder exists (while the data load) are held and written when ``attach`` names the file. Call it as ``log``."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo
        self.pending: list[str] = []
        self.file = None

    def __call__(self, line: str) -> None:
        self.echo(line)
        self.write(line)

    def write(self, line: str) -> None:
        """Append ``line`` to the file only (what the command prints itself, e.g. the final table)."""
        if self.file is None:
            self.pending.append(line)
            return
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except OSError:  # a full disk stops the log, never the run (the run's own files say so when they fail)
            self.close()

    def attach(self, path: Path, command: str) -> None:
        """Start appending to ``path``: a header line (time and command), then the lines held so far."""
        try:
            self.file = open(path, "a", encoding="utf-8", errors="backslashreplace")
        except OSError:
            return
        self.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S %z')}: {command}")
        held, self.pending = self.pending, []
        for line in held:
            self.write(line)

    @staticmethod
    def append(path: Path, lines: list[str]) -> None:
        """Append ``lines`` to the run.log at ``path`` (what the command prints after the run: the table, the
        recommendation); nothing when the folder has none (a distributed rank) or it cannot be written."""
        if not path.is_file():
            return
        try:
            with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError:
            pass

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None


@dataclass
class RunFolder:
    """Where a run (or tuning) named ``out`` writes, and how: ``mode`` is ``new`` (``out`` is made),
    ``adopt`` (``out`` is empty, or an unfinished tuning, or holds only a marker), ``resume`` (the run in
    ``out`` goes on, in place) or ``replace`` (``--overwrite`` of a run: the new run is built in ``work``,
    a sibling of ``out``, and swapped in by ``commit``)."""

    out: Path
    kind: str
    mode: str
    work: Path
    opened: bool = False
    made: tuple = ()  # the parent folders ``open`` created (removed again when a failed run leaves nothing)
    lock: Optional[FolderLock] = None  # held on ``work`` from ``open`` on, for the life of this process

    def open(self, log, settings: Optional[dict] = None) -> None:
        """Make (or adopt) the folder and mark it; called once every check of the user's input has passed.
        ``settings`` (the resolved configuration, absolute paths) is recorded in the marker of a run that
        starts: what ``--resume`` must match, whatever is later edited in its config.yaml."""
        if self.mode == "replace":
            self._remove_stale(log)
        self.made = tuple(p for p in self.work.parents if not p.exists())
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            self.lock = FolderLock(self.work)
            self.lock.acquire(self.kind)  # a second process into the same folder is refused from here on
            if self.mode != "resume" or read_marker(self.work) is None:
                atomic_write_json(self.work / MARKER, {"mmhal": __version__, "command": self.kind,
                                                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                       **({"settings": settings} if settings is not None else {})})
        except OSError as exc:
            raise UserError(f"the {self.kind} folder '{self.out}' cannot be created or written "
                            f"({exc.strerror or type(exc).__name__})") from None
        self.opened = True

    def release(self) -> None:
        """Let go of the folder's lock (when the command ends; the process's end does it too)."""
        if self.lock is not None:
            self.lock.release()

    def _remove_stale(self, log) -> None:
        """Remove the temporary folders of earlier ``--overwrite`` runs of ``out`` that were killed."""
        for stale in stale_siblings(self.out, kinds=("new",)):
            if stale == self.work or read_marker(stale) is None:
                continue
            if not remove_own(stale, self.kind):
                _remove_empty(stale)
                log(f"note: removed '{stale}', the unfinished replacement of '{self.out}' by a run that was killed")

    def has_progress(self) -> bool:
        """Whether a student has trained at least an epoch here (something ``--resume`` would keep)."""
        return any(self.work.glob("checkpoints/*.pt")) or any(self.work.glob("jobs/*.pt"))

    def discard(self, log, interrupted: bool) -> None:
        """After a failure or an interrupt: a replacement is removed (the old run in ``out`` was never
        touched); a new run that failed before any student trained leaves nothing; an interrupted run and a
        resumed one stay for ``--resume``; an unfinished tuning is removed."""
        if not self.opened or self.mode == "resume":
            return
        if self.mode != "replace" and self.kind == "run" and (interrupted or self.has_progress()):
            return
        left = remove_own(self.work, self.kind)
        if not left and self.mode in ("new", "replace"):
            _remove_empty(self.work)
            for parent in self.made:  # deepest first; only while empty
                try:
                    parent.rmdir()
                except OSError:
                    break

    def commit(self, log) -> None:
        """Put a complete replacement in the place of the old run: ``out`` is renamed aside, the new folder
        takes its name, the files in the old folder that mmhal did not write move into the new one, and
        what is left of the old run is deleted."""
        if self.mode != "replace":
            return
        who = FolderLock.holder(self.out)  # a --resume of the old run started while this one trained
        if who is not None:
            raise UserError(busy(self.out, self.kind, who) + "; the new run was discarded")
        old = sibling(self.out, "old")
        try:
            os.rename(self.out, old)
        except OSError:  # ``out`` cannot be renamed (a mount point, say): its run is replaced in place instead
            remove_own(self.out, self.kind)
            for rel in _files(self.work):
                (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.work / rel, self.out / rel)
            _remove_empty(self.work)
            self.work = self.out
            return
        try:
            os.rename(self.work, self.out)
        except OSError:
            os.rename(old, self.out)
            raise
        self.work = self.out
        kept = _move_user_files(old, self.out, self.kind)
        if kept:
            log(f"note: '{old}' keeps {len(kept)} file(s) of yours that the new run also has "
                f"({', '.join(map(str, kept[:3]))}); nothing was deleted")
        else:
            _remove_empty(old)

    def interrupted(self) -> str:
        """What was kept after Ctrl-C, and how to go on (one sentence)."""
        resume = f"mmhal run --resume --out {shlex.quote(str(self.out))}"
        if self.kind == "tune":
            return ("the tuning was not finished and its files were removed" if self.opened else "nothing was written") + \
                "; the same command starts it again"
        if self.mode == "replace":
            return (f"the earlier run in '{self.out}' is kept as it was and the new one was discarded; "
                    "start it again with --overwrite to replace it")
        if self.mode == "resume" or self.opened:
            return f"the run stopped where it was; continue it with: {resume}"
        return f"nothing was written to '{self.out}'; start the same command again"


def _move_user_files(old: Path, new: Path, kind: str) -> list[Path]:
    """Move what mmhal did not write from folder ``old`` into ``new`` (same relative paths); delete the rest
    of ``old``; return the files left in ``old`` because ``new`` has a file of the same name."""
    for entry in list(old.iterdir()):  # the user's own files and folders at the top move whole
        if entry.name in OWN_DIRS or is_own(Path(entry.name), kind):
            continue
        if not (new / entry.name).exists():
            os.rename(entry, new / entry.name)
    kept = []
    for rel in remove_own(old, kind):
        target = new / rel
        if target.exists() or target.is_symlink():
            kept.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old / rel, target)
    remove_own(old, kind)  # the folders the moves emptied
    return kept


def plan_folder(out: Path, kind: str = "run", resume: bool = False, overwrite: bool = False) -> RunFolder:
    """Check ``--out`` before any data is read, without writing into it; a UserError in one sentence when
    mmhal may not write there: a file on the path, a folder it cannot write, a non-empty folder it did not
    make (no ``MARKER``), a folder of the other command, a finished run (unless ``overwrite`` or ``resume``),
    an interrupted run (unless ``resume`` or ``overwrite``), a finished tuning; also a path among another
    run's own files (``outputs.check_not_in_run``), a name longer than the file system allows (with room for
    the sibling an ``--overwrite`` builds the new run in), and a link (give the folder it points to). ``~`` is
    expanded."""
    out = out_path(out)
    check_path(out, True, SIBLING_EXTRA if overwrite or not path_exists(out) else 0)  # first: a name too long
    if out.is_symlink():  # --overwrite would replace the link, and move the files of the folder it points to
        target = os.path.realpath(out)
        raise UserError(f"--out '{out}' is a link (to '{target}'); give the folder itself, --out {shlex.quote(target)}")
    check_not_in_run(out, kind)
    if resume and overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one of them")
    who = FolderLock.holder(out) if out.is_dir() else None
    if who is not None:
        raise UserError(busy(out, (read_marker(out) or {}).get("command", kind), who))
    if not out.exists():
        if resume:
            raise UserError(f"there is no run to resume in '{out}' (it does not exist); start it without --resume")
        base = next(p for p in out.parents if p.exists())
        probe_writable(base, f"the {kind} folder '{out}' (in '{base}')")
        return RunFolder(out, kind, "new", out)
    marker = run_marker(out)
    others = [e.name for e in out.iterdir() if e.name != MARKER]
    if marker is None:
        output = next((c for c, name in FOLDER_MARKERS.items() if (out / name).is_file()), None)
        if others and output is not None:  # mmhal's own, but another command's output, not a run's folder
            raise UserError(f"--out '{out}' is a folder that mmhal {output} wrote, not a {kind} folder (it has no "
                            f"{MARKER} marker); give a new or empty folder")
        if others:
            raise UserError(f"--out '{out}' is a folder that mmhal did not make (it holds files and no {MARKER} "
                            f"marker); give a new or empty folder")
        if resume:
            raise UserError(f"there is no run to resume in '{out}' (it is empty); start it without --resume")
        probe_writable(out, f"the {kind} folder '{out}'")
        return RunFolder(out, kind, "adopt", out)
    made_by = marker.get("command", "run")
    if made_by != kind:
        raise UserError(f"--out '{out}' is the folder of an mmhal {made_by}, not of a {kind}; give another --out")
    probe_writable(out, f"the {kind} folder '{out}'")
    if kind == "tune":
        if (out / "tuned.yaml").exists():
            raise UserError(f"'{out}' already holds a tuning result (tuned.yaml); choose another --out")
        return RunFolder(out, kind, "adopt", out)  # an unfinished tuning: it starts again
    started, finished = (out / "config.yaml").is_file(), (out / "results.json").is_file()
    if resume:
        if not started:
            raise UserError(f"there is no run to resume in '{out}' (it has no config.yaml); start it without --resume")
        return RunFolder(out, kind, "resume", out)
    if not started and not finished:
        return RunFolder(out, kind, "adopt", out)
    if not overwrite:
        if finished:
            raise UserError(f"run folder '{out}' already holds results; choose another --out or pass --overwrite")
        raise UserError(f"'{out}' holds an interrupted run; continue it with --resume or replace it with --overwrite")
    probe_writable(out.parent, f"the replacement of '{out}' (in '{out.parent}')")
    return RunFolder(out, kind, "replace", sibling(out, "new"))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run or a tuning; the message says what was kept and how to go on."""


#: the signals that stop a command as Ctrl-C does (cli._stop_on_signals)
STOP_SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}


@contextlib.contextmanager
def sigint_held():
    """Hold the stopping signals (SIGINT, SIGTERM, SIGHUP: ``STOP_SIGNALS``) back from this thread for the block;
    one that came meanwhile is delivered when it ends (processes started inside the block begin with them held
    back too). Nothing where there is no ``pthread_sigmask`` (Windows)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)

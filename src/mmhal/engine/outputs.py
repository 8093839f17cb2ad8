"""Where mmhal's commands write, and what they may remove: one rule for ``run``, ``tune``, ``predict``, ``export``
and ``report``.

**The rule.** mmhal never deletes or replaces a file it did not write, and never writes among a run's own files.
What it wrote it recognises by a record it leaves beside it:

* a run or tuning folder carries ``MARKER`` (``.mmhal-run``: mmhal version, when, which command; a run folder of
  an mmhal from before the marker is recognised by its config.yaml and results, ``earlier_run``); its own files
  are known by name (``is_own``: config.yaml, results.json, ``models/<job>-seed<s>.pt``, ...);
* a folder output (``mmhal report``, ``mmhal export``) carries a marker (``.mmhal-report``, ``.mmhal-export``;
  ``FOLDER_MARKERS``) listing the files it wrote and their SHA-256;
* a file output (``mmhal predict``'s CSV) has a hidden sidecar beside it, ``.NAME.mmhal-predict``, recording
  the command and the file's SHA-256.

A file is mmhal's only while such a record claims it and (where it records a SHA-256) the file is unchanged; a
file you edited, or put into one of these folders, is yours. Inside a run folder the output trees of the other
commands (``report/``, ``predictions/``, ``export/<name>/``) hold only what their records claim: ``mmhal run
--overwrite`` keeps a file of yours planted there.

**Before any work**, every writing command checks its output path (``check_path``): ``~`` is expanded (a quoted
``'~/x'`` is the home folder's ``x``, never a folder named ``~``); no file lies on the way; every name still to
be made fits the file system (``PC_NAME_MAX`` of the nearest existing folder, 255 where it is not known), less
the characters of the hidden siblings mmhal writes beside it (``SIBLING_EXTRA`` for a folder,
``.NAME.mmhal-new-PID``; ``FILE_EXTRA`` for predict's CSV, its sidecar's temporary file), and so does the
whole path (``PC_PATH_MAX``, with room for the files inside a folder); and it lies nowhere
among a run's own files (``check_not_in_run``): not a run's (or tuning's) top-level files, ``models/``,
``jobs/``, ``checkpoints/`` or ``trials/``, and, for predict, export and report, not the run folder itself. An
existing output (``plan_output``) is replaced only when it is an earlier output of the same command that holds
nothing else (so never a folder that holds a run or anything of yours): a folder whose marker claims everything
in it (report: always; export: with ``--overwrite``), a file its sidecar claims (with ``--overwrite``). Anything else is refused with one sentence naming the path and
what to do; run and tune folders follow the same rule in ``runfolder.plan_folder``.

**Replacing.** A folder output is built in a hidden sibling ``.NAME.mmhal-new-PID`` and renamed into place once
complete; the folder it replaces is renamed ``.NAME.mmhal-old-PID`` and what its marker claims is deleted. A
file output is written to a temporary file and renamed, then its sidecar. Siblings left by a killed process are
removed by the next write of the same output, as far as their marker claims what they hold.

**Deleting.** This is the one module that deletes folders: ``remove_own`` (what a run or tuning wrote),
``remove_claimed`` (what a folder output's marker claims), ``remove_empty`` (empty folders only) and
``discard_new`` (the sibling this process made and filled, after a failure).
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from .. import __version__
from ..errors import UserError
from ..utils import atomic_write_json, atomic_write_text, file_sha256, load_mapped, pid_alive

# ----------------------------------------------------------------------------- run and tuning folders
EVALUATION_FILE = "evaluation.pt"
MARKER = ".mmhal-run"
LOCK = ".mmhal-lock"  # held (flock) by the process writing a run or tuning folder: runfolder.FolderLock
#: what mmhal writes at the top of a folder of each kind (beside the marker and its subfolders below)
RUN_LOG = "run.log"  # what a run printed (engine.runfolder.RunLog)
OWN_FILES = {"run": {"config.yaml", "results.json", "results.csv", EVALUATION_FILE, RUN_LOG},
             "tune": {"tune.json", "trials.csv", "tuned.yaml", "study.db", "study.db-journal", "study.db-wal",
                      "study.db-shm"}}
RUN_DIRS = ("models", "jobs", "checkpoints", "trials", "metrics", "tensorboard")  # a run's (or tuning's) own folders: no other output there
OWN_TREES = ("report", "predictions", "export")  # where mmhal report, predict and export write in a run by default
OWN_DIRS = (*RUN_DIRS, *OWN_TREES)
_JOB_FILE = re.compile(r".+-seed-?\d+\.pt")
_METRICS_FILE = re.compile(r".+-seed-?\d+\.csv")
_JOB_DIR = re.compile(r".+-seed-?\d+")
METRICS_COLUMNS = ("epoch", "lr", "seconds")  # the first columns of a metrics file (engine.loop.write_metrics)
METRICS_HEADER = ",".join(METRICS_COLUMNS) + ","  # how a metrics file of mmhal's begins
_TEMP_FILE = re.compile(r"\..+\.tmp")  # a half-written file of utils._atomic

# ----------------------------------------------------------------------------- the outputs of the other commands
FOLDER_MARKERS = {"report": ".mmhal-report", "export": ".mmhal-export"}
SIDECAR = ".mmhal-predict"  # predict's CSV NAME has its record in .NAME.mmhal-predict
NOUNS = {"report": "report folder", "export": "export folder", "predict": "predictions file"}
MAX_PID_DIGITS = 7  # Linux's pid_max is at most 2**22
SIBLING_EXTRA = len("." + ".mmhal-new-") + MAX_PID_DIGITS  # .NAME.mmhal-new-PID / .NAME.mmhal-old-PID
_TEMP_EXTRA = len("." + ".12345678.tmp")  # utils._atomic's temporary file .NAME.XXXXXXXX.tmp
FILE_EXTRA = len("." + SIDECAR) + _TEMP_EXTRA  # the sidecar's temporary file, the longest name beside a CSV
DEFAULT_NAME_MAX = 255
DEFAULT_PATH_MAX = 4096
INNER_RESERVE = 128  # the longest path mmhal writes inside an output folder (a tuning's trials/<tag>/checkpoints/...)


def read_marker(folder: Path) -> Optional[dict]:
    """The run marker of ``folder`` (``{"mmhal", "created", "command"}``), or None when it has none; a marker
    that cannot be read counts as a run's."""
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = None
    return marker if isinstance(marker, dict) else {"command": "run"}


def earlier_run(folder: Path) -> Optional[dict]:
    """``{"command": "run"}`` when ``folder`` is a run folder written by an mmhal from before ``MARKER`` (its
    config.yaml is an mmhal configuration, and it holds results.json, finished jobs or epoch checkpoints);
    None otherwise."""
    import yaml

    if not (folder / "config.yaml").is_file():
        return None
    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict) or not {"data", "train", "methods", "seeds"} <= set(cfg):
        return None
    ran = (folder / "results.json").is_file() or any(folder.glob("jobs/*.pt")) or any(folder.glob("checkpoints/*.pt"))
    return {"command": "run"} if ran else None


def run_marker(folder: Path) -> Optional[dict]:
    """What ``folder`` is, when it is a run or tuning folder (its marker, or that of a run of an earlier mmhal);
    None otherwise."""
    try:
        if not folder.is_dir():
            return None
    except OSError:
        return None
    return read_marker(folder) or earlier_run(folder)


def is_own(rel: Path, kind: str, folder: Optional[Path] = None) -> bool:
    """Whether ``rel``, a file's path inside the folder ``folder`` of ``kind`` (run or tune), names a file mmhal
    wrote: its top-level files, the student files of ``models/``, ``jobs/``, ``checkpoints/`` and (a tuning's)
    ``trials/<tag>/{jobs,checkpoints}/`` (``<job>-seed<s>.pt``), ``models/teacher.pt``, half-written temporary
    files, and, under ``report/``, ``predictions/`` and ``export/<name>/``, what the records of mmhal report,
    predict and export claim (``claimed_output``; never without ``folder``, whose records are read)."""
    parts = Path(rel).parts
    name = parts[-1]
    if _TEMP_FILE.fullmatch(name):
        return True
    if len(parts) == 1:
        return name in (MARKER, LOCK) or name in OWN_FILES.get(kind, set())
    top = parts[0]
    if top in OWN_TREES:
        return folder is not None and claimed_output(folder, Path(rel))
    if len(parts) == 3 and top == "tensorboard":  # <job>-seed<s>/ of a student, an event file of TensorBoard's
        return bool(_JOB_DIR.fullmatch(parts[1])) and name.startswith("events.out.tfevents.")
    if len(parts) == 2 and top == "metrics":
        return bool(_METRICS_FILE.fullmatch(name)) and (folder is None or _metrics_by_mmhal(folder / rel))
    if len(parts) == 2 and top in ("jobs", "checkpoints", "models"):
        named = bool(_JOB_FILE.fullmatch(name)) or (top == "models" and name == "teacher.pt")
        return named and (folder is None or written_by_mmhal(folder / rel, top))
    if kind == "tune" and top == "trials" and len(parts) == 4 and parts[2] in ("jobs", "checkpoints"):
        return bool(_JOB_FILE.fullmatch(name)) and (folder is None or written_by_mmhal(folder / rel, parts[2]))
    return False


#: keys that files of each kind mmhal writes hold, any one group of them (a model; a finished job's record or a
#: companion network's; an epoch checkpoint)
_FILE_KEYS = {"models": (("model", "mmhal"),), "jobs": (("epochs",), ("companion_of", "best_epoch")),
              "checkpoints": (("version", "epoch", "epochs", "seed"),)}


def _metrics_by_mmhal(path: Path) -> bool:
    """Whether ``path`` (``metrics/<job>-seed<s>.csv``) begins as the metrics files mmhal writes."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read(len(METRICS_HEADER)) == METRICS_HEADER
    except OSError:
        return False


def written_by_mmhal(path: Path, kind: str) -> bool:
    """Whether ``path`` (in a run's ``models/``, ``jobs/`` or ``checkpoints/``, ``kind``) is a file mmhal wrote
    there, not only named like one: it loads with ``torch.load(weights_only=True)`` (nothing unpickled but
    tensors and plain values; memory-mapped, so no weights are read) as a dict with the keys mmhal writes into
    such files (``_FILE_KEYS``), and a student model names the method and seed of its file name. A file of
    yours named ``models/kd-seed5.pt`` is kept by ``--overwrite``."""
    try:
        record = load_mapped(path)
    except Exception:
        return False
    if not isinstance(record, dict) or not any(all(k in record for k in keys) for keys in _FILE_KEYS[kind]):
        return False
    if kind == "models" and path.name != "teacher.pt":
        return f"{record.get('method')}-seed{record.get('seed')}.pt" == path.name
    return True


def claimed_output(run: Path, rel: Path) -> bool:
    """Whether ``run / rel``, a file under the run's ``report/``, ``predictions/`` or ``export/<name>/``, is
    claimed by the record of the command that writes there (and unchanged since)."""
    top = rel.parts[0]
    if top == "predictions":
        return file_claimed(run / rel, "predict")
    if top == "report":
        base = run / "report"
    elif len(rel.parts) >= 3:
        base = run / "export" / rel.parts[1]
    else:
        return False
    command = "report" if top == "report" else "export"
    marker = output_marker(base, command)
    return marker is not None and folder_claims(base, command, marker, (run / rel).relative_to(base))


def files_below(folder: Path) -> list[Path]:
    """Every file (and link) below ``folder``, relative to it; links to folders are not followed."""
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        for d in list(dirs):
            if (here / d).is_symlink():
                dirs.remove(d)
                files.append(d)
        found += [(here / f).relative_to(folder) for f in files]
    return found


def remove_own(folder: Path, kind: str) -> list[Path]:
    """Delete what mmhal wrote in ``folder`` (``is_own``, decided for every file before any is deleted) and the
    folders of its own that are left empty; return the files of others that remain (relative paths)."""
    files = files_below(folder)
    own = {rel for rel in files if is_own(rel, kind, folder)}
    for rel in own:
        (folder / rel).unlink(missing_ok=True)
    for name in OWN_DIRS:
        if (folder / name).is_dir() and not (folder / name).is_symlink():
            remove_empty(folder / name)  # what holds someone else's file stays
    return [rel for rel in files if rel not in own]


def remove_empty(folder: Path) -> None:
    """Remove ``folder`` and the folders below it, as far as they are empty (never a file)."""
    for root, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        try:
            os.rmdir(root)
        except OSError:
            pass


# ----------------------------------------------------------------------------- the output path
def _short(path) -> str:
    text = str(path)
    return text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}"


def out_path(text) -> Path:
    """``--out`` as a path, ``~`` expanded (a quoted ``'~/x'`` reaches mmhal as it is); a UserError when the
    ``~user`` it starts with names no home folder."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        first = Path(text).parts[0]
        raise UserError(f"--out '{text}' starts with '{first}', which names no home folder here; write the path "
                        "in full") from None


def _limit(folder: Path, name: str, default: int) -> int:
    """``os.pathconf(folder, name)`` (PC_NAME_MAX, PC_PATH_MAX), or ``default`` where it is not known."""
    try:
        limit = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):
        return default
    return limit if limit and limit > 0 else default


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system of the existing folder ``folder`` allows (255 when it
    does not say)."""
    return _limit(folder, "PC_NAME_MAX", DEFAULT_NAME_MAX)


def path_exists(path: Path) -> bool:
    """``path.exists()``, False for a name too long to exist (``stat`` fails with ENAMETOOLONG then)."""
    try:
        return path.exists()
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return False
        raise


def check_path(out: Path, folder: bool, extra: int, default: str = "") -> None:
    """A UserError in one sentence when ``out`` (a folder when ``folder``, else a file) cannot be an output: a
    name still to be made is longer than the file system allows (``out``'s own with ``extra`` bytes to spare for
    mmhal's hidden siblings beside it), the whole path is (with ``INNER_RESERVE`` bytes to spare for the files in
    a folder), or a file lies on its way (or, for a folder, is ``out``). The names come first: ``stat`` of a
    name too long fails. ``default``: ``out`` is a default the user never typed, made as ``default`` says (e.g.
    "made from the data file's name"); the sentence then names it so and asks for ``--out``."""
    subject = f"the default output '{_short(out)}' ({default})" if default else f"--out '{_short(out)}'"
    give = "give --out, a path with" if default else "give"
    base = next((p for p in out.parents if path_exists(p)), Path("."))
    limit = name_max(base)
    for name in out.parts[len(base.parts):-1]:  # the folders still to be made
        if len(os.fsencode(name)) > limit:
            where = subject if default else "--out"
            raise UserError(f"the folder name '{_short(name)}' in {where} is {len(os.fsencode(name))} bytes long, more "
                            f"than the {limit} this file system allows; {give} a shorter name")
    size = len(os.fsencode(out.name))
    if size + extra > limit:
        beside = "its temporary folder .NAME.mmhal-new-PID" if folder else "its record and temporary files"
        raise UserError(f"{subject} has a name of {size} bytes, but this file system allows {limit} and "
                        f"mmhal needs {extra} of them for {beside} beside it; {give} a name of at most "
                        f"{limit - extra} bytes")
    length, path_max = len(os.fsencode(os.path.abspath(out))), _limit(base, "PC_PATH_MAX", DEFAULT_PATH_MAX)
    room = extra + (INNER_RESERVE if folder else 0)
    if length + room >= path_max:
        raise UserError(f"{subject} is a path of {length} bytes, but this file system allows {path_max} "
                        f"and mmhal needs {room} more for the files it writes there; "
                        f"{'give --out, a shorter path' if default else 'give a shorter path'}")
    what = "a folder" if folder else "a file"
    for p in out.parents:
        if p.exists() and not p.is_dir():
            raise UserError(f"--out '{_short(out)}' lies under '{_short(p)}', which is a file; give the path of {what}")
    if folder and out.exists() and not out.is_dir():
        raise UserError(f"--out '{_short(out)}' is a file; give the path of a folder")


def check_not_in_run(out: Path, command: str) -> None:
    """A UserError in one sentence when ``out`` lies among a run's (or tuning's) own files: its top-level files,
    ``models/``, ``jobs/``, ``checkpoints/``, ``trials/``, or (for ``command`` other than run and tune) the run
    folder itself."""
    try:
        target = out.resolve()
    except (OSError, RuntimeError):  # a loop of links: the path as written
        target = Path(os.path.abspath(out))
    for home in [target, *target.parents]:
        marker = run_marker(home)
        if marker is None:
            continue
        kind = marker.get("command", "run")
        rel = target.relative_to(home)
        if not rel.parts:
            if command in ("run", "tune"):
                continue  # plan_folder decides about a run folder as a run's --out
            what = ("the path of a CSV file to write" if command == "predict" else "a new or empty folder")
            raise UserError(f"--out '{_short(out)}' is the folder of an mmhal {kind}; give {what} as --out, or leave "
                            "it out for the default inside the run")
        if len(rel.parts) == 1 and (rel.name == MARKER or any(rel.name in own for own in OWN_FILES.values())):
            raise UserError(f"--out '{_short(out)}' is the {kind}'s own {rel.name} in '{_short(home)}'; give another "
                            "--out")
        if rel.parts[0] in RUN_DIRS:
            raise UserError(f"--out '{_short(out)}' lies in the {rel.parts[0]}/ folder of the mmhal {kind} in "
                            f"'{_short(home)}', which holds the {kind}'s own files; give another --out")


# ----------------------------------------------------------------------------- the records of outputs
def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def output_marker(folder: Path, command: str) -> Optional[dict]:
    """The marker of the folder output ``folder`` of ``command`` (report, export), or None when it has none (or
    one that cannot be read: then nothing in the folder is claimed)."""
    path = folder / FOLDER_MARKERS[command]
    if not path.is_file() or path.is_symlink():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("files", []), list):
        return None
    return marker


def folder_claims(folder: Path, command: str, marker: dict, rel: Path) -> bool:
    """Whether ``marker`` (of the folder output ``folder`` of ``command``) claims the file ``rel``: the marker
    itself, or a file it lists whose SHA-256, where the marker records one, is unchanged (a report marker of an
    mmhal from before the SHA-256 lists names only)."""
    name = rel.as_posix()
    if name == FOLDER_MARKERS[command]:
        return True
    if name not in marker.get("files", []):
        return False
    digests = marker.get("sha256")
    digest = digests.get(name) if isinstance(digests, dict) else None
    try:
        return digest is None or (folder / rel).is_file() and file_sha256(folder / rel) == digest
    except OSError:
        return False


def _foreign(folder: Path, command: str, marker: dict) -> list[Path]:
    """What ``folder`` holds that ``marker`` does not claim: files and links, and folders with no claimed file."""
    claimed: list[Path] = []
    foreign: list[Path] = []
    for rel in files_below(folder):
        (claimed if folder_claims(folder, command, marker, rel) else foreign).append(rel)
    holders = {p for rel in claimed for p in rel.parents}
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            rel = (Path(root) / d).relative_to(folder)
            if rel not in holders and not any(f == rel or rel in f.parents for f in foreign):
                foreign.append(rel)
    return sorted(foreign)


def sidecar(path: Path) -> Path:
    """Where the record of the file output ``path`` lies: ``.NAME.mmhal-predict`` beside it."""
    return path.parent / f".{path.name}{SIDECAR}"


def _sidecar_record(path: Path) -> Optional[dict]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("command") == "predict" else None


def file_claimed(path: Path, command: str = "predict") -> bool:
    """Whether ``path`` is an earlier output of ``command`` (predict) unchanged since (its sidecar records its
    name and SHA-256), or such a sidecar itself."""
    if path.is_symlink() or not path.is_file():
        return False
    if path.name.startswith(".") and path.name.endswith(SIDECAR):
        return _sidecar_record(path) is not None
    record = _sidecar_record(sidecar(path))
    try:
        return record is not None and record.get("file") == path.name and record.get("sha256") == file_sha256(path)
    except OSError:
        return False


# ----------------------------------------------------------------------------- planning and writing an output
@dataclass
class Output:
    """Where ``command`` (predict, export, report) writes: ``path`` (a folder for export and report, a file for
    predict), and whether ``--overwrite`` was given (an earlier output of the command may then be replaced)."""

    path: Path
    command: str
    overwrite: bool


def plan_output(out: Path, command: str, overwrite: bool, default: str = "") -> Output:
    """Check the output ``out`` of ``command`` before any work, without writing (see the module docstring): a
    UserError in one sentence unless it is new, an empty folder (export, report), or an earlier output of
    ``command`` that holds nothing else (and ``overwrite``; report replaces its own always). ``default``: how
    ``out`` was made when the user gave no ``--out`` (``check_path``)."""
    folder = command in FOLDER_MARKERS
    check_path(out, folder, SIBLING_EXTRA if folder else FILE_EXTRA, default)
    check_not_in_run(out, command)
    noun = NOUNS[command]
    if out.is_symlink():
        raise UserError(f"--out '{_short(out)}' is a link; give the path of a {'folder' if folder else 'file'}")
    record = sidecar(out)
    if not folder and (record.exists() or record.is_symlink()) and not file_claimed(record, command):
        raise UserError(f"'{_short(record)}', where mmhal {command} keeps its record of --out, is not such a record; "
                        "move it away or choose another --out")
    if not out.exists():
        return Output(out, command, overwrite)
    if folder:
        if not any(out.iterdir()):
            return Output(out, command, overwrite)  # an empty folder holds nothing to lose
        marker = output_marker(out, command)
        if marker is None:
            raise UserError(f"'{_short(out)}' exists and is not {'an' if noun[0] in 'aeiou' else 'a'} {noun} mmhal "
                            f"wrote (it has no {FOLDER_MARKERS[command]} file); give another --out, or remove that "
                            "folder yourself")
        foreign = _foreign(out, command, marker)
        if foreign:
            raise UserError(f"the {noun} '{_short(out)}' holds '{foreign[0]}', which mmhal did not write (or which "
                            "was changed since); move it away or give another --out")
    else:
        if out.is_dir():
            raise UserError(f"--out '{_short(out)}' is a folder; give the path of a CSV file")
        if not file_claimed(out, command):
            raise UserError(f"'{_short(out)}' exists and is not a file mmhal {command} wrote (or it was changed "
                            "since); choose another --out, or move that file away yourself")
    if not overwrite:
        raise UserError(f"'{_short(out)}' holds an earlier output of mmhal {command}; choose another --out or pass "
                        "--overwrite to replace it")
    return Output(out, command, overwrite)


_SIBLING = re.compile(r"\.(?P<name>.+)\.mmhal-(?P<kind>new|old)-(?P<pid>\d+)")


def sibling(out: Path, kind: str, pid: Optional[int] = None) -> Path:
    """The hidden sibling of ``out`` that a replacement is built in (``new``) or the replaced one set aside in
    (``old``): ``.NAME.mmhal-new-PID``."""
    return out.parent / f".{out.name}.mmhal-{kind}-{os.getpid() if pid is None else pid}"


def stale_siblings(out: Path, kinds: tuple = ("new", "old")) -> list[Path]:
    """The siblings of ``out`` (``sibling``) of ``kinds`` whose process is gone, or that carry this process's id
    before it made any (a process of the same id before)."""
    if not out.parent.is_dir():
        return []
    found = []
    for p in out.parent.iterdir():
        m = _SIBLING.fullmatch(p.name)
        if m is None or m["name"] != out.name or m["kind"] not in kinds or p.is_symlink() or not p.is_dir():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or not pid_alive(pid):
            found.append(p)
    return found


def remove_claimed(folder: Path, command: str) -> list[Path]:
    """Delete what the marker of the folder output ``folder`` (of ``command``) claims, the marker last, and the
    folders left empty; return what remains (relative paths): nothing but files mmhal did not write."""
    marker = output_marker(folder, command)
    files = files_below(folder)
    claimed = [rel for rel in files if marker is not None and folder_claims(folder, command, marker, rel)]
    for rel in sorted(claimed, key=lambda r: r.name in FOLDER_MARKERS.values()):
        (folder / rel).unlink(missing_ok=True)
    remove_empty(folder)
    return [rel for rel in files if rel not in claimed]


def discard_new(folder: Path) -> None:
    """Delete the sibling ``folder`` that this process made for a new output (``sibling(out, "new")``), with
    everything in it: this process wrote all of it. The only ``shutil.rmtree`` of mmhal."""
    if _SIBLING.fullmatch(folder.name) is None or not folder.name.endswith(f".mmhal-new-{os.getpid()}"):
        raise ValueError(f"'{folder}' is not a folder this process made for a new output")
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def _write_marker(folder: Path, command: str, names: Iterable[str], info: dict, digests: bool) -> None:
    names = sorted(names)
    marker = {"mmhal": __version__, "command": command, "created": _now(), **info, "files": names}
    if digests:
        marker["sha256"] = {n: file_sha256(folder / n) for n in names}
    atomic_write_json(folder / FOLDER_MARKERS[command], marker)


def write_folder(output: Output, fill: Callable[[Path], None], names: Iterable[str], info: dict,
                 log: Optional[Callable[[str], None]] = None) -> None:
    """Make the folder output ``output.path`` by ``fill(folder)`` in the hidden sibling ``.NAME.mmhal-new-PID``,
    which carries the marker from the start (listing ``names``, what ``fill`` is to write, so that a killed
    process's sibling can be removed) and, once ``fill`` returns, the list of every file written and its
    SHA-256; then rename it into place. An earlier output (or an empty folder) there, checked again just
    before, is set aside as ``.NAME.mmhal-old-PID`` and what its marker claims is deleted. On any failure the
    sibling is deleted and ``output.path`` is as it was (a write that fails, e.g. a full disk, is a UserError)."""
    out, command = output.path, output.command
    log = log or (lambda s: print(s, file=sys.stderr))
    for stale in stale_siblings(out):
        if not remove_claimed(stale, command):
            log(f"note: removed '{stale}', left by an mmhal {command} that was killed")
    new, old = sibling(out, "new"), sibling(out, "old")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        new.mkdir()
    except OSError as exc:
        raise UserError(f"the folder '{_short(out.parent)}' cannot be created or written "
                        f"({exc.strerror or type(exc).__name__})") from None
    try:
        _write_marker(new, command, names, info, digests=False)
        fill(new)
        written = [rel.as_posix() for rel in files_below(new) if rel.as_posix() != FOLDER_MARKERS[command]]
        _write_marker(new, command, written, info, digests=True)
        plan_output(out, command, output.overwrite)  # again: a file may have been put there meanwhile
        if out.exists():
            os.rename(out, old)
            try:
                os.rename(new, out)
            except BaseException:
                os.rename(old, out)
                raise
        else:
            os.rename(new, out)
    except BaseException as exc:
        discard_new(new)
        if isinstance(exc, OSError):
            raise UserError(f"the {NOUNS[command]} '{_short(out)}' cannot be written "
                            f"({exc.strerror or type(exc).__name__}); nothing was written") from None
        raise
    if old.exists():
        left = remove_claimed(old, command)
        if left:  # a file put into the old folder after the check: it stays, set aside
            log(f"note: '{old}' keeps {len(left)} file(s) that mmhal did not write ({left[0]}); nothing was deleted")


def write_file(output: Output, text: str) -> None:
    """Write the file output ``output.path`` (predict's CSV), checked again just before, through a temporary
    file, then its sidecar recording its SHA-256 (so that a later ``--overwrite`` recognises it)."""
    out = output.path
    plan_output(out, output.command, output.overwrite)
    try:
        atomic_write_text(out, text)
        atomic_write_json(sidecar(out), {"mmhal": __version__, "command": output.command, "created": _now(),
                                         "file": out.name, "sha256": file_sha256(out)})
    except OSError as exc:
        raise UserError(f"the {NOUNS[output.command]} '{_short(out)}' cannot be written "
                        f"({exc.strerror or type(exc).__name__})") from None

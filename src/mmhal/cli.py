"""The ``mmhal`` command.

    mmhal run                                   # HAPT: teacher acc+gyro, student gyro; unimodal, kd, rkd, mmh x 5 seeds
    mmhal run --student acc
    mmhal run --data my.npz --teacher rgb,depth --student rgb --epochs 20 --seeds 5
    mmhal run --data my_images.csv --student rgb     # a manifest of image files (decoded on demand)
    mmhal run --config recipes/casia-surf.yaml --root /data/CASIA-SURF   # face anti-spoofing, RGB student
    mmhal run --config recipes/hapt.yaml distill.rad_weighting=confidence train.lr=1e-3
    mmhal run --device cuda --precision bf16 --channels-last --compile
    mmhal run --resume --out runs/my-run                # continue an interrupted run where it stopped
    mmhal tune --trials 8 --out runs/tuned          # every method's hyperparameters, same budget, validation only
    mmhal run --config runs/tuned/tuned.yaml --seeds 10
    mmhal list                                  # datasets and methods known by name
    mmhal predict runs/my-run --data new.npz --out preds.csv   # apply the recommended students to new data
    mmhal export runs/my-run --format onnx      # a deployable student (+ model card, checked against PyTorch)
    mmhal report runs/my-run                    # runs/my-run/report/index.html: figures, which method and why

    torchrun --nproc-per-node=4 -m mmhal run ...            # data-parallel (DDP) on one node, 4 processes
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=JOB \
        -m mmhal run ...                                    # two nodes (the same command on each); docs/scaling.md
"""
from __future__ import annotations

import argparse
import sys

from .api import build_config, check_settings_given_once  # noqa: F401  (shared with the API; tests use build_config)
from .errors import UserError, machine_limit


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


#: what an option takes, for the sentence that refuses it given empty (``--out ''``, ``--methods ''``), which would
#: otherwise read as not given at all and quietly mean the default
EMPTY_HINTS = {"out": "a path", "data": "a file's path or a dataset's name", "config": "a YAML recipe's path",
               "root": "a folder", "data_root": "a folder", "run": "a run folder",
               "methods": "method names, comma-separated (e.g. unimodal,kd,mmh)",
               "student": "the student's modalities, comma-separated (e.g. rgb)",
               "teacher": "the teacher's modalities, comma-separated (e.g. rgb,depth)", "method": "a method's name",
               "device": "cpu, cuda, cuda:N or auto", "precision": "32, bf16 or 16"}


class _StoreOnce(argparse._StoreAction):
    """An option that takes a value: given twice (``--config a.yaml --config b.yaml``), a UserError, where
    argparse alone would keep the last one without a word; so is an empty value (``--out ''``), which would read
    as the option not given."""

    def __call__(self, parser, namespace, values, option_string=None):
        empty = values == [] and self.nargs not in ("*", "?")  # an empty list of overrides is no overrides
        if empty or (isinstance(values, str) and not values.strip()):  # --out '', --methods ''
            name = option_string or self.metavar or self.dest
            what = EMPTY_HINTS.get(self.dest, "a value")
            raise UserError(f"{name} is given an empty value; give {what}"
                            + (f", or leave {name} out for its default" if option_string else ""))
        given = namespace.__dict__.setdefault("_given_options", {})
        if self.dest in given:
            shown = lambda v: ",".join(v) if isinstance(v, list) else str(v)  # noqa: E731
            raise UserError(f"{option_string} is given twice ('{shown(given[self.dest])}', then '{shown(values)}'); "
                            "give it once")
        given[self.dest] = values
        setattr(namespace, self.dest, values)


_ARGPARSE_TYPES = {"int": "a whole number", "float": "a number"}


def usage_sentence(message: str, prog: str) -> str:
    """One sentence for a mistake argparse found on the command line (``message``, argparse's own text) of the
    command ``prog`` (``mmhal run``), pointing at its ``--help``: its usage block is not printed."""
    import re

    m = re.fullmatch(r"argument (\S+): invalid (\w+) value: (.*)", message)
    if m and m[2] in _ARGPARSE_TYPES:
        message = f"{m[1]} takes {_ARGPARSE_TYPES[m[2]]}, not {m[3]}"
    m = re.fullmatch(r"argument (\S+): invalid choice: (.*) \(choose from (.*)\)", message)
    if m:
        choices = ", ".join(c.strip().strip("'") for c in m[3].split(","))
        message = (f"{m[2]} is not an mmhal command (the commands: {choices})" if m[1] == "command"
                   else f"{m[1]} takes one of {choices}, not {m[2]}")
    m = re.fullmatch(r"argument (\S+): expected one argument", message)
    if m:
        message = f"{m[1]} needs a value"
    if message == "the following arguments are required: command":
        message = "give a command (run, tune, list, predict, export or report)"
    return f"{message}; see {prog} --help"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are a UserError in one sentence (``usage_sentence``), printed by ``main``
    as every other mistake is (``mmhal: error: ...``, exit code 2), instead of argparse's usage block and its
    ``mmhal run: error:`` line. Its subcommands' parsers are of this class too (``add_subparsers``)."""

    def error(self, message: str):
        raise UserError(usage_sentence(message, self.prog))


def _parser(sub, name: str, **kw) -> argparse.ArgumentParser:
    """A subcommand whose value options may be given once (``_StoreOnce``)."""
    parser = sub.add_parser(name, **kw)
    parser.register("action", None, _StoreOnce)
    parser.register("action", "store", _StoreOnce)
    return parser


def get_parser() -> argparse.ArgumentParser:
    from .config import default_cache_dir

    class Version(argparse.Action):  # torch is imported only when asked (that takes a second or two)
        def __call__(self, parser, namespace, values, option_string=None):
            import platform

            import torch

            from . import __version__

            print(f"mmhal {__version__} (torch {torch.__version__}, Python {platform.python_version()})")
            parser.exit()

    p = _Parser(prog="mmhal", description="Privileged modality learning via multimodal hallucination.")
    p.add_argument("--version", nargs=0, action=Version, help="print the versions of mmhal and torch, then exit")
    sub = p.add_subparsers(dest="command", required=True)
    where = (f"Trained teachers, converted datasets and video frame counts are cached in {default_cache_dir()} (the "
             "folder $MMHAL_CACHE names, else ~/.cache/mmhal; config key cache_dir, for teachers). Relative paths, in a --config recipe as on the "
             "command line, are relative to the current folder; a run's config.yaml holds them as absolute paths.")
    r = _parser(sub, "run", help="train the teacher, then every method for every seed; print and save results",
                       epilog=where)
    _common_arguments(r)
    r.add_argument("--overwrite", action="store_true", help="replace the run in --out once the new one is complete (the old one stays whole until then)")
    r.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out: finished students are kept, an unfinished one goes on "
                        "from its last epoch (its saved config.yaml is the base; other settings must match it)")
    r.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where the students train: local (this machine's worker processes, the default) or ray (each "
                        "a task on a Ray cluster whose nodes share the run folder's file system; pip install "
                        "\"mmhal[ray]\"): executor=...")
    r.add_argument("--ray-address", default=None,
                   help="the Ray cluster of --executor ray (default: Ray's RAY_ADDRESS, else a Ray instance started "
                        "on this machine): ray_address=...")
    t = _parser(sub, "tune", help="tune every method's own hyperparameters with the same budget, on validation only",
                       epilog=where)
    _common_arguments(t)
    t.add_argument("--trials", type=int, default=8, help="configurations tried per method (trial 0 = current settings)")
    t.add_argument("--tune-seeds", type=int, default=2,
                   help="students per trial (seeds 1000, 1001, ...: never the reporting seeds; default 2)")
    t.add_argument("--sampler", default="random", help="how Optuna draws the trials: random (default) or tpe")
    t.add_argument("--pruner", default="none",
                   help="none (default) or median: stop a trial whose validation curve is below the median of the "
                        "finished trials (faster; benchmarks/SCIENCE.md §11)")
    t.add_argument("--storage", help="an Optuna database URL that several mmhal tune processes share, e.g. "
                                     "postgresql://user@host/db (default: study.db, SQLite, in the tune folder)")
    t.add_argument("--study", default="mmhal", help="the study name in --storage (default: mmhal; one study per method)")
    sub.add_parser("list", help="list the datasets, methods and ensembles known by name")
    pr = _parser(sub, "predict", help="apply a run's trained students to new data; write one CSV row per sample")
    pr.add_argument("run", metavar="RUN", help="a finished run folder (what `mmhal run --out` wrote)")
    pr.add_argument("--data", required=True, help="the new data: a .npz file, a manifest .csv, or a dataset name "
                                                  "(it needs only the student's modalities)")
    pr.add_argument("--root", help="the dataset's folder, for datasets read from files (casia-surf, cefa, nw-ucla, "
                    "ntu60, ucf101, hmdb51)")
    pr.add_argument("--method", help="which method's students (default: the run's recommendation)")
    pr.add_argument("--seed", type=int, help="one seed's student (default: every seed's, probabilities averaged)")
    pr.add_argument("--out", help="the CSV to write (default: RUN/predictions/<method>-<data>.csv)")
    pr.add_argument("--overwrite", action="store_true", help="replace an earlier mmhal predict output in --out")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    pr.add_argument("--batch-size", type=int, default=1024, help="samples per forward pass (default: 1024)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    ex = _parser(sub, "export", help="export one trained student for deployment (ONNX or TorchScript) with a model card")
    ex.add_argument("run", metavar="RUN", help="a finished run folder (what `mmhal run --out` wrote)")
    ex.add_argument("--method", help="which method's student (default: the run's recommendation); "
                                     "'teacher' exports the teacher")
    ex.add_argument("--seed", type=int, help="which seed's student (default: the one with the best validation accuracy)")
    ex.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="onnx (default) or torchscript")
    ex.add_argument("--out", help="the folder to write (default: RUN/export/<method>-seed<seed>-<format>)")
    ex.add_argument("--overwrite", action="store_true", help="replace an earlier mmhal export in --out")
    rp = _parser(sub, "report", help="an HTML page and PNG figures of a finished run: which method to deploy, and why")
    rp.add_argument("run", metavar="RUN", help="a finished run folder (what `mmhal run --out` wrote)")
    rp.add_argument("--out", help="the folder to write (default: RUN/report)")
    rp.add_argument("--data-root", help="where the run's data now lives, when it has moved (data.path)")
    rp.add_argument("--no-regions", action="store_true",
                    help="skip the figures that need the data (per-region teacher/student agreement)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _common_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("--config", help="YAML recipe (a resolved config.yaml of an earlier run repeats that run)")
    r.add_argument("--data", help="a dataset name (hapt, casia-surf, cefa), a path to a .npz file in mmhal's format, "
                                  "or a path to a manifest .csv of image files")
    r.add_argument("--root", help="the dataset's folder, for datasets read from files (casia-surf, cefa, nw-ucla, ntu60, ucf101, "
                   "hmdb51): data.path")
    r.add_argument("--teacher", type=_csv, help="teacher modalities, comma-separated (default: every modality)")
    r.add_argument("--student", type=_csv, help="student (available) modalities, comma-separated (default: gyro)")
    r.add_argument("--methods", type=_csv, help="comma-separated, e.g. unimodal,kd,mmh,mmh-ensemble, or all (every method and ensemble)")
    r.add_argument("--seeds", type=int, help="number of seeds: runs seeds 0..N-1 (tune: the seeds its recipe reports)")
    r.add_argument("--epochs", type=int, help="training epochs for the teacher and every student")
    r.add_argument("--out", help="output folder (default: runs/<dataset>-<student>-<date-time>)")
    r.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: cpu)")
    r.add_argument("--precision", help="32 (default), bf16 (CPU or CUDA) or 16 (CUDA, with loss scaling): train.precision")
    r.add_argument("--channels-last", action="store_true", help="NHWC (images) / NDHWC (clips) layout for convolutional models: train.channels_last=true")
    r.add_argument("--compile", action="store_true", help="torch.compile the networks' forward: train.compile=true")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. distill.rad_lambda=0.5")


#: the exit code of a run or tuning that finished and wrote its results, but whose every student diverged
#: (1: a worker failed; 2: a mistake in the input, or the teacher diverged; 130: interrupted)
NOTHING_USABLE = 3


def _api_options(args) -> dict:
    """The keyword arguments of ``mmhal.api.run``/``tune`` from a ``run``/``tune`` command's parsed options."""
    check_settings_given_once(args)  # before anything else, named by the command's flags
    if args.seeds is not None and args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    return dict(data=args.data, student=args.student, teacher=args.teacher, methods=args.methods, seeds=args.seeds,
                epochs=args.epochs, out=args.out, config=args.config, overrides=list(args.overrides or []),
                root=args.root, device=args.device, precision=args.precision, channels_last=args.channels_last,
                compile=args.compile, progress=not args.no_progress)


def cmd_run(args) -> int:
    from . import api

    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR, the run folder of the interrupted run")
    if args.ray_address and args.executor != "ray":
        raise UserError("--ray-address is the Ray cluster of --executor ray; add --executor ray")
    res = api.run(**_api_options(args), resume=args.resume, overwrite=args.overwrite, executor=args.executor,
                  ray_address=args.ray_address)
    if res.main:  # under torchrun, rank 0 alone prints
        for line in res.lines:
            print(line)
    if res.failure:
        if res.main:
            print(f"mmhal: error: {res.failure}", file=sys.stderr)
        return NOTHING_USABLE
    return 0


def cmd_tune(args) -> int:
    from . import api

    if args.tune_seeds < 1:
        raise UserError("--tune-seeds must be at least 1")
    res = api.tune(**_api_options(args), trials=args.trials, tune_seeds=args.tune_seeds, sampler=args.sampler,
                   pruner=args.pruner, storage=args.storage, study=args.study)
    print(res.text)
    print(f"trials: {res.trials_csv}; recipe: {res.recipe} ({res.summary['seconds']:.0f} s)")
    if res.failure:  # no "next:" for a recipe that diverges
        print(f"mmhal: error: {res.failure}", file=sys.stderr)
        return NOTHING_USABLE
    print(f"next: mmhal run --config {res.recipe}")
    return 0


def cmd_list(args) -> int:
    from .data import actions, casia_surf, cefa, hapt, manifest, npz  # noqa: F401
    from .data.base import DATASETS, FOLDER_DATASETS, FORMAT_NAMES
    from .distill import ENSEMBLES, METHODS

    # every name shown here is one --data accepts as shown; a dataset read from files also needs --root DIR
    print("datasets:  " + ", ".join(n + (" (with --root DIR, its folder)" if n in FOLDER_DATASETS else "")
                                    for n in DATASETS.names() if n not in FORMAT_NAMES)
          + "; or --data PATH: a .npz file or a manifest .csv")
    print("methods:   " + ", ".join(METHODS.names()))
    print("ensembles: " + ", ".join(f"{k} = {'+'.join(v)}" for k, v in ENSEMBLES.items()))
    return 0


def cmd_predict(args) -> int:
    from . import api

    res = api.predict(args.run, args.data, method=args.method, seed=args.seed, out=args.out, root=args.root,
                      batch_size=args.batch_size, device=args.device, overwrite=args.overwrite,
                      progress=not args.no_progress)
    for stream, line in res.lines:
        print(line, file=sys.stderr if stream == "stderr" else sys.stdout)
    return 0


def cmd_export(args) -> int:
    from . import api
    from .engine.export import TOLERANCE

    res = api.export(args.run, method=args.method, seed=args.seed, format=args.format, out=args.out,
                     overwrite=args.overwrite)
    chk = res.card["check"]
    print(f"exported: {res.model} (method {res.method}" + ("" if res.seed is None else f", seed {res.seed}") + ")")
    print(f"check: {chk['runtime']} gives PyTorch's logits on {chk['samples']} random inputs (batches of "
          f"{' and '.join(map(str, chk['batch_sizes']))}): max abs diff {chk['max_abs_diff']:.3g} <= {TOLERANCE:g}")
    print(f"model card: {res.folder / 'model_card.md'}")
    return 0


def cmd_report(args) -> int:
    from . import api

    res = api.report(args.run, out=args.out, data_root=args.data_root, regions=not args.no_regions,
                     progress=not args.no_progress)
    for n in res.notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"report: {res.page} ({len(res.figures)} figures, {res.seconds:.1f} s)")
    return 0


COMMANDS = {"run": cmd_run, "tune": cmd_tune, "list": cmd_list, "predict": cmd_predict, "export": cmd_export,
            "report": cmd_report}


# The resource tracker of multiprocessing outlives a run stopped by Ctrl-C by a moment, cleans up the semaphores
# of the killed workers' queues, and warns about each on the user's terminal after mmhal's last line. It starts
# with this process's warning options, so its own UserWarnings are ignored (it still cleans everything up).
_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


def _printable_everywhere() -> None:
    """Under a locale whose encoding is not UTF-8 (``LANG=C`` without Python's UTF-8 coercion, a Latin-1
    terminal), a character the terminal cannot show (``±``, a class name's accent) is printed escaped
    (``\\xb1``) instead of ending the command with a UnicodeEncodeError after all the work. Files are always
    written as UTF-8 (``utils.atomic_write_text``)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot be reconfigured (closed, or not a text file)
                pass


def _more_open_files() -> None:
    """Raise this process's soft limit of open files to its hard limit (at most 65536): worker processes and
    their DataLoaders pass tensors as file descriptors, and a default soft limit of 1024 (or a lower one set by a
    cluster) can run out where the hard limit would not. A limit that cannot be raised is left as it is; what it
    then stops is reported in one sentence (``errors.machine_limit``)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def stray_sentence(stray: list[str], args) -> str:
    """One sentence for what is left on the command line of ``args.command`` that is neither an option nor a
    ``key=value`` override (``train.lr`` without a value, ``--epoch``, a second run folder)."""
    prog = f"mmhal {args.command}"
    first = stray[0]
    if first.startswith("-"):
        what = f"{prog} has no option {first.partition('=')[0]}"
    elif hasattr(args, "overrides") and first.endswith((".npz", ".csv", ".yaml", ".yml")):
        flag = "--config" if first.endswith(("yaml", "yml")) else "--data"
        what = f"'{first}' is neither an option nor a setting; a file is given with its option ({flag} {first})"
    elif hasattr(args, "overrides"):
        what = (f"'{first}' is neither an option nor a setting: an override is written key=value (e.g. "
                f"{first if '.' in first else 'train.lr'}=VALUE)")
    else:
        what = f"{prog} takes no argument '{first}'"
    more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
    return usage_sentence(what + more, prog)


def main(argv=None) -> int:
    _printable_everywhere()
    _more_open_files()
    if _TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_QUIET)
    parser = get_parser()
    try:
        # key=value overrides may stand anywhere among the options (argparse alone would take only the first run)
        args, extra = parser.parse_known_args(argv)
    except UserError as exc:  # an option given twice (_StoreOnce), or a mistake argparse found (_Parser.error)
        print(f"mmhal: error: {exc}", file=sys.stderr)
        return 2
    from .config import join_overrides

    if extra:
        extra = join_overrides(extra)  # an unquoted `distill.rad_levels=[2, 1]` after an option: one override again
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if getattr(args, "overrides", None):  # what the first run of words gave the overrides: `train.lr` alone too
        stray = [o for o in join_overrides(list(args.overrides)) if "=" not in o] + stray
    stray.sort(key=lambda e: not e.startswith("-"))  # an unknown option first: its value is the next stray word
    if stray:
        print(f"mmhal: error: {stray_sentence(stray, args)}", file=sys.stderr)
        return 2
    if extra:
        args.overrides = [*args.overrides, *extra]
    restore = _stop_on_signals()
    interrupted, stopped = False, 0
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"mmhal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # engine.run.RunInterrupted says what was kept and how to go on
        import signal

        signum = _STOPPED_BY["signum"] or signal.SIGINT
        interrupted = 128 + signum
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"mmhal: {how}; {exc}" if str(exc) else f"mmhal: {how}", file=sys.stderr)
        return interrupted
    except Exception as exc:
        engine = sys.modules.get("mmhal.engine.jobs")
        if engine is not None and isinstance(exc, engine.JobFailed):  # a worker's error, with its traceback, once
            print(f"mmhal: error: {exc}", file=sys.stderr)
            return 1
        why = machine_limit(exc)  # a full disk, too few open files, memory, the locale: one sentence, not a traceback
        if why is None:
            raise
        print(f"mmhal: error: {why}", file=sys.stderr)
        stopped = 2  # what was left half-open (a DataLoader whose workers did not start) is not torn down noisily
        return 2
    finally:
        if interrupted and argv is None:  # the command line's own process: everything it started is stopped
            _exit_now(interrupted)
        if stopped and argv is None:
            _exit_now(stopped)
        if restore is not None:
            restore()


def _exit_now(code: int) -> None:
    """End the command's process after Ctrl-C (or SIGTERM, SIGHUP): its exit handlers run (they stop any process left), output is
    flushed, and the interpreter's teardown, which unloads torch's libraries for seconds, is skipped."""
    import atexit
    import os

    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


#: the signal that stopped the command (SIGINT, SIGTERM or SIGHUP), set by the handlers of _stop_on_signals
_STOPPED_BY: dict = {"signum": None}


def _stop_on_signals():
    """Make the first Ctrl-C (SIGINT), SIGTERM or SIGHUP raise KeyboardInterrupt, so that the command stops and
    cleans up as for Ctrl-C (a cluster scheduler sends SIGTERM before it kills a job; a closed terminal sends
    SIGHUP), and a second one, while it does, end the process at once (exit code 128 + the signal's number).
    A signal this process was started with ignored (SIGHUP under nohup) stays ignored. Returns what puts the
    previous handlers back (None in a thread other than the main one)."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.getsignal(getattr(signal, n)) for n in names}
    handled = [getattr(signal, n) for n in names if previous[n] is not signal.SIG_IGN]
    _STOPPED_BY["signum"] = None

    def second(signum, frame):
        os.write(2, b"\nmmhal: stopped again; ended at once\n")
        os._exit(128 + signum)

    def first(signum, frame):
        _STOPPED_BY["signum"] = signum
        for sig in handled:
            signal.signal(sig, second)
        raise KeyboardInterrupt

    for sig in handled:
        signal.signal(sig, first)

    def restore():
        for n in names:
            before = previous[n]
            signal.signal(getattr(signal, n), before if before is not None else
                          (signal.default_int_handler if n == "SIGINT" else signal.SIG_DFL))
    return restore


if __name__ == "__main__":
    sys.exit(main())

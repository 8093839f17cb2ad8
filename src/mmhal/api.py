"""mmhal's public Python API: every command of the command line as one function, with the command's options as
keyword arguments and what it made as a typed value. The command line (``mmhal.cli``) is a thin layer on it:
it parses the words, calls one of these functions, and prints what the value says.

    import mmhal

    res = mmhal.run(data="hapt", student=["gyro"], seeds=3, out="runs/demo")
    res.table                    # the table the command prints
    res.recommended              # the method to deploy ("unimodal" when no distilled one is better)
    res.results["rkd"]["vs_unimodal"]["ci95"]
    mmhal.report(res.folder)     # runs/demo/report/index.html
    mmhal.predict(res.folder, data="new.npz").path
    mmhal.export(res.folder, format="onnx").folder

A mistake in the input raises ``mmhal.UserError`` (one sentence, as the command prints it); Ctrl-C raises
``KeyboardInterrupt`` (a ``RunInterrupted`` whose message says what was kept and how to go on). Settings beyond
the keyword arguments go in ``overrides``: ``["train.lr=0.003", "distill.rad_lambda=0.5"]`` or a mapping
``{"train.lr": 0.003}``; a recipe in ``config``. Nothing here is imported before it is needed: ``import mmhal``
stays light.

This module owns the path from options to a configuration (``build_config``, which the command line shares) and
the result types; the work itself is the engine's (``mmhal.engine``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .errors import UserError

PathLike = Union[str, "os.PathLike[str]"]
Overrides = Union[Sequence[str], Mapping[str, Any], None]

# The key each option sets (``build_config``): an override of the same key beside it is refused, not silently lost.
FLAG_KEYS = {"data": "data.name", "root": "data.path", "teacher": "teacher", "student": "student", "methods": "methods",
             "seeds": "seeds", "epochs": "train.epochs", "out": "out", "device": "device",
             "precision": "train.precision", "channels_last": "train.channels_last", "compile": "train.compile",
             "no_progress": "progress"}


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RunResult:
    """What ``run`` made: the run ``folder``, its ``report`` (the whole of results.json), and the lines the
    command prints at the end (``lines``: the table, warnings, where the results are, the recommendation).
    ``failure`` is one sentence when every student diverged (nothing to deploy; the command exits with 3)."""

    folder: Path
    report: dict
    lines: list[str]
    failure: Optional[str] = None
    main: bool = True  # whether this process reports (rank 0 of a torchrun job; always True otherwise)

    @property
    def results(self) -> dict:
        """method -> its figures (accuracy, val_accuracy, vs_unimodal, ...), as in results.json."""
        return self.report["results"]

    @property
    def recommendation(self) -> Optional[dict]:
        return self.report.get("recommendation")

    @property
    def recommended(self) -> Optional[str]:
        """The method the run recommends deploying ("unimodal" when no distilled one is better; None when no
        student finished)."""
        rec = self.recommendation
        return None if rec is None else rec.get("method")

    @property
    def table(self) -> str:
        return self.lines[0]

    @property
    def results_json(self) -> Path:
        return self.folder / "results.json"

    @property
    def seconds(self) -> float:
        return float(self.report.get("seconds", 0.0))


@dataclass(frozen=True)
class TuneResult:
    """What ``tune`` made: the tune ``folder``, its ``recipe`` (tuned.yaml, for ``run(config=...)``), its
    ``summary`` (tune.json's content) and the table the command prints (``text``). ``failure``: one sentence when
    every trial of every method diverged (nothing was tuned; the command exits with 3)."""

    folder: Path
    summary: dict
    text: str
    failure: Optional[str] = None

    @property
    def recipe(self) -> Path:
        return self.folder / "tuned.yaml"

    @property
    def trials_csv(self) -> Path:
        return self.folder / "trials.csv"

    @property
    def best(self) -> dict:
        """method -> its best trial (``trial``, ``settings``, ``mean_val_accuracy``), or None where every trial
        failed."""
        return dict(self.summary["best"])


@dataclass(frozen=True)
class PredictResult:
    """What ``predict`` wrote: the CSV (``path``), how many samples, which networks, the accuracy on the input's
    labels (None without labels), the presentation-attack threshold used (``threshold``, None for other data),
    notes for the user."""

    path: Path
    method: str
    n: int
    networks: str
    accuracy: Optional[float]
    threshold: Optional[float]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lines: list[tuple[str, str]] = field(default_factory=list)  # (stream, line): what the command prints
    # {split: (accuracy, samples)} where the input has splits (a dataset by name, a .npz with 'split'): only 'test'
    # is unseen by the run
    split_accuracy: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote: the ``folder``, the exported ``model`` file in it, the model ``card`` (also
    model_card.json and model_card.md there; ``card["check"]`` says how its outputs were checked against
    PyTorch's)."""

    folder: Path
    model: Path
    card: dict

    @property
    def method(self) -> str:
        return self.card["method"]

    @property
    def seed(self) -> Optional[int]:
        return self.card.get("seed")


@dataclass(frozen=True)
class ReportResult:
    """What ``report`` wrote: the page (``index.html``), the figures' names, notes on what was left out."""

    page: Path
    figures: list[str]
    notes: list[str]
    seconds: float

    @property
    def folder(self) -> Path:
        return self.page.parent


# ----------------------------------------------------------------------------------------------- options


def _overrides(overrides: Overrides) -> list[str]:
    """``key=value`` strings from a list of them or a mapping (its values written as YAML flow values)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise UserError(f"overrides must be a list of key=value strings or a mapping, not the string '{overrides}'")
    return [str(o) for o in overrides]


def _overlaps(a: str, b: str) -> bool:
    """Whether dotted keys ``a`` and ``b`` set the same setting (equal, or one a section holding the other)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _flag(args, dest: str) -> str:
    """How the user gave the option ``dest``: the command's flag (``--epochs``), or the API's keyword."""
    named = getattr(args, "flag_name", None)
    return named(dest) if named is not None else "--" + dest.replace("_", "-")


def check_settings_given_once(args) -> None:
    """A UserError when a ``key=value`` override sets a setting twice (``train.lr=1 train.lr=2``, or
    ``train={lr: 1}`` beside ``train.lr=2``) or sets what an option beside it sets (``--epochs 5 train.epochs=3``):
    one of the two would be dropped without a word."""
    from .config import join_overrides

    given = [o.strip() for o in join_overrides(list(getattr(args, "overrides", None) or [])) if "=" in o]
    keys = [o.partition("=")[0].strip() for o in given]
    # a section given a plain value (train=5) sets nothing: the configuration says so (load_config), not this check
    plain = {i for i, o in enumerate(given) if not o.partition("=")[2].strip().startswith("{")}
    for i, a in enumerate(keys):
        for j, b in enumerate(keys[:i]):
            if _overlaps(a, b) and not (a != b and (j if len(b) < len(a) else i) in plain):
                raise UserError(f"the setting {max(a, b, key=len)} is given twice ({given[j]} and {given[i]}); give it once")
    for dest, key in FLAG_KEYS.items():
        if getattr(args, dest, None) in (None, False, []):
            continue
        for i, (a, item) in enumerate(zip(keys, given)):
            if _overlaps(a, key) and not (len(a) < len(key) and i in plain):
                raise UserError(f"{_flag(args, dest)} and the override {item} both set {max(a, key, key=len)}; give it once")


def build_config(args, base=None, kind: str = "run"):
    """The configuration of a ``run`` or ``tune``: recipe (``base`` or ``args.config``), ``key=value`` overrides,
    then the options; ``out`` defaults to a new, timestamped folder under runs/.

    A run is repeated from its saved configuration (``config=RUN/config.yaml``): the ``out`` of a run's own
    config.yaml, or of a recipe that names a folder holding results, is not reused unless ``out``, ``out=...``
    or ``overwrite`` says so; the new run gets a new folder, and a note on stderr says which."""
    from .config import join_overrides, load_config, validate

    check_settings_given_once(args)
    recipe = base or args.config
    cfg = load_config(recipe, args.overrides)
    kept = None  # the run folder that this command leaves alone
    if recipe and cfg.out and not args.out and not getattr(args, "overwrite", False):
        from .engine.run import MARKER

        out_typed = any(o.partition("=")[0].strip() == "out" for o in join_overrides(list(args.overrides or [])))
        home = Path(recipe).parent  # a run's own config.yaml lies in a folder with its marker, results or jobs
        of_a_run = Path(recipe).name == "config.yaml" and any((home / n).exists()
                                                               for n in (MARKER, "results.json", "jobs"))
        if not out_typed and (of_a_run or (Path(cfg.out) / "results.json").is_file()):
            kept, cfg.out = home if of_a_run else Path(cfg.out), ""
    if args.data:
        cfg.data.name = str(args.data)
    if args.root:
        cfg.data.path = str(args.root)
    if args.teacher:
        cfg.teacher = list(args.teacher)
    if args.student:
        cfg.student = list(args.student)
    if args.methods:
        cfg.methods = list(args.methods)
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"{_flag(args, 'seeds')} must be at least 1")
        cfg.seeds = list(range(args.seeds))
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    if args.device:
        cfg.device = args.device
    if args.no_progress:
        cfg.progress = False
    if args.precision is not None:
        cfg.train.precision = args.precision
    if args.channels_last:
        cfg.train.channels_last = True
    if args.compile:
        cfg.train.compile = True
    if args.out:
        cfg.out = str(args.out)
    elif not cfg.out:
        stem = Path(cfg.data.name).stem  # a dataset's name, or the file name of a path (never a folder below runs/)
        prefix = "tune-" if kind == "tune" else ""
        cfg.out = str(Path("runs") / f"{prefix}{stem}-{'+'.join(cfg.student)}-{time.strftime('%Y%m%d-%H%M%S')}")
        from .engine.outputs import SIBLING_EXTRA, check_path

        # a name too long is the data file's, not an --out the user typed: said so (the run checks the path again)
        check_path(Path(cfg.out), True, SIBLING_EXTRA, default="made from the data's name and the student's modalities")
    validate(cfg)
    if kept is not None and os.environ.get("RANK", "0") == "0":  # under torchrun: once
        print(f"mmhal: note: the run in '{kept}' is left as it is; this {kind} writes to '{cfg.out}' "
              f"({_flag(args, 'out')} chooses the folder)", file=sys.stderr)
    return cfg


class _Options:
    """The options of a ``run`` or ``tune`` given as keyword arguments, in the shape ``build_config`` reads (the
    command line's parsed arguments have the same names). Errors name the keyword, not the command's flag."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @staticmethod
    def flag_name(dest: str) -> str:
        return {"no_progress": "progress=False"}.get(dest, dest)


def _names(value, what: str) -> Optional[list[str]]:
    """A list of names from a list or a comma-separated string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [str(v) for v in value]
    except TypeError:
        raise UserError(f"{what} must be a list of names or a comma-separated string, got {value!r}") from None


def _options(data, config, student, teacher, methods, seeds, epochs, out, root, device, precision, channels_last,
             compile, progress, overrides, **extra) -> _Options:
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int)):
        raise UserError(f"seeds is a number of seeds (runs seeds 0..seeds-1), got {seeds!r}; a list of seed numbers "
                        "goes in overrides: {'seeds': [3, 4]}")
    return _Options(data=None if data is None else str(data), config=None if config is None else str(config),
                    student=_names(student, "student"), teacher=_names(teacher, "teacher"),
                    methods=_names(methods, "methods"), seeds=seeds, epochs=epochs,
                    out=None if out is None else str(out), root=None if root is None else str(root), device=device,
                    precision=precision, channels_last=bool(channels_last), compile=bool(compile),
                    no_progress=not progress, overrides=_overrides(overrides), **extra)


def _stderr_log(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


# ----------------------------------------------------------------------------------------------- commands


def run(data: Optional[PathLike] = None, *, student: Union[Sequence[str], str, None] = None,
        teacher: Union[Sequence[str], str, None] = None, methods: Union[Sequence[str], str, None] = None,
        seeds: Optional[int] = None, epochs: Optional[int] = None, out: Optional[PathLike] = None,
        config: Optional[PathLike] = None, overrides: Overrides = None, root: Optional[PathLike] = None,
        device: Optional[str] = None, precision: Optional[str] = None, channels_last: bool = False,
        compile: bool = False, progress: bool = True, resume: bool = False, overwrite: bool = False,
        executor: Optional[str] = None, ray_address: Optional[str] = None,
        log: Optional[Callable[[str], None]] = None) -> RunResult:
    """``mmhal run``: train the teacher, then every method's students for every seed; write the run folder and
    return its results. Arguments are the command's options (``data`` = ``--data``, ``seeds`` = ``--seeds``: a
    number of seeds, ...); ``resume=True`` continues the interrupted run in ``out``; ``executor="ray"`` trains the
    students on a Ray cluster (``ray_address``). ``log`` receives each progress line (default: stderr, as the
    command)."""
    from .engine import distributed
    from .engine.results import format_table, nothing_usable, recommendation_line
    from .engine.run import out_path, plan_folder
    from .engine.run import run as run_engine

    args = _options(data, config, student, teacher, methods, seeds, epochs, out, root, device, precision,
                    channels_last, compile, progress, overrides, overwrite=overwrite)
    base = args.config
    if resume:
        if not args.out:
            raise UserError("resume needs the run folder of the interrupted run (--out DIR, out=...)")
        args.out = str(out_path(args.out))  # '~/runs/x' (quoted) is the home folder's
        plan_folder(Path(args.out), "run", resume=True, overwrite=overwrite)  # a run of mmhal's, before reading it
        base = base or str(Path(args.out) / "config.yaml")  # the interrupted run's own settings, unless a recipe is named
    cfg = build_config(args, base)
    if executor is not None:
        if executor not in ("local", "ray"):
            raise UserError(f"executor must be 'local' or 'ray', got {executor!r}")
        cfg.executor = executor
    if ray_address is not None:
        if cfg.executor != "ray":
            raise UserError("ray_address is the Ray cluster of executor='ray'; add executor='ray'")
        cfg.ray_address = str(ray_address)
    with distributed.session(cfg.device) as job:  # a torchrun job's process group; nothing otherwise
        # the engine checks out before it reads the data (engine.run.plan_folder: new, empty or mmhal's own)
        report = run_engine(cfg, log=log or _stderr_log, resume=resume, overwrite=overwrite)
        lines = [format_table(report), *(f"warning: {w}" for w in report["warnings"]),
                 f"results: {Path(cfg.out) / 'results.json'} ({report['seconds']:.0f} s)",
                 recommendation_line(report["recommendation"], report.get("diverged"))]
        if job.is_main:
            from .engine.outputs import RUN_LOG
            from .engine.runfolder import RunLog

            RunLog.append(Path(cfg.out) / RUN_LOG, lines)  # the folder's run.log ends as the terminal did
        failure = nothing_usable(report)  # the same on every rank
        main = job.is_main
    return RunResult(Path(cfg.out), report, lines, failure, main)


def tune(data: Optional[PathLike] = None, *, trials: int = 8, tune_seeds: int = 2, sampler: str = "random",
         pruner: str = "none", storage: Optional[str] = None, study: str = "mmhal",
         student: Union[Sequence[str], str, None] = None, teacher: Union[Sequence[str], str, None] = None,
         methods: Union[Sequence[str], str, None] = None, seeds: Optional[int] = None, epochs: Optional[int] = None,
         out: Optional[PathLike] = None, config: Optional[PathLike] = None, overrides: Overrides = None,
         root: Optional[PathLike] = None, device: Optional[str] = None, precision: Optional[str] = None,
         channels_last: bool = False, compile: bool = False, progress: bool = True,
         log: Optional[Callable[[str], None]] = None) -> TuneResult:
    """``mmhal tune``: ``trials`` configurations per method (the same budget for every method), each scored by
    ``tune_seeds`` students (seeds 1000, 1001, ...: never the reporting seeds) on the validation split alone,
    drawn by Optuna's ``sampler`` (random or tpe) and stopped early by its ``pruner`` (none or median); writes
    trials.csv, tune.json and the recipe tuned.yaml into ``out``. The studies live in ``storage`` (a database URL
    that several processes share, under the name ``study``; default: study.db in ``out``). ``seeds``: the seeds the
    recipe reports."""
    from .engine.tune import TUNE_SEED_BASE, format_tune
    from .engine.tune import tune as tune_engine

    if isinstance(tune_seeds, bool) or not isinstance(tune_seeds, int) or tune_seeds < 1:
        raise UserError(f"tune_seeds (--tune-seeds) must be a whole number of at least 1, got {tune_seeds!r}")
    if isinstance(trials, bool) or not isinstance(trials, int):
        raise UserError(f"trials (--trials) must be a whole number, got {trials!r}")
    args = _options(data, config, student, teacher, methods, seeds, epochs, out, root, device, precision,
                    channels_last, compile, progress, overrides)
    cfg = build_config(args, kind="tune")
    summary = tune_engine(cfg, trials, [TUNE_SEED_BASE + i for i in range(tune_seeds)], log=log or _stderr_log,
                          sampler=sampler, pruner=pruner, storage=storage, study=study)
    failure = None
    if summary["failed"] and len(summary["failed"]) == len(summary["methods"]):
        failure = (f"every trial of every method diverged, so nothing was tuned (tune.json lists them); lower "
                   f"train.lr (trial 0 used {cfg.train.lr}) or the methods' loss weights")
    return TuneResult(Path(cfg.out), summary, format_tune(summary), failure)


def predict(run: PathLike, data: PathLike, *, method: Optional[str] = None, seed: Optional[int] = None,
            out: Optional[PathLike] = None, root: Optional[PathLike] = None, batch_size: int = 1024,
            device: str = "cpu", overwrite: bool = False, progress: bool = True) -> PredictResult:
    """``mmhal predict``: apply the run's students (``method``, default the recommended one; every seed's
    probabilities averaged, or one ``seed``'s) to ``data`` (a .npz file, a manifest .csv or a dataset name) and
    write one CSV row per sample (default RUN/predictions/<method>-<data>.csv)."""
    from .engine.predict import predict_run

    done = predict_run(run, str(data), method, seed, out, None if root is None else str(root), batch_size, device,
                       overwrite, progress=progress)
    return PredictResult(done.path, done.method, done.n, done.networks, done.accuracy,
                         None if done.threshold is None else done.threshold.value, done.notes, done.seconds,
                         done.lines(), dict(done.split_accuracy))


def export(run: PathLike, *, method: Optional[str] = None, seed: Optional[int] = None, format: str = "onnx",
           out: Optional[PathLike] = None, overwrite: bool = False) -> ExportResult:
    """``mmhal export``: one network of the run (``method``, default the recommended one, or ``teacher``;
    ``seed``, default its best on validation) as ONNX or TorchScript (``format``) with a model card, checked
    against PyTorch (default folder RUN/export/<method>-seed<seed>-<format>)."""
    from .engine.export import FILES, export_run

    folder, card = export_run(run, method, seed, format, out, overwrite)
    return ExportResult(folder, folder / FILES[format], card)


def report(run: PathLike, *, out: Optional[PathLike] = None, data_root: Optional[PathLike] = None,
           regions: bool = True, progress: bool = True, log: Optional[Callable[[str], None]] = None) -> ReportResult:
    """``mmhal report``: an HTML page with PNG figures of a finished run (default RUN/report/index.html): which
    method to deploy and why. ``regions=False`` leaves out the figures that need the data."""
    from .engine.report import report_run

    page, figures, notes, seconds = report_run(run, out, None if data_root is None else str(data_root), regions,
                                               progress, log)
    return ReportResult(page, figures, notes, seconds)

"""``mmhal run``: teacher once, then every method for every seed, evaluated on the test split.

The teacher (CE on all teacher modalities) is trained once per dataset and configuration and cached
under ``cache_dir/teachers/<hash>.pt``; every method and seed distils the same frozen teacher. A seed
fixes the student's initialisation and the data order, identically for every method, so methods are
compared paired by seed; seeds (and the teacher) draw independent streams (``utils.derive_seed``).
A teacher carries the fingerprint of the data it was trained on: a ``teacher_path`` trained on other
data (or another split) is refused, and ``--resume`` refuses a teacher other than the one the finished
students were distilled from. What is reported is computed in ``engine.results``.

A network whose loss becomes NaN or infinite (``loop.check_finite``) is stopped: the teacher's divergence
ends the run before any student trains (a one-sentence UserError, nothing cached); a student's is recorded
in its job file (``--resume`` does not train it again) and the methods it belongs to are left out of the
figures and listed under ``diverged`` (``results.diverged_methods``).

Under ``torchrun`` (``engine.distributed``) every rank runs this same program: the teacher is trained
by all ranks together (DDP) when it is not cached, then every (method, seed) job in the same order;
rank 0 alone logs, shows progress and writes the run folder and the teacher cache.
"""
from __future__ import annotations

import os
import shlex
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from .. import __version__
from ..config import (ModelConfig, RunConfig, absolute_paths, apply_mapping, method_config, save_config, to_dict,
                      writes_tensorboard)
from ..data.augment import describe as describe_augment
from ..data.base import MultimodalData, load_dataset
from ..data.select import check_modalities
from ..distill import ENSEMBLES, METHODS, build_method, member_job
from ..errors import DataError, TrainingDiverged, TrialPruned, UserError
from ..models.network import build_network, macs_per_sample
from ..utils import (atomic_torch_save, atomic_write_json, atomic_write_text, derive_seed, return_freed_memory,
                     seed_everything, stable_hash, state_digest)
from . import distributed
from .loop import divergence_hint, fit, make_split, output_nbytes, predict, teacher_outputs
from .results import (TEACHER, add_learner_comparisons, build_results, diverged_methods, diverged_warning,
                      format_table, learner_advice, members, nothing_usable, pad_counts, recommend,
                      recommendation_line, results_csv, teacher_warning)
from .runfolder import (EVALUATION_FILE, MARKER, RunFolder, RunInterrupted, probe_writable, is_own,  # noqa: F401
                        RunLog, out_path, plan_folder, read_marker, sigint_held)
from .outputs import RUN_LOG
from .jobs import JobFailed, report_job, run_jobs, reads_samples, resolve_workers, train_threads  # noqa: F401
from .samples import SampleSplit, close_splits, stop_workers, streamed_stats
from .step import autocast_dtype

__all__ = ["run", "format_table", "recommendation_line", "nothing_usable"]
CACHE_LIMIT_BYTES = 2 * 1024**3  # largest teacher-output cache kept in memory (per process)


def normalization_stats(data, modalities, workers: int = 0, progress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and std of every modality over the train split (vectors: per feature); for data on
    disk, streamed over the files by ``workers`` DataLoader processes (never the whole split in memory)."""
    idx = data.indices("train")
    if not data.in_memory:
        return streamed_stats(SampleSplit(data, idx, modalities, "cpu", workers), modalities, progress=progress)
    stats = {}
    for m in modalities:
        a = data.modalities[m][idx].astype(np.float64)
        axes = (0,) + tuple(range(2, a.ndim))
        mean, std = a.mean(axis=axes), a.std(axis=axes)
        stats[m] = (mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))
    return stats


def build_splits(cfg: RunConfig, data, modalities, device, names=("train", "val", "test")) -> dict:
    """The splits ``names`` of ``data`` for ``modalities``: tensors, or read sample by sample (data on disk;
    the train split under ``data.augment``)."""
    return {s: make_split(data, s, modalities, device, cfg.train.loader, cfg.train.loader_workers, cfg.data.augment)
            for s in names}


def check_augment(cfg: RunConfig, data) -> None:
    """A UserError when ``data.augment`` is on but no modality is an image (C, H, W) it could change."""
    if cfg.data.augment.active and not any(len(s) == 3 for s in data.shapes.values()):
        raise UserError("data.augment is on, but it augments image modalities (C, H, W) and this data has none; "
                        "turn it off")


def pad_options(cfg: RunConfig, data, eval_split: str) -> Optional[dict]:
    """What ``results.build_results`` needs to report presentation-attack figures (ISO/IEC 30107-3), for data
    with a bona fide flag; None otherwise. A UserError, before anything trains, when the validation split
    (where the threshold is chosen) lacks bona fide or attack samples."""
    if getattr(data, "bona_fide", None) is None:
        return None
    scoring = data.info.get("scoring", "sample") if cfg.data.scoring == "auto" else cfg.data.scoring
    if scoring == "video" and getattr(data, "video", None) is None:
        raise UserError("data.scoring=video needs the video of every sample, and this data names none; use sample")
    val, ev = data.indices("val"), data.indices(eval_split)
    calibrated = not _is_number(cfg.pad.criterion)
    if calibrated and (data.bona_fide[val].all() or not data.bona_fide[val].any()):
        kind = "attack" if data.bona_fide[val].all() else "bona fide"
        raise UserError(f"the validation split has no {kind} sample, so no PAD threshold can be chosen on it "
                        f"(pad.criterion={cfg.pad.criterion}); give it both, or a fixed threshold, e.g. pad.criterion=0.5")
    pick = lambda a, idx: None if a is None else np.asarray(a)[idx]  # noqa: E731
    video = getattr(data, "video", None) if scoring == "video" else None
    return {"val_bona_fide": data.bona_fide[val], "eval_bona_fide": data.bona_fide[ev],
            "val_species": pick(data.species, val), "eval_species": pick(data.species, ev),
            "val_video": pick(video, val), "eval_video": pick(video, ev),
            "scoring": scoring, "criterion": cfg.pad.criterion, "legacy": cfg.pad.legacy}


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def split_job_name(job: str) -> tuple[str, int]:
    """(method, replica) of a student job name: ``kd`` -> (kd, 1); ``unimodal@2`` -> (unimodal, 2), a second,
    independently initialised and shuffled student of the same method and seed (an ensemble member)."""
    method, _, replica = job.partition("@")
    return method, int(replica) if replica else 1


def job_stream(job: str) -> str:
    """The random stream (initialisation, data order) of a student job: shared by every method of a seed,
    so that methods are paired; a replica ``@r`` (r > 1) has its own."""
    _, replica = split_job_name(job)
    return "student" if replica == 1 else f"student@{replica}"


def all_methods() -> list[str]:
    """Every registered method (unimodal first) and every ensemble: what ``--methods all`` reports."""
    names = METHODS.names()
    return ["unimodal", *[n for n in names if n != "unimodal"], *ENSEMBLES]


def resolve_methods(methods) -> tuple[list[str], list[str]]:
    """(student jobs to train, methods to report), in order; ensembles pull in their members; ``all``
    stands for every registered method and ensemble."""
    if "all" in methods:
        methods = [*all_methods(), *[m for m in methods if m != "all" and m not in all_methods()]]
    train: list[str] = []
    for name in methods:
        if name == TEACHER:
            continue
        for p in map(member_job, members(name)):
            METHODS.get(split_job_name(p)[0])  # raises a one-sentence error for an unknown name
            if p not in train:
                train.append(p)
    return train, list(dict.fromkeys(m for m in methods if m != TEACHER))


def applicable_methods(cfg: RunConfig, data, student_mods, to_train: list[str], to_report: list[str], log):
    """(jobs, reported methods) without the methods that cannot run on this data (e.g. ``dkd`` on 2 classes,
    ``at`` on a student without a feature grid), checked by building each method around a throwaway student
    before anything trains. A method named in ``cfg.methods`` (or a member of a named ensemble) that cannot
    run is a UserError; one that only ``all`` brought in is left out with a note."""
    import copy as _copy
    from dataclasses import replace

    probe = build_network(data.shapes, student_mods, data.num_classes, replace(cfg.model, weights="", weights_sha256=""))
    named = {split_job_name(member_job(p))[0] for m in cfg.methods if m not in ("all", TEACHER) for p in members(m)}
    dropped: dict[str, str] = {}
    train_labels = torch.from_numpy(np.asarray(data.labels)[data.indices("train")])
    for name in dict.fromkeys(split_job_name(j)[0] for j in to_train):
        try:
            build_method(name, probe, _copy.deepcopy(probe), method_config(cfg, name).distill, train_labels)
        except UserError as exc:
            if name in named:
                raise
            dropped[name] = str(exc)
    for name, why in dropped.items():
        log(f"note: --methods all leaves out '{name}' on this data: {why}")
    keep = lambda m: not any(split_job_name(member_job(p))[0] in dropped for p in members(m))  # noqa: E731
    return [j for j in to_train if split_job_name(j)[0] not in dropped], [m for m in to_report if keep(m)]


def teacher_macs(cfg: RunConfig, data, teacher_mods) -> int:
    """Multiply-accumulates per sample of the teacher, the largest network of the run, built (untrained, without
    pretrained weights) to be counted (``models.network.macs_per_sample``)."""
    from dataclasses import replace

    model = replace(teacher_config(cfg).model, weights="", weights_sha256="")
    if model.teacher_fusion == "late" and len(teacher_mods) > 1:
        from ..models.video import build_late_fusion

        net = build_late_fusion(data.shapes, teacher_mods, data.num_classes, model)
    else:
        net = build_network(data.shapes, teacher_mods, data.num_classes, model)
    return macs_per_sample(net, data.shapes)


def set_threads(cfg: RunConfig, data, teacher_mods) -> int:
    """Set this process's torch threads for training the run's networks (``jobs.train_threads``: one for small
    networks, else every usable CPU); returns the teacher's multiply-accumulates per sample, which the student
    worker processes' threads follow too."""
    macs = teacher_macs(cfg, data, teacher_mods)
    torch.set_num_threads(train_threads(cfg, macs))
    return macs


def _build(cfg: RunConfig, data: MultimodalData, modalities, stats, teacher: bool = False) -> torch.nn.Module:
    if teacher and cfg.model.teacher_fusion == "late" and len(modalities) > 1:
        from ..models.video import build_late_fusion  # one network per modality, logits averaged

        net = build_late_fusion(data.shapes, modalities, data.num_classes, cfg.model)
    else:
        net = build_network(data.shapes, modalities, data.num_classes, cfg.model)
    net.set_normalization(stats)
    return net


def teacher_key(cfg: RunConfig, fingerprint: str, teacher_mods, world_size: int = 1, clips: bool = False) -> str:
    """The teacher's cache name: a hash of what determines it (data, modalities, model, training, seed,
    and the number of processes, which changes the last batch of an epoch and the order of reductions).
    ``cfg`` is the teacher's own configuration (``teacher_config``)."""
    train = asdict(cfg.train)
    for name in ("threads", "loader", "loader_workers"):  # how fast, not what: the same batches either way
        train.pop(name, None)
    # Settings at their defaults stay out of the key (a key names only what differs from the defaults, and a
    # setting added later leaves the keys of cached teachers as they were).
    for name, default in (("precision", "32"), ("channels_last", False), ("compile", False), ("ema", 0.0),
                          ("min_steps", 0), ("patience", 0), ("schedule", "cosine")):
        if train.get(name) == default:
            train.pop(name)
    model, model_defaults = asdict(cfg.model), asdict(ModelConfig())
    for name in list(model):  # model settings added after the first release, at their defaults
        if name not in ("width", "blocks", "se_reduction") and model[name] == model_defaults[name]:
            model.pop(name)
    augment = describe_augment(cfg.data.augment)  # what the teacher's batches looked like (nothing when off)
    return stable_hash(
        {
            # 3: initialisation and data order from derive_seed(teacher_seed, ..., "teacher"); 4: the small network
            # of data whose every modality is a vector became a wide MLP (a cached teacher of the old one cannot load);
            # 5: model.pool=auto, the small network of sequences pools f4 by its mean and maximum
            "v": "teacher-5",
            "data": fingerprint,
            "modalities": list(teacher_mods),
            "model": model,
            "train": train,
            **({"augment": augment} if augment else {}),
            # action clips: which frames and crops the teacher's batches held
            **({"clip": asdict(cfg.data.clip), "depth_range": list(cfg.data.depth_range)} if clips else {}),
            **({"label_smoothing": cfg.distill.label_smoothing} if cfg.distill.label_smoothing else {}),
            "seed": cfg.teacher_seed,
            **({"world_size": world_size} if world_size > 1 else {}),
        }
    )


def get_teacher(cfg, data, teacher_mods, stats, splits, device, log, fingerprint: str) -> tuple[torch.nn.Module, dict]:
    """Load the cached teacher for this data and configuration, or train and cache it; or load
    ``cfg.teacher_path``, refused unless it was trained on this very data (``fingerprint``).

    While it trains, an epoch checkpoint ``<key>.train.pt`` sits beside the cache entry; a teacher training
    that was killed continues from it at the next start (same key, so same configuration), and ends as the
    uninterrupted training would have. A teacher whose loss becomes NaN or infinite is a ``TrainingDiverged``
    (a UserError: the run stops before any student trains); nothing is cached and its checkpoint is removed."""
    cfg = teacher_config(cfg)
    seed_everything(derive_seed(cfg.teacher_seed, "init", "teacher"))
    teacher = _build(cfg, data, teacher_mods, stats, teacher=True).to(device)
    main = distributed.current().is_main
    if cfg.teacher_path:  # a given teacher file, checked against this run's network and data
        ckpt = distributed.main_only(lambda: load_teacher_file(cfg.teacher_path, teacher, teacher_mods, fingerprint))
        source = cfg.teacher_path
    else:
        key = teacher_key(cfg, fingerprint, teacher_mods, distributed.current().world_size,
                          clips=getattr(data, "is_clips", False))
        path = Path(cfg.cache_dir) / "teachers" / f"{key}.pt"
        partial = path.with_name(f"{key}.train.pt")
        ckpt = distributed.main_only(lambda: load_cached_teacher(path, teacher, log))
        source = f"cache {path} (best epoch {ckpt['best_epoch']})" if ckpt is not None else ""
    if ckpt is not None:
        teacher.load_state_dict(ckpt["model"])
        log(f"teacher: loaded from {source}")
        return teacher, ckpt
    distributed.main_only(lambda: check_cache_writable(cfg.cache_dir, path.parent))
    method = METHODS.get("unimodal")(teacher, None, cfg.distill).to(device)
    t0 = time.time()
    if distributed.main_only(partial.is_file):
        log(f"teacher: continuing an interrupted training from {partial}")
    try:
        res = fit(method, splits["train"], splits["val"], cfg.train, cfg.teacher_seed, desc="teacher",
                  progress=cfg.progress, checkpoint=partial, resume=True, stream="teacher", network="the teacher")
    except TrainingDiverged as exc:  # nothing to distil from: no cache entry, and no checkpoint to resume into NaN
        if main:
            partial.unlink(missing_ok=True)
        hint = divergence_hint(method, cfg.train, "; method_overrides.teacher.train.lr sets the teacher's alone")
        raise TrainingDiverged(exc.network, exc.epoch, exc.what,
                               f"{hint}; nothing was cached and no student was trained") from None
    ckpt = {
        "model": res.best_state,
        "modalities": list(teacher_mods),
        "data": fingerprint,
        "best_epoch": res.best_epoch,
        "history": res.history,
        "mmhal": __version__,
    }
    if main:
        atomic_torch_save(ckpt, path)
        partial.unlink(missing_ok=True)
    log(f"teacher: trained in {time.time() - t0:.1f}s, best epoch {res.best_epoch}, cached at {path}")
    return teacher, ckpt


def load_cached_teacher(path: Path, teacher: torch.nn.Module, log) -> Optional[dict]:
    """The cache entry at ``path`` (None when there is none). An entry that cannot be read, or does not fit
    ``teacher``, is damaged (a full disk, a copy cut short): it is moved aside to ``<key>.pt.damaged`` (kept
    for a look; safe to delete) and the teacher is trained again."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or not {"model", "best_epoch"} <= set(ckpt):
            raise ValueError("not a cached teacher")
        teacher.load_state_dict(ckpt["model"])  # the names and shapes of this network
        return ckpt
    except Exception as exc:
        why = type(exc).__name__
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
    except OSError as exc:
        raise UserError(f"the cached teacher '{path}' is damaged ({why}) and cannot be moved aside "
                        f"({exc.strerror or type(exc).__name__}); delete it to train the teacher again") from None
    log(f"note: the cached teacher '{path}' is damaged ({why}); moved it to '{aside}' (delete it when you like) "
        "and training the teacher again")
    return None


def check_cache_writable(cache_dir: str, folder: Path) -> None:
    """A UserError in one sentence unless the teacher cache ``folder`` (under ``cache_dir``) can be made and
    written: checked before the teacher trains, not after its first epoch."""
    what, hint = f"the cache folder '{cache_dir}'", "; set cache_dir=DIR or $MMHAL_CACHE to a writable folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{what} cannot be created or written ({exc.strerror or type(exc).__name__}){hint}") from None
    probe_writable(folder, what, hint)


def teacher_config(cfg: RunConfig) -> RunConfig:
    """The configuration the teacher trains with: ``cfg`` with ``method_overrides.teacher`` applied (e.g. its
    own epoch budget, ``{teacher: {train.epochs: 30}}``); it is trained once, so it may train longer."""
    return method_config(cfg, TEACHER)


FUSION = ("se.", "proj.")  # the fusion layer: its input is the concatenation of every modality's stem


def init_from_teacher(student: torch.nn.Module, teacher: torch.nn.Module) -> int:
    """Copy the teacher's weights into the student wherever a name and shape match (the stems and
    normalisers of the student's modalities, the trunk, the head), but never the fusion layer, whose
    input width differs (a bias that happens to match would mean nothing without its weight); returns
    how many tensors were copied."""
    t_state, s_state = teacher.state_dict(), student.state_dict()
    copied = {k: v.clone() for k, v in t_state.items()
              if k in s_state and s_state[k].shape == v.shape and not k.startswith(FUSION)}
    student.load_state_dict({**s_state, **copied})
    return len(copied)


def load_teacher_file(path: str, teacher: torch.nn.Module, teacher_mods, fingerprint: str) -> dict:
    """A teacher file (``{"model", "modalities", "data"}``, as ``models/teacher.pt``) checked against
    ``teacher``, the network this run builds, and against this run's data: a UserError when it is missing,
    unreadable, of another shape, or was trained on other data or another split (``data`` is the
    fingerprint of labels, split and every modality's values; a teacher that saw the test samples, or
    other data, would make every distilled figure meaningless)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"teacher_path '{path}' does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"teacher_path '{path}' cannot be read as a teacher file ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "modalities" not in ckpt:
        raise UserError(f"teacher_path '{path}' is not an mmhal teacher file (models/teacher.pt of a run)")
    if list(ckpt["modalities"]) != list(teacher_mods):
        raise UserError(f"teacher_path '{path}' is a teacher of {'+'.join(ckpt['modalities'])}, "
                        f"this run's teacher sees {'+'.join(teacher_mods)}")
    want = {k: tuple(v.shape) for k, v in teacher.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    if want != got:
        raise UserError(f"teacher_path '{path}' holds a network of another shape than this run's teacher "
                        "(other model settings or data shapes)")
    if "data" not in ckpt:
        raise UserError(f"teacher_path '{path}' does not record which data it was trained on (a teacher file of an "
                        "older mmhal); train the teacher again with this version")
    if ckpt["data"] != fingerprint:
        raise UserError(f"teacher_path '{path}' was trained on other data or another split (data fingerprint "
                        f"{ckpt['data']}, this run's is {fingerprint}); distil only a teacher trained on this run's train split")
    return ckpt


def model_meta(data, cfg: RunConfig) -> dict:
    """What rebuilds a saved network without its training data (``engine.artifacts``): the shapes of every
    modality of the data (the trunk's grid depends on all of them), the classes, and the model settings."""
    model = asdict(cfg.model)
    model["weights"] = ""  # the trained weights are in the file; a pretrained file is not needed to rebuild
    model["weights_sha256"] = ""
    return {"shapes": {m: list(s) for m, s in data.shapes.items()}, "num_classes": int(data.num_classes),
            "class_names": list(data.class_names), "model_config": model, "mmhal": __version__}


def metrics_file(out: Path, name: str, seed: int) -> Path:
    """A student's per-epoch metrics (``loop.write_metrics``): ``metrics/<job>-seed<s>.csv``, rewritten every epoch."""
    return out / "metrics" / f"{name}-seed{seed}.csv"


def job_files(out: Path, name: str, seed: int) -> tuple[Path, Path]:
    """(epoch checkpoint, finished-job record) of student job (``name``, ``seed``) in run folder ``out``."""
    stem = f"{name}-seed{seed}.pt"
    return out / "checkpoints" / stem, out / "jobs" / stem


# Settings a resumed run may change: where it is, whether it shows bars, how batches reach the device (the same
# batches either way, so the same results), and where its students train (the local executor or Ray: the same jobs).
RESUME_FREE = ("out", "progress", "train.loader", "train.loader_workers", "executor", "ray_address")
# ... and where its data lie, once the run has recorded the data's fingerprint (check_same_data then makes sure
# that the file or folder named now holds the same data): a data file moved after an interruption
DATA_PLACE = ("data.name", "data.path")


def _as_settings(saved, what: str) -> dict:
    """A saved configuration (a mapping) with today's defaults filled in and absolute paths, as ``to_dict`` gives
    it; a UserError when it is not one."""
    if not isinstance(saved, dict):
        raise UserError(f"{what} is not an mmhal configuration, so the run cannot be resumed")
    try:  # both with absolute paths: a relative --data typed again names the same file
        return to_dict(absolute_paths(apply_mapping(RunConfig(), saved)))
    except UserError:
        return saved  # compared as written; a difference is reported by the caller


def _shown_diffs(diffs) -> str:
    return "; ".join(f"{k}: {a!r} then, {b!r} now" for k, a, b in diffs[:3]) + ("; ..." if len(diffs) > 3 else "")


def check_resumable(cfg: RunConfig, out: Path) -> None:
    """A UserError, before anything trains, unless this resume asks for the settings the run in ``out`` started
    with (``RESUME_FREE`` aside, and ``DATA_PLACE``, the data's file or folder, once the run has recorded the data's
    fingerprint, which ``check_same_data`` compares): those its marker recorded when it started, so that an edit of its
    ``config.yaml`` after an interruption is named as such instead of mixing two settings in one table (a run
    of an mmhal that recorded none is compared with its ``config.yaml``). ``run`` has already checked, before
    loading any data, that ``out/config.yaml`` exists."""
    saved_path = out / "config.yaml"
    try:
        written = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise UserError(f"'{saved_path}' is not valid YAML, so the run in '{out}' cannot be resumed") from None
    started = (read_marker(out) or {}).get("settings")
    now = to_dict(absolute_paths(cfg))
    if started is None:  # an earlier mmhal: the config.yaml is all there is
        diffs = _config_diffs(_as_settings(written, f"'{saved_path}'"), now)
        if diffs:
            raise UserError(f"the run in '{out}' was started with a different configuration ({_shown_diffs(diffs)}); "
                            "resume it with the same settings")
        return
    started = _as_settings(started, f"the marker of '{out}'")
    free = RESUME_FREE + (DATA_PLACE if (read_marker(out) or {}).get("data") else ())
    diffs = _config_diffs(started, now, free=free)
    if not diffs:
        return
    edited = _config_diffs(started, _as_settings(written, f"'{saved_path}'"), free=free)
    if edited:
        raise UserError(f"the run in '{out}' was started with other settings than its config.yaml now holds "
                        f"({_shown_diffs(edited)}): the file was edited after the run started; a resumed run keeps the "
                        "settings it started with, so put them back, or start a new run with the new settings "
                        "(another --out)")
    raise UserError(f"this --resume asks for other settings than the run in '{out}' started with "
                    f"({_shown_diffs(diffs)}); resume it with the same settings, or start a new run (another --out)")


def check_same_data(work: Path, fingerprint: str, resume: bool) -> None:
    """On ``--resume``, a UserError before the teacher or any student trains when the data differ from those the
    run started on (labels, split or a modality's values: ``data.fingerprint``); the fingerprint is recorded in
    the run's marker the first time the data are read."""
    marker = read_marker(work) or {"command": "run"}
    was = marker.get("data")
    if resume and was is not None and was != fingerprint:
        raise UserError(f"the data of the run in '{work}' changed since it started (fingerprint {was} then, "
                        f"{fingerprint} now: labels, split or a modality's values differ); resume it on the same data, "
                        "or start a new run (another --out)")
    if was is None:
        atomic_write_json(work / MARKER, {**marker, "data": fingerprint})


def _config_diffs(saved: dict, now: dict, prefix: str = "", free=RESUME_FREE) -> list[tuple[str, object, object]]:
    diffs = []
    for k in sorted(set(saved) | set(now)):
        key = f"{prefix}{k}"
        if key in free:
            continue
        a, b = saved.get(k, "<unset>"), now.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_diffs(a, b, key + ".", free)
        elif a != b:
            diffs.append((key, a, b))
    return diffs


def load_run_data(cfg: RunConfig) -> tuple[MultimodalData, list[str], list[str], list[str]]:
    """The dataset of ``cfg`` and its (teacher, student, all) modalities, after checking both modality lists and
    the method names of ``method_overrides``; sets ``cfg.teacher`` to the teacher's modalities (default: all)."""
    data = load_dataset(cfg.data, progress=cfg.progress)
    teacher_mods = list(cfg.teacher) if cfg.teacher else sorted(data.modalities)
    student_mods = list(cfg.student)
    check_modalities(data, teacher_mods, "teacher")
    check_modalities(data, student_mods, "student")
    for name in cfg.method_overrides:
        if name != TEACHER:
            METHODS.get(name)  # an unknown method name in method_overrides is a one-sentence error
    cfg.teacher = teacher_mods
    return data, teacher_mods, student_mods, sorted(set(teacher_mods) | set(student_mods))


def run(cfg: RunConfig, log=None, resume: bool = False, overwrite: bool = False) -> dict:
    """Run the whole comparison; writes config.yaml, results.json, results.csv, evaluation.pt and models/ into ``cfg.out``.

    ``cfg.out`` is checked first (``plan_folder``: mmhal writes only into a new or empty folder or one it
    marked as its own) and made only once the data are loaded and every setting has been checked, so a
    mistake in the input leaves nothing behind. While it runs, every student job writes an epoch checkpoint to
    ``checkpoints/`` and, once done, its evaluation logits to ``jobs/``. With ``resume``, the run in
    ``cfg.out`` (same configuration) goes on: finished jobs are loaded, an interrupted one continues from its
    last epoch, the teacher comes from the cache. With ``overwrite``, a run already in ``cfg.out`` is
    replaced once the new one is complete (until then it stays whole). Ctrl-C raises ``RunInterrupted``,
    whose message says what was kept and how to go on.
    """
    log = log or (lambda s: tqdm.write(s))
    t_start = time.time()
    torch.set_num_threads(train_threads(cfg))  # while the data load; set again for the network (set_threads)
    dctx = distributed.current()
    main = dctx.is_main
    device = distributed.job_device(cfg.device, dctx)
    autocast_dtype(cfg.train.precision, device)  # a precision this device cannot run is a UserError, now
    distributed.check_batch_size(cfg.train.batch_size, dctx.world_size)
    if dctx.enabled and cfg.executor != "local":
        raise UserError("--executor ray sends the students to a Ray cluster; under torchrun the ranks train them "
                        "together instead: use one or the other")
    if cfg.executor == "ray":
        from .rayjobs import check_cluster

        check_cluster(cfg.ray_address)  # Ray installed and the cluster there, before the teacher trains
    if dctx.enabled:
        if not main:  # rank 0 alone speaks
            log, cfg.progress = (lambda s: None), False
        cfg.out = distributed.main_only(lambda: cfg.out)  # a default, timestamped folder is rank 0's
    cfg.out = str(out_path(cfg.out))  # '~/runs/x' is the home folder's, never a folder named '~'
    out = Path(cfg.out)
    folder = distributed.main_only(lambda: plan_folder(out, "run", resume=resume, overwrite=overwrite))
    runlog = RunLog(log) if main else None  # what is printed, kept in the folder's run.log once it is made
    log = runlog or log
    splits: dict = {}
    try:
        try:
            try:
                data, teacher_mods, student_mods, all_mods = load_run_data(cfg)
            except DataError:
                if resume:
                    check_data_moved(cfg, out)  # the run's own data file is gone: said so, with what to do
                raise
            to_train, to_report = applicable_methods(cfg, data, student_mods, *resolve_methods(cfg.methods), log)
            if resume:
                distributed.main_only(lambda: check_resumable(cfg, out))
            check_augment(cfg, data)
            eval_split = "test" if len(data.indices("test")) else "val"
            pad = pad_options(cfg, data, eval_split)
            notes = input_warnings(data, teacher_mods, student_mods, eval_split)
            if main:  # every check of the input has passed: now the folder is made (or adopted)
                folder.open(log, settings=to_dict(absolute_paths(cfg)))
                runlog.attach(folder.work / RUN_LOG, f"mmhal run{' --resume' if resume else ''} --out {shlex.quote(str(out))}")
                for d in ("", "models/", "jobs/", "checkpoints/"):  # half-written files of a killed run
                    for part in folder.work.glob(f"{d}.*.tmp"):
                        part.unlink()
                save_config(cfg, folder.work / "config.yaml")
            report = _compare(cfg, data, folder.work, teacher_mods, student_mods, all_mods, to_train, to_report,
                              eval_split, pad, notes, device, log, resume, splits, t_start)
        except KeyboardInterrupt:
            stop_workers()
            close_splits(splits)
            if main:
                folder.discard(log, interrupted=True)
            raise RunInterrupted(folder.interrupted()) from None
        except BaseException:
            stop_workers()
            close_splits(splits)
            if main:
                folder.discard(log, interrupted=False)
            raise
        close_splits(splits)  # worker processes of data read from files
        if main:
            with sigint_held():  # a Ctrl-C now waits for the swap to end
                folder.commit(log)
    finally:
        if runlog is not None:
            runlog.close()
        folder.release()  # the folder's lock: another command may write there now
    return report


def check_data_moved(cfg: RunConfig, out: Path) -> None:
    """On ``--resume``, a UserError when the data file the run in ``out`` started on (``data.name``, as its marker
    recorded it) is no longer where it was: moved or deleted since the interruption."""
    name = str(cfg.data.name)
    if not name.endswith((".npz", ".csv")) or os.path.lexists(name):
        return
    started = ((read_marker(out) or {}).get("settings") or {}).get("data") or {}
    if started.get("name") != name:
        return  # a file this resume names itself: its own error says it is missing
    how = ("give its new place with --data NEWPATH (the resume checks that it holds the same data), or put it back"
           if (read_marker(out) or {}).get("data") else "put it back there to resume")
    raise UserError(f"the data file '{name}' that the run in '{out}' started on does not exist any more (moved or "
                    f"deleted); {how}")


def input_warnings(data, teacher_mods, student_mods, eval_split: str) -> list[str]:
    """Warnings about choices that are legal but unusual: a student that sees every modality the teacher sees
    (nothing is privileged), a student modality the teacher does not see, and figures on the validation split (no
    test split), which also chose every student's epoch."""
    warnings = []
    if set(teacher_mods) <= set(student_mods):
        warnings.append(f"nothing is privileged: the student sees every modality the teacher sees "
                        f"({', '.join(teacher_mods)}), so distillation has nothing the student lacks; give the student "
                        "fewer modalities than the teacher (--student) to measure what distillation brings")
    unseen = [m for m in student_mods if m not in teacher_mods]
    if unseen:
        warnings.append(f"the student sees {', '.join(unseen)}, which the teacher does not (its teacher sees "
                        f"{', '.join(teacher_mods)}): distillation then carries nothing about "
                        f"{'that modality' if len(unseen) == 1 else 'those modalities'}")
    if eval_split == "val":
        warnings.append("the data has no test split: every figure is on the validation split, which also chose each "
                        "student's epoch, so they are optimistic; give the data a test split for unbiased figures")
    return warnings


def describe_device(device: torch.device) -> str:
    """The device that ran, e.g. ``cpu`` or ``cuda:0 (NVIDIA H200)`` (what ``--device auto`` resolved to)."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _compare(cfg, data, work: Path, teacher_mods, student_mods, all_mods, to_train, to_report, eval_split, pad, notes,
             device, log, resume, splits: dict, t_start) -> dict:
    """The body of ``run`` once the folder ``work`` is ready: teacher, students, results (``splits`` is
    filled with the splits it builds, for the caller to close)."""
    macs = set_threads(cfg, data, teacher_mods)
    dctx = distributed.current()
    main = dctx.is_main
    log(
        f"data: {data.name}, {len(data.labels)} samples, {data.num_classes} classes, "
        f"modalities {', '.join(f'{m}{list(s)}' for m, s in data.shapes.items())}; "
        f"train/val/test {len(data.indices('train'))}/{len(data.indices('val'))}/{len(data.indices('test'))}"
    )
    for w in notes:
        log(f"note: {w}")
    if reads_samples(cfg, data):
        return_freed_memory()
    stats = normalization_stats(data, all_mods, cfg.train.loader_workers, cfg.progress)
    splits.update(build_splits(cfg, data, all_mods, device))
    y_eval = splits[eval_split].labels.cpu().numpy()

    fingerprint = data.fingerprint()
    distributed.main_only(lambda: check_same_data(work, fingerprint, resume))
    teacher, _ = get_teacher(cfg, data, teacher_mods, stats, splits, device, log, fingerprint)
    digest = state_digest(teacher.state_dict())
    if resume:  # the students already trained were distilled from the teacher in models/teacher.pt
        distributed.main_only(lambda: check_same_teacher(work, digest))
    if main:
        atomic_torch_save({"model": teacher.state_dict(), "modalities": teacher_mods, "data": fingerprint,
                           "digest": digest, **model_meta(data, teacher_config(cfg))}, work / "models" / "teacher.pt")
    teacher_eval, teacher_val = predict(teacher, splits[eval_split]).numpy(), predict(teacher, splits["val"]).numpy()

    jobs = [(name, seed) for seed in cfg.seeds for name in to_train]
    # Workers (and so threads per job) follow from all jobs, not the ones left: a resumed job then runs
    # with the thread count it started with, which keeps CPU results identical to an uninterrupted run.
    workers = resolve_workers(cfg, device, len(jobs), data.in_memory)
    done = {}
    if resume:
        done, partial = distributed.main_only(lambda: _finished_jobs(work, jobs, digest))
        log(f"resume: {len(done)} of {len(jobs)} students already finished, {partial} continue from an epoch checkpoint")
        for (name, seed), r in done.items():
            report_job(log, eval_split, y_eval, name, seed, r)
    todo = [j for j in jobs if j not in done]
    where = f"{dctx.world_size} DDP processes" if dctx.enabled else f"{workers} worker process(es)"
    log(f"training {len(todo)} students ({', '.join(to_train)} x {len(cfg.seeds)} seeds) on {where}")
    ctx = JobContext(cfg, data, stats, teacher.state_dict(), teacher_mods, student_mods, all_mods, eval_split, resume,
                     digest, folder=work, macs=macs)
    if workers == 1 and cfg.executor == "local":  # jobs run in this process: reuse its splits and teacher
        ctx.prime(splits, teacher)
    background = None
    if main and (workers > 1 or cfg.executor == "ray") and todo and cfg.learners:
        # The students train in worker processes: the standard learners (engine.learners) are fitted meanwhile on
        # a thread of this process, which otherwise waits, so they take the cores the students leave free.
        from . import learners

        log("standard learners: fitted beside the students")
        background = learners.Background(data, student_mods, teacher_mods, eval_split, list(cfg.seeds), cfg.learners)
    if cfg.executor == "ray":  # each job a task on a Ray cluster (engine.rayjobs)
        from . import rayjobs

        done.update(rayjobs.run_jobs(ctx, todo, workers, device, log, y_eval, cfg.ray_address))
    else:
        done.update(run_jobs(ctx, todo, workers, device, log, y_eval))
    done = with_companions(done)

    y_val = splits["val"].labels.cpu().numpy()
    results = build_results(to_report, student_mods, teacher_mods, y_eval, y_val, teacher_eval, teacher_val, done,
                            list(cfg.seeds), data.num_classes, pad=pad, ensemble_weight=cfg.distill.ensemble_weight,
                            y_train=splits["train"].labels.cpu().numpy())
    standard = None
    if main:  # what a standard learner reaches on the same split (engine.learners), beside the networks
        from . import learners

        if background is not None:
            standard = background.result()
        else:
            standard = learners.reference(data, student_mods, teacher_mods, eval_split, list(cfg.seeds),
                                          cfg.learners, log=lambda s: log(f"{s} ..."))
        if standard["rows"]:
            beside = " (on a thread beside the students)" if background is not None else ""
            log(f"standard learners: {len(standard['rows'])} fitted in {standard['seconds']:.1f} s{beside}")
        add_learner_comparisons(standard, results)
    recommendation = recommend(results, cfg.recommend)
    if recommendation is not None and standard is not None:
        advice = learner_advice(standard, recommendation, results)
        if advice is not None:
            recommendation["standard_learner"] = advice
    diverged = diverged_methods(to_report, done, list(cfg.seeds), student_mods)
    warnings = list(data.info.get("warnings", [])) + list(notes)
    for w in (diverged_warning(diverged), teacher_warning(results)):
        if w:
            warnings.append(w)
    for w in warnings:
        if w not in notes:
            log(f"warning: {w}")
    report = {
        "dataset": data.name,
        "teacher_modalities": teacher_mods,
        "student_modalities": student_mods,
        "seeds": list(cfg.seeds),
        "evaluated_on": eval_split,
        "class_names": list(data.class_names),
        "results": results,
        "recommendation": recommendation,
        "standard_learners": standard,
        "diverged": diverged,
        "warnings": warnings,
        **({"pad_counts": pad_counts(pad)} if pad is not None else {}),
        "teacher": {"digest": digest, "data": fingerprint, "source": cfg.teacher_path or "cache"},
        "data_info": data.info,
        "device": describe_device(device) + (f" x {dctx.world_size} processes" if dctx.enabled else ""),
        "torch": torch.__version__,
        "seconds": round(time.time() - t_start, 1),
        "mmhal": __version__,
    }
    if main:
        save_evaluation(work / EVALUATION_FILE, eval_split, y_eval, y_val, teacher_eval, teacher_val, pad)
        atomic_write_json(work / "results.json", report)
        atomic_write_text(work / "results.csv", results_csv(report))
        try:  # every job finished, so no epoch checkpoint is left
            (work / "checkpoints").rmdir()
        except OSError:
            pass
    return report


def save_evaluation(path: Path, eval_split: str, y_eval, y_val, teacher_eval, teacher_val, pad: Optional[dict]) -> None:
    """What a report needs beside the students' logits (``jobs/``) without reading the data again: the labels of
    the evaluation and validation splits, the teacher's logits on both, and for PAD data the bona fide flags."""
    rec = {"eval_split": eval_split, "y_eval": torch.as_tensor(y_eval), "y_val": torch.as_tensor(y_val),
           "teacher_logits": torch.as_tensor(teacher_eval), "teacher_val_logits": torch.as_tensor(teacher_val)}
    if pad is not None:
        rec["eval_bona_fide"] = torch.as_tensor(np.asarray(pad["eval_bona_fide"], dtype=bool))
        rec["val_bona_fide"] = torch.as_tensor(np.asarray(pad["val_bona_fide"], dtype=bool))
    atomic_torch_save(rec, path)


def check_same_teacher(out: Path, digest: str) -> None:
    """A UserError when the teacher of this resumed run is not the one the run in ``out`` distilled so far
    (``models/teacher.pt``, written before any student trained): a retrained or swapped cache entry would
    otherwise mix students of two teachers in one table."""
    saved = out / "models" / "teacher.pt"
    if not saved.is_file():
        return
    try:
        ckpt = torch.load(saved, map_location="cpu", weights_only=True)
        was = ckpt.get("digest") or state_digest(ckpt["model"])
    except Exception as exc:
        raise UserError(f"'{saved}' cannot be read ({type(exc).__name__}), so the run in '{out}' cannot be resumed "
                        "with a checked teacher; start it again without --resume") from None
    if was != digest:
        raise UserError(f"the teacher this run would use (weights {digest}) is not the one the run in '{out}' has "
                        f"distilled so far (weights {was}, its models/teacher.pt; the cached teacher was retrained or "
                        "replaced); start the run again without --resume, or into a new --out")


def _finished_jobs(out: Path, jobs, digest: str) -> tuple[dict, int]:
    """(records of the finished jobs, number of unfinished jobs with an epoch checkpoint) in run folder ``out``;
    a UserError when a finished job was distilled from another teacher than ``digest`` or by another
    number of processes."""
    done = {(n, s): load_job(job_files(out, n, s)[1]) for n, s in jobs if job_files(out, n, s)[1].is_file()}
    world = distributed.current().world_size
    for (n, s), r in done.items():
        if r.get("teacher", digest) != digest and METHODS.get(split_job_name(n)[0]).needs_teacher:
            raise UserError(f"student {n} seed {s} of the run in '{out}' was distilled from another teacher (weights "
                            f"{r['teacher']}) than this run's ({digest}); start the run again without --resume")
        if r.get("world_size", 1) != world:
            raise UserError(f"student {n} seed {s} of the run in '{out}' was trained by {r.get('world_size', 1)} "
                            f"process(es), this run has {world}; resume it with the same number of processes")
    partial = sum(job_files(out, n, s)[0].is_file() for n, s in jobs if (n, s) not in done)
    return done, partial


def _to_numpy(t: torch.Tensor):
    """A CPU tensor as a NumPy array (copied), or the tensor itself where NumPy has no such dtype (bf16)."""
    try:
        return t.detach().cpu().numpy().copy()
    except TypeError:
        return t


class JobContext:
    """What every student job needs; built once per process (in the parent, or in each worker)."""

    def __init__(self, cfg, data, stats, teacher_state, teacher_mods, student_mods, all_mods, eval_split, resume=False,
                 teacher_digest="", folder=None, macs=None):
        self.cfg, self.data, self.stats = cfg, data, stats
        self.macs = macs  # the teacher's multiply-accumulates per sample: the worker processes' threads follow them
        self.folder = Path(folder if folder is not None else cfg.out)  # where the run writes (see RunFolder.work)
        self.teacher_digest = teacher_digest
        self.teacher_state, self.teacher_mods, self.student_mods = teacher_state, teacher_mods, student_mods
        self.all_mods, self.eval_split = all_mods, eval_split
        self.resume = resume
        self.trials: dict[str, dict] = {}  # tuning trials: tag -> dotted train.*/distill.* overrides
        self._ready = None
        self._given = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ready"] = state["_given"] = None  # tensors are rebuilt in the worker
        # The teacher's weights travel as bytes in the pickle: a tensor would be passed as a shared-memory file
        # descriptor per weight, which runs out under a low open-file limit (ulimit -n 64 failed at the start).
        state["teacher_state"] = {k: _to_numpy(v) for k, v in self.teacher_state.items()}
        return state

    def __setstate__(self, state):
        state["teacher_state"] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                  for k, v in state["teacher_state"].items()}
        self.__dict__.update(state)

    def prime(self, splits: dict, teacher) -> None:
        """Use splits and a teacher this process already holds (same data, same state) in ``ready``."""
        self._given = (splits, teacher)

    def ready(self, device):
        if self._ready is None:
            if self._given is not None:
                splits, teacher = self._given
            else:
                splits = build_splits(self.cfg, self.data, self.all_mods, device, ("train", "val", self.eval_split))
                teacher = _build(self.cfg, self.data, self.teacher_mods, self.stats, teacher=True).to(device)
                teacher.load_state_dict(self.teacher_state)
            cache = None
            # Under augmentation every epoch's inputs differ, so the teacher runs on each batch instead.
            if (self.cfg.train.cache_teacher and not self.cfg.data.augment.active
                    and not getattr(self.data, "is_clips", False)  # clips: another clip every epoch
                    and output_nbytes(teacher, splits["train"]) <= CACHE_LIMIT_BYTES):
                cache = teacher_outputs(teacher, splits["train"])
            self._ready = (splits, teacher, cache)
        return self._ready

    def job_config(self, name: str, trial: Optional[str] = None) -> RunConfig:
        """The configuration job ``name`` trains with: its method's ``method_overrides``, then those of tuning
        trial ``trial`` (a tag of ``self.trials``)."""
        return method_config(self.cfg, split_job_name(name)[0], self.trials[trial] if trial else None)

    def _logits(self, net, splits, best_state: dict, last_state: dict, train: bool = False) -> dict:
        """A trained network's logits: on the evaluation split with the selected weights and (a selection-free
        control) the last epoch's, and on the validation split with the selected ones (with ``train`` also on the
        training split); ``net`` keeps the selected weights."""
        net.load_state_dict(best_state)
        z, z_val = predict(net, splits[self.eval_split]), predict(net, splits["val"])
        z_train = predict(net, splits["train"]) if train else None
        net.load_state_dict(last_state)
        z_last = predict(net, splits[self.eval_split])
        net.load_state_dict(best_state)
        return {"logits": z, "logits_last": z_last, "val_logits": z_val,
                **({"train_logits": z_train} if z_train is not None else {})}

    def train_student(self, name: str, seed: int, device, progress: bool, on_epoch=None, trial=None) -> dict:
        """Train one student (job ``name``, ``seed``), from its epoch checkpoint when resuming; save the
        model and the finished-job record; return its logits (eval split at the selected and at the last
        epoch, validation split at the selected epoch).

        The method trains with its own settings (``method_overrides``), and with ``trial`` (a tag of
        ``self.trials``, which maps tags to dotted overrides) with those on top: a tuning trial, whose files
        go to ``OUT/trials/<tag>/`` and which saves no model.

        A student whose loss becomes NaN or infinite (``loop.check_finite``) is stopped there: its record
        (``jobs/``) then holds ``diverged`` (``epoch``, ``what``, ``message``) and no logits, no model is saved,
        and what is reported leaves it out (``results.diverged_methods``)."""
        method_name = split_job_name(name)[0]
        cfg = self.job_config(name, trial)
        splits, teacher, cache = self.ready(device)
        stream = job_stream(name)
        seed_everything(derive_seed(seed, "init", stream))  # same student initialisation for every method of this seed
        student = _build(cfg, self.data, self.student_mods, self.stats).to(device)
        method_cls = METHODS.get(method_name)
        if cfg.distill.init_from_teacher and method_cls.needs_teacher:
            init_from_teacher(student, teacher)
        method = build_method(method_name, student, teacher, cfg.distill, splits["train"].labels).to(device)
        folder = self.folder / "trials" / trial if trial else self.folder
        ckpt_path, job_path = job_files(folder, name, seed)
        main = distributed.current().is_main
        teacher_digest = self.teacher_digest if method_cls.needs_teacher else ""
        try:
            res = fit(method, splits["train"], splits["val"], cfg.train, seed, desc=f"{name} seed {seed}",
                      progress=progress, teacher_cache=cache if method_cls.needs_teacher else None,
                      checkpoint=ckpt_path, resume=self.resume, on_epoch=on_epoch, stream=stream,
                      network=f"student {name} seed {seed}" + (f" of tuning trial {trial}" if trial else ""),
                      metrics=None if trial else metrics_file(folder, name, seed),
                      events=None if trial or not writes_tensorboard(self.cfg) else
                      folder / "tensorboard" / f"{name}-seed{seed}")
        except TrialPruned as exc:  # a tuning trial stopped early by the pruner: no score, no model
            if main:
                ckpt_path.unlink(missing_ok=True)
            return {"pruned": {"epoch": exc.epoch}, "epochs": exc.epoch, "companions": {}}
        except TrainingDiverged as exc:  # recorded as finished (a --resume does not train it again), with no model
            r = {"diverged": {"epoch": exc.epoch, "what": exc.what, "message": str(exc)}, "epochs": exc.epoch,
                 "world_size": distributed.current().world_size, "teacher": teacher_digest, "companions": {}}
            if main:
                atomic_torch_save(r, job_path)
                ckpt_path.unlink(missing_ok=True)
            return r
        if main and not trial:
            atomic_torch_save(
                {"model": res.best_state, "modalities": self.student_mods, "method": name, "seed": seed,
                 "best_epoch": res.best_epoch, "history": res.history, **model_meta(self.data, cfg)},
                self.folder / "models" / f"{name}-seed{seed}.pt",
            )
        # a learned ensemble weight is fitted on the members' training-split logits (results.fit_ensemble_weight);
        # a tuning trial reports no ensemble
        train = trial is None and self.cfg.distill.ensemble_weight == "learned"
        r = {**self._logits(student, splits, res.best_state, res.last_state, train), "best_epoch": res.best_epoch,
             "val_loss": res.history[res.best_epoch - 1]["val_loss"], "epochs": len(res.history),
             "world_size": distributed.current().world_size,
             "teacher": teacher_digest, "companions": {}}
        for part in method.companions:  # networks deployed beside the student (distill.base), at its selected epoch
            net, sub = getattr(method, part), f"{name}.{part}"
            r["companions"][part] = self._logits(net, splits, res.best_companions[part], res.last_companions[part],
                                                 train)
            if main and not trial:
                atomic_torch_save(
                    {"model": res.best_companions[part], "modalities": self.student_mods, "method": sub, "seed": seed,
                     "best_epoch": res.best_epoch, "history": res.history, **model_meta(self.data, cfg)},
                    self.folder / "models" / f"{sub}-seed{seed}.pt")
            if main:
                atomic_torch_save({**r["companions"][part], "best_epoch": res.best_epoch, "companion_of": name},
                                  job_files(folder, sub, seed)[1])
        if main:
            atomic_torch_save(r, job_path)  # the job is finished once this file exists
            ckpt_path.unlink(missing_ok=True)
        return _numpy_logits(r)


LOGIT_KEYS = ("logits", "logits_last", "val_logits", "train_logits")


def _numpy_logits(r: dict) -> dict:
    out = {**r, **{k: r[k].numpy() for k in LOGIT_KEYS if r.get(k) is not None}}
    if r.get("companions"):
        out["companions"] = {part: _numpy_logits(c) for part, c in r["companions"].items()}
    return out


def with_companions(done: dict) -> dict:
    """The finished jobs' records plus one per companion network (``job.part``, seed): what ensembles such as
    ``hallucination-fusion`` sum (``distill.member_job``)."""
    out = dict(done)
    for (name, seed), r in done.items():
        for part, c in (r.get("companions") or {}).items():
            out[(f"{name}.{part}", seed)] = {**c, "best_epoch": r.get("best_epoch")}
    return out


def load_job(path: Path) -> dict:
    """The record a finished student job wrote (its logits as NumPy arrays; a diverged job's has none)."""
    try:
        r = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"finished-job file '{path}' cannot be read ({type(exc).__name__}); delete it to retrain that job") from None
    if "val_logits" not in r and "diverged" not in r:
        raise UserError(f"finished-job file '{path}' was written by an older mmhal (no validation logits); "
                        "start the run again without --resume")
    return _numpy_logits(r)

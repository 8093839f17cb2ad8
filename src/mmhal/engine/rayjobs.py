"""Student jobs on a Ray cluster (``mmhal run --executor ray``): each job a Ray task with its resources.

The driver (this process) connects to the cluster (``--ray-address``, else Ray's usual ``RAY_ADDRESS``, else a Ray
instance it starts on this machine), puts the job context (the data, the teacher's weights, the settings) into
Ray's object store once, and submits one task per student job, ``(method, seed)``: ``train.threads`` CPUs (the
same thread count the local executor gives each worker, so a job computes the same numbers) and, with a CUDA
device, one GPU. Every task writes into the run folder as a local worker does (its epoch checkpoints, the model,
the finished-job record), so the cluster's nodes must share the run folder's file system (one machine, or a
network file system); the driver collects the records and reports as the local executor does.

A task whose worker dies (a killed process, a lost node) is retried by Ray (``RETRIES`` times) and resumes from
the job's last epoch checkpoint: the run's work folder is new, so a checkpoint found there was written by an
earlier attempt of the same job. An error in the job itself is not retried: a UserError is raised as it is,
another as ``jobs.JobFailed``. Ctrl-C cancels every task (their checkpoints stay for ``--resume``).
"""
from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from .jobs import JobFailed, report_job, train_threads

if TYPE_CHECKING:
    from .run import JobContext

#: how often Ray runs a job again whose worker process died
RETRIES = 3


def _train_on_ray(ctx: JobContext, name: str, seed: int, threads: int, cuda: bool) -> dict:
    """One student job in a Ray worker: the same ``train_student`` as a local worker, resuming from the job's epoch
    checkpoint when an earlier attempt left one."""
    torch.set_num_threads(threads)
    ctx.resume = True  # the work folder is this run's: a checkpoint in it is an earlier attempt's of this job
    return ctx.train_student(name, seed, torch.device("cuda" if cuda else "cpu"), progress=False)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed: pip install \"mmhal[ray]\"") from None
    return ray


def check_cluster(address: str = "") -> None:
    """Before anything trains: a UserError when Ray is not installed, or when nothing answers at ``address``
    (``host:port``; Ray itself would wait minutes for it). ``auto``, ``ray://...`` and no address are left to Ray."""
    _import_ray()
    address = address or os.environ.get("RAY_ADDRESS", "")
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--ray-address must be host:port (the Ray head's GCS port, 6379 by default), got '{address}'")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at '{address}' ({exc.strerror or type(exc).__name__}); start one "
                        f"with `ray start --head` or give its address") from None


def run_jobs(ctx: JobContext, jobs, workers: int, device, log, y_eval, address: str = "") -> dict:
    """Train every job ``(name, seed)`` as a Ray task; ``{job: record}`` as ``jobs.run_jobs`` returns it."""
    ray = _import_ray()
    if not jobs:
        return {}
    started = not ray.is_initialized()
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at '{address}'" if address else "(RAY_ADDRESS, or a new local instance)"
        raise UserError(f"cannot connect to a Ray cluster {where}: {str(exc).splitlines()[0]}") from None
    done: dict = {}
    bar = None
    pending: list = []
    try:
        cuda = device.type == "cuda"
        if cuda and ray.cluster_resources().get("GPU", 0) < 1:
            raise UserError("--device cuda with --executor ray needs a GPU in the Ray cluster, and it has none")
        threads = train_threads(ctx.cfg, ctx.macs, workers)
        task = ray.remote(_train_on_ray).options(num_cpus=threads, num_gpus=1 if cuda else 0, max_retries=RETRIES,
                                                 retry_exceptions=False)
        log(f"Ray: {len(jobs)} student tasks ({threads} CPU{'s' if threads > 1 else ''}{', 1 GPU' if cuda else ''} "
            f"each) on a cluster of {int(ray.cluster_resources().get('CPU', 0))} CPUs")
        ctx_ref = ray.put(ctx)
        refs = {task.remote(ctx_ref, name, seed, threads, cuda): (name, seed) for name, seed in jobs}
        bar = tqdm(total=len(refs), desc="students (Ray)", unit="student", disable=not ctx.cfg.progress,
                   dynamic_ncols=True)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in ready:
                job = refs[ref]
                done[job] = r = _result(ray, ref, job)
                report_job(log, ctx.eval_split, y_eval, job[0], job[1], r)
                bar.update(1)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        if started:
            ray.shutdown()  # disconnect (and stop the local instance this run started)
    return done


def _result(ray, ref, job) -> dict:
    """A finished task's record; its error raised again: a UserError as it is, another as ``JobFailed``."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise JobFailed(f"student {job[0]} seed {job[1]} failed in a Ray task:\n{exc}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
        raise JobFailed(f"student {job[0]} seed {job[1]}: its Ray worker died {RETRIES + 1} times "
                        f"({type(exc).__name__}); the finished students and epoch checkpoints are kept") from None

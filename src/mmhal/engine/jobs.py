"""Student jobs in parallel: a pool of worker processes on the CPU (or the jobs one after another in this
process), with a progress bar over every epoch of every job, and a clean stop: on Ctrl-C or a failing
job the queued jobs are cancelled and the workers (and their DataLoader processes) are killed at once
(their epoch checkpoints stay for ``--resume``). Used by ``engine.run`` and ``engine.tune``.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Optional

import torch
from tqdm.auto import tqdm

from ..errors import TrialPruned, UserError, machine_limit
from ..metrics import accuracy
from ..utils import require_open_files, return_freed_memory, usable_cpus
from . import distributed
from .loop import planned_epochs
from .runfolder import STOP_SIGNALS, sigint_held

if TYPE_CHECKING:
    from ..config import RunConfig
    from .run import JobContext


def reads_samples(cfg: RunConfig, data) -> bool:
    """Whether batches are assembled sample by sample (files, or augmentation): many short-lived batch buffers."""
    return not data.in_memory or cfg.data.augment.active


def resolve_workers(cfg, device, n_jobs: int, in_memory: bool = True) -> int:
    """Parallel student trainings: on CPU, small models train faster as several 1-thread processes.
    Under torchrun there is one: the ranks of the job already divide the work; for data on disk there is
    one unless ``workers`` says otherwise (its DataLoader processes use the cores)."""
    if device.type != "cpu" or n_jobs < 2 or distributed.current().enabled:
        return 1
    if not in_memory and cfg.workers <= 0:  # data on disk: one job at a time, fed by its DataLoader workers
        return 1
    w = cfg.workers if cfg.workers > 0 else min(2, usable_cpus())
    return max(1, min(w, n_jobs))


#: below this many multiply-accumulates per sample a network trains fastest on one thread per process, on an idle
#: machine as on a busy one (benchmarks/threads.py): its steps are many small operations, whose threads wait for
#: each other, and wait for the slowest one when other jobs share the cores (the default demo's teacher: 16 s on
#: one thread, 136 s on two, with two other jobs on the 2 cores). The networks of vectors and sequences are far
#: below it (HAPT's teacher 0.8 M), those of images and clips far above (the face model 951 M).
SMALL_NETWORK_MACS = 20_000_000


def train_threads(cfg, macs: Optional[int] = None, processes: int = 1) -> int:
    """Torch threads of each of ``processes`` training processes: ``train.threads``; else 1 for a small network
    (``macs`` per sample below ``SMALL_NETWORK_MACS``); else the CPUs this process may use (``utils.usable_cpus``:
    affinity and cgroup quota, not the machine's count) shared among the processes. A fixed function of the
    machine and the network, never of the machine's load: the thread count changes CPU reductions, and a run
    must repeat its own figures exactly."""
    if cfg.train.threads > 0:
        return cfg.train.threads
    if macs is not None and macs < SMALL_NETWORK_MACS:
        return 1
    return max(1, usable_cpus() // processes)


_WORKER_CTX: Optional[JobContext] = None


def _exit_with_parent() -> None:
    """End this worker as soon as the parent process is gone (killed): an orphan would go on training and
    writing into the run folder, racing a ``--resume`` of the same run."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_WORKER_QUEUE = None


def _worker_init(ctx: JobContext, threads: int, queue=None) -> None:
    global _WORKER_CTX, _WORKER_QUEUE
    # Ctrl-C, SIGTERM and SIGHUP are the parent's to handle (it stops the workers; a scheduler signals the whole
    # process group): a worker ignores them, and so do the DataLoader processes it starts. It started with them
    # blocked (``run_jobs``), so none arrived before this.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # tqdm would otherwise make a multiprocessing lock here, which a killed worker cannot give back (the
    # resource tracker then warns of "leaked semaphore objects"); a worker shows no bars of its own.
    tqdm.set_lock(threading.RLock())
    _exit_with_parent()
    if reads_samples(ctx.cfg, ctx.data):
        return_freed_memory()
    torch.set_num_threads(threads)
    _WORKER_CTX, _WORKER_QUEUE = ctx, queue


def _worker_job(name: str, seed: int, trial: Optional[str] = None, settings: Optional[dict] = None,
                stop: Optional[str] = None) -> dict:
    """Train one student in this worker. A tuning trial made after the workers started brings its ``settings``;
    ``stop``: a file whose appearance (the parent's pruner) ends the job after the epoch it finishes."""
    assert _WORKER_CTX is not None
    if trial is not None and settings is not None:
        _WORKER_CTX.trials[trial] = settings
    on_epoch = None
    if _WORKER_QUEUE is not None or stop is not None:
        def on_epoch(epoch: int, rec: dict) -> None:  # progress (and the pruner's figures) for the parent
            if _WORKER_QUEUE is not None:
                loss = sum(v for k, v in rec.items() if k not in ("epoch", "val_loss", "val_acc"))
                _WORKER_QUEUE.put((name, seed, rec["epoch"], loss, rec["val_acc"], trial))
            if stop is not None and os.path.exists(stop):
                raise TrialPruned(rec["epoch"])
    return _WORKER_CTX.train_student(name, seed, torch.device("cpu"), progress=False, on_epoch=on_epoch, trial=trial)


def report_job(log, eval_split, y_eval, name, seed, r) -> None:
    """One line per finished student: its accuracy, or for one that diverged (``train_student``) the sentence
    that says where and what to change."""
    if "diverged" in r:
        log(f"warning: {r['diverged']['message']}; it is left out of the results")
        return
    if "pruned" in r:
        log(f"{name:>10s} seed {seed}: pruned after epoch {r['pruned']['epoch']} (its trial's validation curve was behind)")
        return
    acc = accuracy(y_eval, r["logits"].argmax(1))
    log(f"{name:>10s} seed {seed}: {eval_split} acc {acc:.4f} (best epoch {r['best_epoch']}, val loss {r['val_loss']:.4f})")


class JobFailed(Exception):
    """A student job failed in a worker process; the message names the job and holds the worker's traceback
    (the CLI prints it once and exits with code 1)."""


class WorkerPool:
    """Worker processes kept across several ``run_jobs`` calls (``mmhal tune``'s waves of trials): started once with
    ``ctx`` (spawned, each importing torch and unpickling the data: seconds per worker), reused by every call, and
    ``close``d at the end; ``run_jobs`` stops it at once on Ctrl-C or a failing job."""

    def __init__(self, ctx: JobContext, workers: int, queue: bool):
        require_open_files(workers, f"{workers} student worker processes (workers)")
        mp = multiprocessing.get_context("spawn")
        with sigint_held():
            # multiprocessing's resource tracker starts with the first queue and keeps the signal mask it started
            # with: SIGHUP held back, a hangup of the whole process group cannot end it (it ignores only SIGINT and
            # SIGTERM itself; one that died made its successor print a KeyError per semaphore after mmhal's last line)
            self.queue = mp.Queue() if queue else None
            self.pool = ProcessPoolExecutor(workers, mp_context=mp, initializer=_worker_init,
                                            initargs=(ctx, train_threads(ctx.cfg, ctx.macs, workers), self.queue))
        self.stopped = False

    def stop(self) -> None:
        """Kill the workers now (Ctrl-C, a failed job)."""
        if not self.stopped:
            self.stopped = True
            _stop_pool(self.pool)
            self._close_queue()

    def close(self) -> None:
        """Let the idle workers end (after the last call)."""
        if not self.stopped:
            self.stopped = True
            self.pool.shutdown(wait=True)
            self._close_queue()

    def _close_queue(self) -> None:
        if self.queue is not None:
            self.queue.close()
            self.queue.cancel_join_thread()


def run_jobs(ctx: JobContext, jobs, workers: int, device, log, y_eval, trials: Optional[dict] = None,
             on_epoch=None, pool: Optional[WorkerPool] = None) -> dict:
    """Train every job, ``(name, seed)`` or ``(name, seed, trial tag)``; ``{job: record}``.

    ``trials``: the settings of tuning trials made after ``ctx`` was (tag -> dotted overrides), sent with their
    jobs. ``on_epoch(job, epoch, val_acc)``, called as each job finishes an epoch, returns True to stop that
    job's trial there (a pruned trial: its jobs' records hold ``pruned``).

    With several workers, Ctrl-C (KeyboardInterrupt in this process) or a job's error stops every worker at
    once: queued jobs are cancelled and the worker processes killed (what they trained so far is in their
    epoch checkpoints). A job's UserError is raised again as it is; another error as ``JobFailed``.

    ``pool``: a ``WorkerPool`` of ``workers`` processes to use (and leave running) instead of starting one for this
    call; its workers got ``ctx`` when they started, so the settings of later trials travel with their jobs."""
    done: dict = {}
    trials = trials or {}
    ctx.trials.update(trials)

    def report(job, r):
        report_job(log, ctx.eval_split, y_eval, job[0] if len(job) == 2 else f"{job[0]} {job[2]}", job[1], r)

    def stop_file(job) -> Optional[str]:
        return None if on_epoch is None or len(job) < 3 else str(ctx.folder / "trials" / job[2] / "PRUNED")

    def job_args(job) -> tuple:
        """``_worker_job``'s arguments: a trial made after the workers started brings its settings and stop file."""
        if len(job) > 2 and job[2] in trials:
            return (*job, trials[job[2]], stop_file(job))
        return tuple(job)

    if not jobs:
        return done
    if workers == 1:
        for job in jobs:
            hook = None
            if on_epoch is not None:
                def hook(epoch, rec, job=job):
                    if on_epoch(job, rec["epoch"], rec["val_acc"]):
                        raise TrialPruned(rec["epoch"])
            done[job] = r = ctx.train_student(*job[:2], device, ctx.cfg.progress, on_epoch=hook,
                                              trial=job[2] if len(job) > 2 else None)
            report(job, r)
        return done
    own = pool is None
    workers_pool = pool if pool is not None else WorkerPool(ctx, workers, ctx.cfg.progress or on_epoch is not None)
    queue = workers_pool.queue
    bar = None
    try:
        # The workers are started (on the first submissions) with SIGINT blocked, so that a Ctrl-C while they
        # start reaches this process alone; one that comes meanwhile is handled here once it is unblocked.
        with sigint_held():
            futures = {workers_pool.pool.submit(_worker_job, *job_args(job)): job for job in jobs}
        # One bar over every epoch of every student; its postfix shows the latest epoch any worker finished.
        n_train = len(ctx.data.indices("train"))
        tcfgs = [ctx.job_config(job[0], job[2] if len(job) > 2 else None).train for job in jobs]
        total = sum(planned_epochs(t, -(-n_train // t.batch_size)) for t in tcfgs)
        bar = tqdm(total=total, desc=f"students ({workers} workers)", unit="ep",
                   disable=not ctx.cfg.progress, dynamic_ncols=True)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(queue, bar, on_epoch, stop_file)
            for fut in finished:
                job = futures[fut]
                done[job] = r = _job_result(fut, job)
                report(job, r)
        _drain(queue, bar, on_epoch, stop_file)
        bar.n = bar.total
    except BaseException:
        workers_pool.stop()
        raise
    else:
        if own:
            workers_pool.close()
    finally:
        if bar is not None:
            bar.close()
    return done


def _job_result(fut, job) -> dict:
    """The record of a finished job's future; its error raised again: a UserError as it is (one sentence),
    another as ``JobFailed`` with the worker's traceback."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return fut.result()
    except UserError:
        raise
    except BrokenProcessPool:
        raise JobFailed(f"a worker process ended abruptly (killed, or out of memory) while it trained student {job[0]} "
                        f"seed {job[1]}; the finished students and epoch checkpoints are kept") from None
    except Exception as exc:
        why = machine_limit(exc)  # a full disk, too few open files, memory: one sentence, not the worker's traceback
        if why is not None:
            raise UserError(f"student {job[0]} seed {job[1]} stopped: {why}") from None
        remote = getattr(exc.__cause__, "tb", None)  # the worker's traceback, as concurrent.futures passes it on
        text = remote.strip().strip('"').strip() if isinstance(remote, str) else "".join(traceback.format_exception(exc))
        what = f"{job[0]} {job[2]}" if len(job) > 2 else job[0]
        raise JobFailed(f"student {what} seed {job[1]} failed in a worker process:\n{text}") from None


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and theirs (Linux ``/proc``; none found elsewhere)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in map(int, f.read().split()):
                    found += [child, *_descendants(child)]
    except (OSError, ValueError):
        pass
    return found


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: cancel its queued jobs and kill its worker processes and the DataLoader processes
    they started, rather than wait for the running jobs to end."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    victims = [pid for p in procs if p.pid is not None for pid in (*_descendants(p.pid), p.pid)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.join(timeout=2)
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=2)  # it notices the dead workers and ends


def _drain(queue, bar, on_epoch=None, stop_file=None) -> None:
    """Move the workers' per-epoch reports onto the parent's progress bar, and to ``on_epoch`` (the pruner): when it
    says stop, the trial's stop file (``stop_file``) is made, which its jobs' workers check after every epoch."""
    if queue is None:
        return
    while True:
        try:
            name, seed, epoch, loss, val_acc, trial = queue.get_nowait()
        except Exception:  # queue.Empty
            return
        bar.update(1)
        bar.set_postfix_str(f"{name} seed {seed} ep {epoch}: loss {loss:.3f} val_acc {val_acc:.3f}")
        if on_epoch is not None and trial is not None:
            job = (name, seed, trial)
            if on_epoch(job, epoch, val_acc):
                path = stop_file(job)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()

"""The machine's limits and a user's repeated options end in one sentence and exit 2, never a traceback, and leave
nothing half-written that a later command accepts: a full disk under --out or the cache, a file-size limit, too
few open files for the worker processes, a size typo that asks for hundreds of gigabytes, a locale that is not
UTF-8, a negative seed, an option, override or YAML key given twice; thread and worker counts follow the CPUs the
process may use; --resume checks the settings the run started with and its data before anything trains."""
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmhal.engine.run as run_mod
from mmhal.cli import main
from mmhal.config import RunConfig
from mmhal.data.npz import save_npz
from mmhal.engine.jobs import SMALL_NETWORK_MACS, resolve_workers, train_threads
from mmhal.errors import UserError, machine_limit
from mmhal.utils import cgroup_cpu_limit, usable_cpus
from test_cli_run import _tiny

BASE = ["--student", "weak", "--no-progress", "model.width=4", "train.batch_size=32", "workers=1"]


def _one_sentence(rc, err, *words):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], err


def _main(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.err


# ------------------------------------------------------------------------------------- given twice


@pytest.mark.parametrize("argv, words", [
    (["run", "--config", "a.yaml", "--config", "b.yaml"], ["--config is given twice ('a.yaml', then 'b.yaml')"]),
    (["run", "--methods", "kd", "--methods", "mmh"], ["--methods is given twice ('kd', then 'mmh')"]),
    (["run", "--epochs", "3", "--epochs", "3"], ["--epochs is given twice"]),
    (["run", "train.lr=1", "train.lr=2"], ["the setting train.lr is given twice (train.lr=1 and train.lr=2)"]),
    (["run", "train={lr: 1}", "train.lr=2"], ["the setting train.lr is given twice"]),
    (["run", "--epochs", "5", "train.epochs=3"], ["--epochs and the override train.epochs=3 both set train.epochs"]),
    (["run", "--seeds", "3", "seeds=3"], ["--seeds and the override seeds=3 both set seeds"]),
    (["run", "--no-progress", "progress=true"], ["--no-progress and the override progress=true"]),
    (["tune", "--trials", "2", "--trials", "3"], ["--trials is given twice"]),
    (["predict", "RUN", "--data", "a.npz", "--data", "b.npz"], ["--data is given twice"]),
    (["export", "RUN", "--seed", "1", "--seed", "2"], ["--seed is given twice ('1', then '2')"]),
    (["report", "RUN", "--out", "a", "--out", "b"], ["--out is given twice"]),
])
def test_an_option_or_override_given_twice_is_one_sentence(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    _one_sentence(*_main(capsys, *argv), *words)
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def test_a_yaml_recipe_with_a_key_twice_is_one_sentence_naming_the_key_and_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 0.1\nseeds: [1]\ntrain:\n  epochs: 3\n")
    _one_sentence(*_main(capsys, "run", "--config", str(recipe)), "the key 'train' appears twice", "line 4")
    recipe.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    _one_sentence(*_main(capsys, "run", "--config", str(recipe)), "the key 'lr' appears twice", "line 3")
    _one_sentence(*_main(capsys, "run", "train={lr: 1, lr: 2}"), "config key 'train'", "'lr' appears twice")


def test_a_large_seed_is_kept_exactly_and_the_largest_allowed_is_allowed():
    from mmhal.config import load_config

    assert load_config(None, [f"seeds=[{2**53 + 1}]"]).seeds == [2**53 + 1]  # a float would make it 2**53
    assert load_config(None, [f"seeds=[{2**53 + 1}, 7]"]).seeds == [2**53 + 1, 7]
    assert load_config(None, [f"seeds=[{2**63 - 1}]"]).seeds == [2**63 - 1]
    assert load_config(None, ["seeds=[1e3]", "train.epochs=2.0"]).seeds == [1000]
    with pytest.raises(UserError, match="expects an exact integer, got '2e20'"):
        load_config(None, ["seeds=2e20"])


def test_a_link_as_out_of_run_or_tune_is_refused_naming_the_folder_it_points_to(tmp_path, capsys, finished_run):
    link = tmp_path / "link"
    link.symlink_to(finished_run)
    before = {p.name for p in finished_run.iterdir()}
    for argv in (["run", "--out", str(link), "--overwrite"], ["run", "--out", str(link), "--resume"],
                 ["tune", "--out", str(link)]):
        _one_sentence(*_main(capsys, *argv), f"--out '{link}' is a link (to '{finished_run}'); give the folder itself")
    assert link.is_symlink() and {p.name for p in finished_run.iterdir()} == before


@pytest.mark.parametrize("override, key", [("seeds=[0,-1]", "seeds holds -1"), ("teacher_seed=-1", "teacher_seed holds -1"),
                                           ("data.split_seed=-3", "data.split_seed holds -3"),
                                           (f"seeds=[{2**64}]", f"seeds holds {2**64}")])
def test_a_seed_must_lie_in_0_to_2_63(tmp_path, capsys, override, key):
    _one_sentence(*_main(capsys, "run", "--out", str(tmp_path / "r"), override), key, "from 0 to 2**63 - 1")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------- limits, one by one


def test_machine_limit_names_each_limit_and_what_to_do(tmp_path, monkeypatch):
    full = machine_limit(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert full.startswith("no space is left on the device (") and str(tmp_path) in full and "--out" in full
    assert "quota" not in full and machine_limit(OSError(errno.EDQUOT, "Disk quota exceeded")).startswith("no space")
    assert "file-size limit (ulimit -f)" in machine_limit(OSError(errno.EFBIG, "File too large"))
    files = machine_limit(OSError(errno.EMFILE, "Too many open files"))
    assert "(ulimit -n)" in files and "workers=1 train.loader_workers=0" in files
    # what PyTorch's DataLoader and its shared-memory code raise, where only the text survives
    assert "(ulimit -n)" in machine_limit(RuntimeError("unable to open shared memory object </torch_1> in read-write "
                                                        "mode: Too many open files (24)"))
    assert "(ulimit -n)" in machine_limit(RuntimeError("received 0 items of ancdata"))
    long = machine_limit(OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300))
    assert long.startswith("a file or folder name is longer than the file system allows") and "shorter" in long
    alloc = machine_limit(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                                       "memory: you tried to allocate 400000000000 bytes. Error code 12"))
    assert alloc.startswith("out of memory (this machine has ") and "asked for 372.5 GiB" in alloc
    assert "model.width" in alloc and "train.batch_size" in alloc
    assert machine_limit(MemoryError()).startswith("out of memory")
    gpu = machine_limit(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert gpu.startswith("out of GPU memory")
    # torch.save's writer: a short write without an errno
    short = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr("mmhal.errors._limit", lambda name: None)
    assert machine_limit(short, tmp_path).startswith("the write stopped short, so the disk may be full (")
    monkeypatch.setattr("mmhal.errors._limit", lambda name: 30000 if name == "FSIZE" else None)
    assert "file-size limit (ulimit -f, 30000 bytes)" in machine_limit(short)
    # text the locale cannot hold: only under a locale that is not UTF-8 (else it would be a bug, shown as one)
    bad = UnicodeEncodeError("ascii", "±", 0, 1, "ordinal not in range(128)")
    monkeypatch.setattr("locale.getpreferredencoding", lambda do_setlocale=True: "ANSI_X3.4-1968")
    assert "UTF-8 locale (e.g. LC_ALL=C.UTF-8) or with PYTHONUTF8=1" in machine_limit(bad)
    monkeypatch.setattr("locale.getpreferredencoding", lambda do_setlocale=True: "UTF-8")
    assert machine_limit(bad) is None
    for other in (ValueError("x"), RuntimeError("a bug"), KeyError("k"), OSError(errno.ENOENT, "No such file")):
        assert machine_limit(other) is None


def _fsize_limit(n: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return limit


def test_an_atomic_write_that_hits_a_file_size_limit_is_one_sentence_and_leaves_no_file(tmp_path):
    """In a child process (the limit is the process's): torch.save and text writes past ``ulimit -f``."""
    code = (f"import sys, torch; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from mmhal.utils import atomic_torch_save, atomic_write_text\n"
            "from mmhal.errors import UserError\n"
            "for write in (lambda: atomic_torch_save({'w': torch.zeros(100000)}, sys.argv[1] + '/a.pt'),\n"
            "              lambda: atomic_write_text(sys.argv[1] + '/b.txt', 'x' * 100000)):\n"
            "    try:\n        write()\n    except UserError as exc:\n        print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], preexec_fn=_fsize_limit(20000),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].startswith(f"'{tmp_path}/a.pt' cannot be written: a file would grow past") and "ulimit -f" in lines[0]
    assert lines[1].startswith(f"'{tmp_path}/b.txt' cannot be written: a file would grow past")
    assert list(tmp_path.iterdir()) == [], "no half-written file is left"


def _cli(args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "mmhal", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, **kw)


@pytest.mark.slow
def test_a_run_that_fills_the_disk_is_one_sentence_and_leaves_nothing_that_report_accepts(tmp_path):
    data = _tiny(tmp_path / "tiny.npz")
    args = ["run", "--data", str(data), "--seeds", "2", "--epochs", "2", *BASE]
    # the teacher's cache entry does not fit: nothing trained, no folder
    done = _cli([*args, "--out", str(tmp_path / "a")], env={"MMHAL_CACHE": str(tmp_path / "cache")},
                preexec_fn=_fsize_limit(6000))
    _one_sentence(done.returncode, done.stderr.splitlines()[-1])
    assert "cannot be written: a file would grow past" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "a").exists()
    # the teacher is cached; its copy in the run fits (about 60 kB), a student's epoch checkpoint (weights and
    # optimiser state) does not
    assert _cli([*args, "--out", str(tmp_path / "warm")], env={"MMHAL_CACHE": str(tmp_path / "cache")}).returncode == 0
    done = _cli([*args, "--out", str(tmp_path / "b")], env={"MMHAL_CACHE": str(tmp_path / "cache")},
                preexec_fn=_fsize_limit(100_000))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mmhal: error: '") and "cannot be written: a file would grow past" in last, done.stderr
    assert "teacher: loaded from cache" in done.stderr
    assert not (tmp_path / "b" / "results.json").exists()
    if (tmp_path / "b").exists():  # kept only for --resume; not a run that report accepts
        rep = _cli(["report", str(tmp_path / "b"), "--no-progress"])
        assert rep.returncode == 2 and "Traceback" not in rep.stderr, rep.stderr


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.slow
def test_a_full_disk_under_out_or_the_cache_is_one_sentence(tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "200k"):
        pytest.skip("a small file system cannot be mounted here (needs root and mount)")
    try:
        data = _tiny(tmp_path / "tiny.npz")
        args = ["run", "--data", str(data), "--seeds", "1", "--epochs", "1", "--student", "weak", "--no-progress",
                "model.width=64", "workers=1"]
        done = _cli([*args, "--out", str(tmp_path / "r")], env={"MMHAL_CACHE": str(disk / "cache")})
        _one_sentence(done.returncode, done.stderr.splitlines()[-1], "cannot be written: the write stopped short, so "
                      "the disk may be full (", "cache_dir or $MMHAL_CACHE")
        assert "Traceback" not in done.stderr
        done = _cli([*args, "--out", str(disk / "r")], env={"MMHAL_CACHE": str(tmp_path / "cache")})
        assert done.returncode == 2 and "the disk may be full" in done.stderr and "Traceback" not in done.stderr
        assert not (disk / "r").exists()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _nofile_limit(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@pytest.mark.slow
@pytest.mark.parametrize("flags, words", [
    (["workers=2"], "too few for 2 student worker processes (workers)"),
    (["train.loader=workers", "train.loader_workers=2"], "DataLoader worker process(es) (train.loader_workers)"),
])
def test_too_few_open_files_for_the_workers_is_one_sentence_before_they_start(tmp_path, flags, words):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--seeds", "2", "--epochs", "1", "--student", "weak", "--no-progress",
            "model.width=4", "train.batch_size=16", "--out", str(tmp_path / "r")]
    if "train.loader=workers" in flags and usable_cpus() < 2:
        words = "1 DataLoader worker process(es)"
    done = _cli([*base, *flags], preexec_fn=_nofile_limit(24))
    _one_sentence(done.returncode, done.stderr.strip().splitlines()[-1], "this process may open only 24 files at once "
                  "(ulimit -n)", words, "workers=1 train.loader_workers=0")
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
    # what the sentence suggests works under the same limit
    done = _cli([*base, "workers=1", "train.loader_workers=0"], preexec_fn=_nofile_limit(24))
    assert done.returncode == 0, done.stderr


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path):
    code = "import resource; from mmhal.cli import _more_open_files; _more_open_files(); " \
           "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 512)))
    assert done.stdout.strip() == "512", done.stderr


def test_a_size_typo_that_asks_for_hundreds_of_gigabytes_is_one_sentence(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    rc, err = _main(capsys, "run", "--data", str(data), "--out", str(tmp_path / "r"), "--student", "weak",
                    "--no-progress", "model.width=300000", "--epochs", "1", "--seeds", "1")
    _one_sentence(rc, err, "out of memory (this machine has ", "GiB; a size setting may be far too large (model.width")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_locale_that_is_not_utf8_runs_to_the_end_and_every_command_writes_utf8(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 3, n)
    weak = rng.normal(size=(n, 2, 16)).astype(np.float32)
    weak[:, 0] += y[:, None]
    strong = rng.normal(size=(n, 5)).astype(np.float32)
    strong[np.arange(n), y] += 3
    data = tmp_path / "tiny.npz"
    save_npz(data, {"weak": weak, "strong": strong}, y, groups=np.arange(n) // 6, class_names=["café", "naïve", "日本"])
    ascii_env = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    out = tmp_path / "run"
    done = _cli(["run", "--data", str(data), "--seeds", "2", "--epochs", "1", "--out", str(out), *BASE], env=ascii_env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "\\xb1" in done.stdout and "recommendation" in done.stdout  # the table's ± escaped, not a crash
    pred = _cli(["predict", str(out), "--data", str(data), "--out", str(tmp_path / "p.csv"), "--no-progress"],
                env=ascii_env)
    assert pred.returncode == 0, pred.stderr
    assert (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()[0].startswith("pred,pred_name,p_café,p_naïve,p_日本")
    exp = _cli(["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "ex")], env=ascii_env)
    assert exp.returncode == 0, exp.stderr
    assert "café" in (tmp_path / "ex" / "model_card.md").read_text(encoding="utf-8")
    # a run folder whose name the locale cannot encode: every exporter's file goes through memory
    moved = tmp_path / "rün-日本"
    shutil.copytree(out, moved)
    for fmt in ("onnx", "torchscript"):
        exp = _cli(["export", str(moved), "--format", fmt], env=ascii_env)
        assert exp.returncode == 0 and "Traceback" not in exp.stderr, exp.stderr[-2000:]
    assert len(list((moved / "export").iterdir())) == 2


# ------------------------------------------------------------------------------------- CPUs, threads, workers


def _cgroups(tmp_path: Path, lines: str, files: dict) -> tuple[str, str]:
    tmp_path.mkdir()
    proc = tmp_path / "cgroup"
    proc.write_text(lines)
    for rel, text in files.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text)
    return str(proc), str(tmp_path / "fs")


def test_cgroup_cpu_limit_reads_v1_and_v2_quotas_along_the_hierarchy(tmp_path):
    v2 = _cgroups(tmp_path / "a", "0::/job/step\n", {"cpu.max": "max 100000\n", "job/cpu.max": "150000 100000\n",
                                                      "job/step/cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(*v2) == 1.5
    v1 = _cgroups(tmp_path / "b", "4:memory:/x\n3:cpu,cpuacct:/slurm/job1\n",
                  {"cpu,cpuacct/slurm/job1/cpu.cfs_quota_us": "300000\n",
                   "cpu,cpuacct/slurm/job1/cpu.cfs_period_us": "100000\n",
                   "cpu,cpuacct/slurm/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/slurm/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(*v1) == 3.0
    none = _cgroups(tmp_path / "c", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(*none) is None
    assert cgroup_cpu_limit(str(tmp_path / "missing"), str(tmp_path)) is None


def test_usable_cpus_follows_the_affinity_mask_and_the_quota(monkeypatch):
    code = "from mmhal.utils import usable_cpus; print(usable_cpus())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert done.stdout.strip() == "1", done.stderr
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr("mmhal.utils.cgroup_cpu_limit", lambda: 2.5)
    assert usable_cpus() == 2
    monkeypatch.setattr("mmhal.utils.cgroup_cpu_limit", lambda: 0.5)
    assert usable_cpus() == 1
    monkeypatch.setattr("mmhal.utils.cgroup_cpu_limit", lambda: None)
    assert usable_cpus() == 4


def test_worker_and_thread_counts_follow_the_usable_cpus_and_small_networks_train_on_one_thread(monkeypatch):
    cfg = RunConfig()
    cpu = torch.device("cpu")
    small, large = SMALL_NETWORK_MACS - 1, SMALL_NETWORK_MACS
    monkeypatch.setattr("mmhal.engine.jobs.usable_cpus", lambda: 1)
    assert resolve_workers(cfg, cpu, 15) == 1 and train_threads(cfg, large) == 1
    monkeypatch.setattr("mmhal.engine.jobs.usable_cpus", lambda: 8)
    assert resolve_workers(cfg, cpu, 15) == 2
    assert train_threads(cfg, large) == 8 and train_threads(cfg, large, processes=2) == 4
    assert train_threads(cfg, small) == 1 and train_threads(cfg, small, processes=2) == 1
    assert train_threads(cfg) == 8  # while the data load, before any network is known
    cfg.train.threads, cfg.workers = 3, 5
    assert resolve_workers(cfg, cpu, 15) == 5 and train_threads(cfg, small) == 3 and train_threads(cfg, large, 2) == 3


def test_macs_per_sample_counts_convolutions_and_linear_layers_and_sorts_the_networks():
    from mmhal.config import ModelConfig
    from mmhal.models.network import build_network, macs_per_sample

    net = build_network({"v": (10,)}, ["v"], 3, ModelConfig(width=2))
    total = macs_per_sample(net, {"v": (10,)})
    by_hand = sum((m.in_features * m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear))
    assert total == by_hand > 0  # a network of vectors: linear layers alone, in x out multiply-adds per sample
    hapt = build_network({"acc": (3, 128), "gyro": (3, 128)}, ["acc", "gyro"], 6, ModelConfig())
    face = build_network({"rgb": (3, 112, 112), "depth": (1, 112, 112)}, ["rgb", "depth"], 2,
                         ModelConfig(width=64, blocks=2))
    assert macs_per_sample(hapt, {"acc": (3, 128), "gyro": (3, 128)}) < SMALL_NETWORK_MACS
    assert macs_per_sample(face, {"rgb": (3, 112, 112), "depth": (1, 112, 112)}) > 10 * SMALL_NETWORK_MACS
    assert net.training and hapt.training  # left in the mode they were in


# ------------------------------------------------------------------------------------- --resume checks first


def _interrupted_run(tmp_path, capsys, monkeypatch, data):
    """A run of 2 seeds (unimodal, kd) stopped by Ctrl-C once kd seed 0 has an epoch checkpoint."""
    out = tmp_path / "run"
    real = run_mod.fit

    def fit(*a, **kw):
        if kw.get("desc") == "teacher":
            return real(*a, **kw)

        def after(epoch, rec):
            if (out / "checkpoints" / "kd-seed0.pt").is_file():
                raise KeyboardInterrupt
        return real(*a, **{**kw, "on_epoch": after})

    monkeypatch.setattr(run_mod, "fit", fit)
    rc, err = _main(capsys, "run", "--data", str(data), "--out", str(out), "--methods", "unimodal,kd", "--seeds", "2",
                    "--epochs", "3", *BASE)
    assert rc == 130, err
    monkeypatch.setattr(run_mod, "fit", real)
    return out


def _no_training(monkeypatch):
    def fit(*a, **kw):
        raise AssertionError(f"{kw.get('desc')} trained although the resume is refused")
    monkeypatch.setattr(run_mod, "fit", fit)


@pytest.mark.slow
def test_resume_refuses_an_edited_config_yaml_or_changed_data_before_anything_trains(tmp_path, capsys, monkeypatch):
    data = _tiny(tmp_path / "tiny.npz")
    out = _interrupted_run(tmp_path, capsys, monkeypatch, data)
    marker = json.loads((out / run_mod.MARKER).read_text())
    assert marker["settings"]["distill"]["kd_alpha"] == RunConfig().distill.kd_alpha and len(marker["data"]) == 16
    saved = (out / "config.yaml").read_text()
    real_fit = run_mod.fit
    _no_training(monkeypatch)
    # a student-only setting edited in config.yaml: before, the resumed students trained with the new value
    alpha = RunConfig().distill.kd_alpha
    (out / "config.yaml").write_text(saved.replace(f"kd_alpha: {alpha}", "kd_alpha: 0.25"))
    _one_sentence(*_main(capsys, "run", "--resume", "--out", str(out), "--no-progress"),
                  f"distill.kd_alpha: {alpha} then, 0.25 now", "the file was edited after the run started")
    # a setting the teacher shares: before, a new teacher trained first and the message blamed the cache
    (out / "config.yaml").write_text(saved.replace("lr: 0.003", "lr: 0.004"))
    _one_sentence(*_main(capsys, "run", "--resume", "--out", str(out), "--no-progress"), "train.lr: 0.003 then, 0.004 now")
    (out / "config.yaml").write_text(saved)
    _one_sentence(*_main(capsys, "run", "--resume", "--out", str(out), "--no-progress", "distill.kd_alpha=0.25"),
                  "this --resume asks for other settings than the run", f"distill.kd_alpha: {alpha} then, 0.25 now")
    # the data changed: refused once read, before the teacher or a student trains
    kept = data.read_bytes()
    with np.load(data) as f:
        arrays = dict(f)
    arrays["label"] = arrays["label"].copy()
    arrays["label"][0] = (arrays["label"][0] + 1) % 3
    np.savez(data, **arrays)
    rc, err = _main(capsys, "run", "--resume", "--out", str(out), "--no-progress")
    _one_sentence(rc, err.strip().splitlines()[-1],  # after the line describing the data that were read
                  f"the data of the run in '{out}' changed since it started (fingerprint {marker['data']} then")
    assert "Traceback" not in err
    data.write_bytes(kept)
    # as it was, the run resumes and ends
    monkeypatch.setattr(run_mod, "fit", real_fit)
    rc, err = _main(capsys, "run", "--resume", "--out", str(out), "--no-progress")
    assert rc == 0, err
    assert set(json.loads((out / "results.json").read_text())["results"]) == {"teacher", "unimodal", "kd"}

"""End-to-end: `mmhal run` on a tiny .npz (seconds), and the CLI's answers to user mistakes."""
import json

import numpy as np
import pytest
import torch

from mmhal.cli import main
from mmhal.data.npz import save_npz

METHODS = ["unimodal", "kd", "rad", "dad", "mmh", "mmh-ensemble"]


def _tiny(path, n=180, seed=0, image=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    weak = rng.normal(size=(n, 2, 16)).astype(np.float32)
    weak[:, 0] += 0.5 * y[:, None]
    strong = rng.normal(size=(n, 5)).astype(np.float32)
    strong[np.arange(n), y] += 3.0
    mods = {"weak": weak, "strong": strong}
    if image:
        img = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
        img[:, 0, :4, :4] += 0.8 * y[:, None, None]
        mods = {"img": img, "strong": strong}
    save_npz(path, mods, y, groups=np.arange(n) // 6, class_names=["a", "b", "c"])
    return path


def _run(tmp_path, capsys, *extra, student="weak", image=False):
    data = _tiny(tmp_path / "tiny.npz", image=image)
    out = tmp_path / "run"
    rc = main(["run", "--data", str(data), "--student", student, "--methods", ",".join(METHODS),
               "--seeds", "2", "--epochs", "2", "--out", str(out), "--no-progress",
               "model.width=4", "train.batch_size=32", *extra])
    return rc, out, capsys.readouterr()


def test_run_on_a_tiny_npz_prints_the_table_and_writes_results(tmp_path, capsys):
    rc, out, cap = _run(tmp_path, capsys)
    assert rc == 0, cap.err
    for name in ["teacher"] + METHODS:
        assert name in cap.out
    assert "gap rec." in cap.out
    report = json.loads((out / "results.json").read_text())
    assert report["dataset"] == "tiny"
    assert report["teacher_modalities"] == ["strong", "weak"]
    assert report["student_modalities"] == ["weak"]
    assert report["seeds"] == [0, 1]
    assert set(report["results"]) == {"teacher", *METHODS}
    for name, r in report["results"].items():
        assert r["modalities"] == (["strong", "weak"] if name == "teacher" else ["weak"])
        for metric in ("accuracy", "macro_f1"):
            assert len(r[metric]["per_seed"]) == 2
            assert all(0.0 <= a <= 1.0 for a in r[metric]["per_seed"])
            assert r[metric]["mean"] == pytest.approx(np.mean(r[metric]["per_seed"]))
    assert (out / "config.yaml").is_file()
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,modalities,networks,accuracy_mean")
    for name, r in report["results"].items():
        assert len(r["per_class_accuracy"]["mean"]) == 3
        if name == "unimodal":
            assert "vs_unimodal" not in r
            continue
        vs = r["vs_unimodal"]
        assert set(vs) >= {"mean_diff", "se", "ci95", "p_value", "wins", "ties", "losses"}
        assert vs["wins"] + vs["ties"] + vs["losses"] == 2
        assert vs["ci95"][0] <= vs["mean_diff"] <= vs["ci95"][1]
        if name != "teacher":
            assert r["gap_recovered"] is None or set(r["gap_recovered"]) == {"mean", "ci95"}
            assert len(r["last_epoch_accuracy"]["per_seed"]) == 2
    assert report["recommendation"]["method"] in METHODS
    assert cap.out.strip().splitlines()[-1].startswith("recommendation (validation only): deploy")
    assert len(csv_lines) == 1 + 1 + len(METHODS)
    assert (out / "models" / "mmh-seed1.pt").is_file()


def test_run_is_repeatable_and_reuses_the_cached_teacher(tmp_path, capsys):
    rc, out, cap = _run(tmp_path, capsys)
    assert rc == 0 and "teacher: trained" in cap.err
    first = json.loads((out / "results.json").read_text())["results"]
    rc, out, cap = _run(tmp_path, capsys, "--overwrite")
    assert rc == 0 and "teacher: loaded from cache" in cap.err
    second = json.loads((out / "results.json").read_text())["results"]
    for name in first:
        assert first[name]["accuracy"]["per_seed"] == second[name]["accuracy"]["per_seed"]


def test_run_works_unchanged_on_image_shaped_modalities(tmp_path, capsys):
    rc, out, cap = _run(tmp_path, capsys, student="img", image=True)
    assert rc == 0, cap.err
    report = json.loads((out / "results.json").read_text())
    assert report["student_modalities"] == ["img"]


def test_rerun_into_a_folder_with_results_is_refused_not_overwritten(tmp_path, capsys):
    rc, out, _ = _run(tmp_path, capsys)
    before = (out / "results.json").read_text()
    rc, out, cap = _run(tmp_path, capsys)
    assert rc == 2 and "already holds results" in cap.err
    assert (out / "results.json").read_text() == before


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data", "/nonexistent/file.npz"], "does not exist"),
        (["--student", "depth"], "modality 'depth'"),
        (["--methods", "unimodal,magic"], "unknown method 'magic'"),
        (["train.nonsense=3"], "unknown config key"),
        (["train.epochs=many"], "expects an integer"),
    ],
)
def test_user_mistakes_get_one_sentence_and_exit_code_2(tmp_path, capsys, args, words):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--student", "weak", "--out", str(tmp_path / "o"), "--no-progress"]
    if args[0] in ("--data", "--student"):  # in place of the base's (an option given twice is a mistake of its own)
        base[base.index(args[0]) + 1] = args[1]
        args = []
    rc = main(base + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert words in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_teacher_file_of_an_earlier_run_is_distilled_instead_of_the_cache(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--student", "weak", "--methods", "kd", "--seeds", "1", "--epochs", "1",
            "--no-progress", "model.width=4", "train.batch_size=32", "workers=1"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())["results"]
    teacher = tmp_path / "a" / "models" / "teacher.pt"
    rc = main(base + [f"teacher_path={teacher}", f"cache_dir={tmp_path / 'empty-cache'}", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"teacher: loaded from {teacher}" in err and "teacher: trained" not in err.split("teacher: loaded")[1]
    assert not (tmp_path / "empty-cache" / "teachers").exists()  # nothing trained, nothing cached
    second = json.loads((tmp_path / "b" / "results.json").read_text())["results"]
    assert second == first  # same teacher, same student seed: the same run


@pytest.mark.parametrize(
    "extra, words",
    [
        (["teacher_path=/nonexistent/teacher.pt"], "teacher_path '/nonexistent/teacher.pt' does not exist"),
        (["--teacher", "strong"], "is a teacher of strong+weak, this run's teacher sees strong"),
        (["model.width=6"], "holds a network of another shape than this run's teacher"),
        # same shapes, other data: a teacher of another split (e.g. one that saw the test samples) is refused
        (["data.split_seed=1"], "was trained on other data or another split"),
        (["data.val_fraction=0.3"], "was trained on other data or another split"),
    ],
)
def test_a_wrong_teacher_file_is_one_sentence_and_exit_code_2(tmp_path, capsys, extra, words):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--student", "weak", "--methods", "unimodal", "--seeds", "1", "--epochs", "1",
            "--no-progress", "train.batch_size=32", "workers=1"]
    assert main(base + ["model.width=4", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    overrides = [e for e in extra if "=" in e and not e.startswith("--")]
    flags = [e for e in extra if e not in overrides]
    if not any(e.startswith("teacher_path=") for e in overrides):
        overrides.append(f"teacher_path={tmp_path / 'a' / 'models' / 'teacher.pt'}")
    if not any(e.startswith("model.width=") for e in overrides):
        overrides.append("model.width=4")
    rc = main(base + overrides + flags + ["--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("mmhal: error: ") and words in err.strip().splitlines()[-1]


def test_the_dataloader_path_gives_the_same_run_inside_the_worker_processes(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--student", "weak", "--methods", "unimodal,mmh", "--seeds", "1", "--epochs", "2",
            "--no-progress", "model.width=4", "train.batch_size=32", "train.threads=1", "workers=2"]
    assert main(base + ["--out", str(tmp_path / "memory")]) == 0
    # each of the 2 job processes starts its own DataLoader worker processes
    assert main(base + ["train.loader=workers", "train.loader_workers=2", "--out", str(tmp_path / "workers")]) == 0
    a = json.loads((tmp_path / "memory" / "results.json").read_text())["results"]
    b = json.loads((tmp_path / "workers" / "results.json").read_text())["results"]
    assert a == b


def test_resume_refuses_a_teacher_other_than_the_one_the_finished_students_were_distilled_from(tmp_path, capsys):
    data = _tiny(tmp_path / "tiny.npz")
    base = ["run", "--data", str(data), "--student", "weak", "--methods", "unimodal,kd", "--seeds", "1",
            "--epochs", "1", "--no-progress", "model.width=4", "train.batch_size=32", "workers=1", "--out", str(tmp_path / "a")]
    assert main(base) == 0
    assert main(base + ["--resume"]) == 0  # the same cached teacher: accepted
    capsys.readouterr()
    # The cache entry is retrained or swapped (here: other weights of the same shape) between the two starts.
    (entry,) = (tmp_path / "mmhal-cache" / "teachers").glob("*.pt")
    ckpt = torch.load(entry, weights_only=True)
    ckpt["model"] = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    torch.save(ckpt, entry)
    rc = main(base + ["--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "is not the one the run in" in err.strip().splitlines()[-1]


def test_a_finished_run_keeps_what_it_printed_in_run_log(finished_run):
    """run.log: a header (time, command), every line the run printed (teacher, each student, the table, the
    recommendation), no progress-bar redraws (issue 21)."""
    log = (finished_run / "run.log").read_text()
    lines = log.splitlines()
    assert lines[0].startswith("=== ") and lines[0].endswith(f"mmhal run --out {finished_run}")
    assert any(line.startswith("teacher: ") for line in lines)
    assert sum(" seed " in line and "acc" in line for line in lines) >= 2  # a line per student
    assert any(line.startswith("method ") for line in lines)  # the table
    assert lines[-1].startswith("recommendation (validation only): deploy ")
    assert "\r" not in log and "\x1b" not in log


def test_every_student_of_a_finished_run_has_its_per_epoch_metrics_file(finished_run):
    """metrics/<job>-seed<s>.csv: a row per epoch with the learning rate, seconds, each loss term and the validation
    figures, equal to the history in the student's model file (issue 21); files like it that mmhal did not write are
    not its own."""
    import csv

    import torch

    from pathlib import Path

    from mmhal.engine.outputs import is_own

    models = sorted(p for p in (finished_run / "models").glob("*-seed*.pt"))
    assert models
    for model in models:
        rows = list(csv.DictReader(open(finished_run / "metrics" / (model.stem + ".csv"), encoding="utf-8")))
        history = torch.load(model, map_location="cpu", weights_only=True)["history"]
        assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history]
        for r, h in zip(rows, history):
            assert all(float(r[k]) == pytest.approx(v) for k, v in h.items()), model.name
            assert float(r["lr"]) > 0 and float(r["seconds"]) >= 0
        assert is_own(Path("metrics") / (model.stem + ".csv"), "run", finished_run)
    (finished_run / "metrics" / "kd-seed9.csv").write_text("a,b\n1,2\n")
    try:
        assert not is_own(Path("metrics/kd-seed9.csv"), "run", finished_run)  # named like one, not mmhal's
    finally:
        (finished_run / "metrics" / "kd-seed9.csv").unlink()


def test_every_student_of_a_finished_run_has_tensorboard_curves(finished_run):
    """tensorboard=auto with the package installed (the test extra): RUN/tensorboard/<job>-seed<s>/ holds event files
    whose scalars TensorBoard's own reader lists, a step per epoch, equal to the metrics file (issue 21)."""
    import csv
    from pathlib import Path

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmhal.engine.outputs import is_own

    for metrics in sorted((finished_run / "metrics").glob("*.csv")):
        rows = list(csv.DictReader(open(metrics, encoding="utf-8")))
        board = finished_run / "tensorboard" / metrics.stem
        events = EventAccumulator(str(board))
        events.Reload()
        assert set(events.Tags()["scalars"]) == set(rows[0]) - {"epoch"}
        got = [(e.step, e.value) for e in events.Scalars("val_acc")]
        assert got == [(int(r["epoch"]), pytest.approx(float(r["val_acc"]), rel=1e-6)) for r in rows]
        for f in board.iterdir():
            assert is_own(Path("tensorboard") / metrics.stem / f.name, "run", finished_run)


def test_the_tensorboard_setting_is_checked():
    import mmhal.config as config
    from mmhal.errors import UserError

    with pytest.raises(UserError, match="tensorboard must be auto, true or false"):
        config.load_config(None, ["tensorboard=sometimes"])
    assert not config.writes_tensorboard(config.load_config(None, ["tensorboard=false"]))
    assert config.writes_tensorboard(config.load_config(None, ["tensorboard=auto"])) == config.has_tensorboard()
    mp = pytest.MonkeyPatch()
    mp.setattr(config, "has_tensorboard", lambda: False)
    try:
        with pytest.raises(UserError, match=r"tensorboard=true needs the tensorboard package"):
            config.load_config(None, ["tensorboard=true"])
        assert not config.writes_tensorboard(config.load_config(None, []))  # auto, without the package: none
    finally:
        mp.undo()


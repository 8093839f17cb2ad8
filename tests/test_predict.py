"""``mmhal predict``: a finished run's networks applied to data, one CSV row per sample (engine.predict)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmhal.cli import main
from mmhal.data.base import load_dataset
from mmhal.data.npz import save_npz
from mmhal.engine.artifacts import open_run
from mmhal.engine.predict import load_networks, open_inputs, predict_logits


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return header, rows


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def job_logits(run: Path, job: str, seed: int) -> np.ndarray:
    return torch.load(run / "jobs" / f"{job}-seed{seed}.pt", weights_only=True)["logits"].numpy()


def probs_of(rows: list[dict], classes: list[str]) -> np.ndarray:
    return np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])


def predict(capsys, run, *args) -> tuple[int, str, str]:
    rc = main(["predict", str(run), "--no-progress", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def test_rows(finished_run):
    """Row indices of the run's test split in its data file (the split mmhal made for tiny.npz)."""
    return load_dataset(open_run(finished_run).config.data).indices("test")


def test_csv_has_one_row_per_sample_in_order_with_probabilities_summing_to_one(finished_run, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    rc, stdout, err = predict(capsys, finished_run, "--data", finished_run.parent / "tiny.npz", "--method", "mmh",
                              "--out", out)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == ["pred", "pred_name", "p_a", "p_b", "p_c", "label"]
    assert len(rows) == 180
    p = probs_of(rows, ["a", "b", "c"])
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert [int(r["pred"]) for r in rows] == p.argmax(axis=1).tolist()
    assert [r["pred_name"] for r in rows] == [["a", "b", "c"][k] for k in p.argmax(axis=1)]
    with np.load(finished_run.parent / "tiny.npz") as z:  # input order: the labels come back row by row
        assert [int(r["label"]) for r in rows] == z["label"].tolist()
    assert "accuracy:" in err and "on 180 labelled samples" in err
    assert str(out) in stdout


def test_predict_reproduces_the_runs_test_logits(finished_run, test_rows):
    """At the default batch size the test rows' logits are the run's own, bit for bit (the same kernels on the
    same machine); in batches of 50 they may differ in the last bits (other CPU kernel blocking), no more."""
    run = open_run(finished_run)
    for method, members in (("mmh", ["mmh"]), ("mmh-ensemble", ["rad", "dad"])):
        nets = load_networks(run, method)
        assert nets.seeds == [0, 1]
        for batch_size in (1024, 50):
            z = predict_logits(nets, open_inputs(str(finished_run.parent / "tiny.npz"), None, run, nets), batch_size)
            for i, seed in enumerate(nets.seeds):
                want = sum(job_logits(finished_run, m, seed) for m in members)  # an ensemble sums its members'
                if len(members) == 1 and batch_size == 1024:
                    assert np.array_equal(z[i, test_rows], want)
                else:
                    np.testing.assert_allclose(z[i, test_rows], want, rtol=0, atol=1e-5)


def test_seed_gives_that_students_probabilities_and_the_default_averages_every_seed(finished_run, tmp_path, capsys,
                                                                                    test_rows):
    data = finished_run.parent / "tiny.npz"
    for args, name in ((["--seed", "1"], "one.csv"), ([], "all.csv")):
        rc, _, err = predict(capsys, finished_run, "--data", data, "--method", "kd", "--out", tmp_path / name, *args)
        assert rc == 0, err
    one = probs_of(read_csv(tmp_path / "one.csv")[1], ["a", "b", "c"])[test_rows]
    both = probs_of(read_csv(tmp_path / "all.csv")[1], ["a", "b", "c"])[test_rows]
    p0, p1 = softmax(job_logits(finished_run, "kd", 0)), softmax(job_logits(finished_run, "kd", 1))
    np.testing.assert_allclose(one, p1, rtol=0, atol=1e-8)
    np.testing.assert_allclose(both, (p0 + p1) / 2, rtol=0, atol=1e-8)
    assert not np.allclose(p0, p1)  # the two seeds differ, so the average is not one of them


def test_default_method_is_the_recommendation_and_default_out_is_in_the_run_folder(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    rc, stdout, err = predict(capsys, run, "--data", finished_run.parent / "tiny.npz")
    assert rc == 0, err
    method = json.loads((run / "results.json").read_text())["recommendation"]["method"]
    out = run / "predictions" / f"{method}-tiny.csv"
    assert out.is_file() and str(out) in stdout
    assert not list(out.parent.glob(".*.tmp"))


def test_unlabelled_input_with_only_the_student_modality(finished_run, tmp_path, capsys):
    with np.load(finished_run.parent / "tiny.npz") as z:
        weak = z["x.weak"][:10]
    path = tmp_path / "new.npz"
    np.savez(path, **{"x.weak": weak})  # no label, no split, no teacher modality
    rc, _, err = predict(capsys, finished_run, "--data", path, "--method", "mmh", "--out", tmp_path / "p.csv")
    assert rc == 0, err
    header, rows = read_csv(tmp_path / "p.csv")
    assert len(rows) == 10 and "label" not in header
    assert "accuracy" not in err


def test_missing_student_modality_is_one_sentence(finished_run, tmp_path, capsys):
    path = tmp_path / "strong-only.npz"
    save_npz(path, {"strong": np.zeros((4, 5), np.float32)}, np.zeros(4, np.int64))
    rc, _, err = predict(capsys, finished_run, "--data", path, "--method", "mmh", "--out", tmp_path / "p.csv")
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("mmhal: error: ")
    assert "no modality 'weak'" in err and "it has: strong" in err
    assert not (tmp_path / "p.csv").exists()


def test_wrong_per_sample_shape_is_one_sentence(finished_run, tmp_path, capsys):
    path = tmp_path / "short.npz"
    np.savez(path, **{"x.weak": np.zeros((4, 2, 15), np.float32)})
    rc, _, err = predict(capsys, finished_run, "--data", path, "--method", "mmh", "--out", tmp_path / "p.csv")
    assert rc == 2 and "(2, 15)" in err and "(2, 16)" in err and err.count("\n") == 1


def _copy(finished_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


@pytest.mark.parametrize("case", ["not-a-run", "missing-model", "truncated-model", "unknown-method",
                                  "teacher-recommended", "unknown-seed"])
def test_bad_runs_and_names_are_one_sentence(case, finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path) if case in ("missing-model", "truncated-model", "teacher-recommended") \
        else finished_run
    args = ["--method", "mmh"]
    if case == "not-a-run":
        run = tmp_path / "empty"
        run.mkdir()
    elif case == "missing-model":
        (run / "models" / "mmh-seed1.pt").unlink()
    elif case == "truncated-model":
        f = run / "models" / "mmh-seed0.pt"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif case == "unknown-method":
        args = ["--method", "nope"]
    elif case == "teacher-recommended":  # the teacher is never taken by default, only when named
        res = json.loads((run / "results.json").read_text())
        res["recommendation"]["method"] = "teacher"
        (run / "results.json").write_text(json.dumps(res))
        args = []
    elif case == "unknown-seed":
        args += ["--seed", "7"]
    rc, _, err = predict(capsys, run, "--data", finished_run.parent / "tiny.npz", "--out", tmp_path / "p.csv", *args)
    assert rc == 2
    assert err.startswith("mmhal: error: ") and err.count("\n") == 1 and "Traceback" not in err
    expected = {"not-a-run": "not a finished mmhal run", "missing-model": "mmh-seed1.pt' is missing",
                "truncated-model": "cannot be read", "unknown-method": "no method 'nope'",
                "teacher-recommended": "--method teacher", "unknown-seed": "no seed 7"}[case]
    assert expected in err
    assert "weights_only" not in err
    assert not (tmp_path / "p.csv").exists()


def test_teacher_by_name_needs_every_teacher_modality(finished_run, tmp_path, capsys):
    rc, stdout, err = predict(capsys, finished_run, "--data", finished_run.parent / "tiny.npz", "--method", "teacher",
                              "--out", tmp_path / "t.csv")
    assert rc == 0, err
    assert "method teacher" in stdout
    assert len(read_csv(tmp_path / "t.csv")[1]) == 180
    rc, _, err = predict(capsys, finished_run, "--data", finished_run.parent / "tiny.npz", "--method", "teacher",
                         "--seed", "0", "--out", tmp_path / "t2.csv")
    assert rc == 2 and "drop --seed" in err


def test_an_earlier_output_needs_overwrite_and_a_file_of_someone_elses_is_never_replaced(finished_run, tmp_path,
                                                                                           capsys):
    out = tmp_path / "p.csv"
    data = finished_run.parent / "tiny.npz"
    assert predict(capsys, finished_run, "--data", data, "--method", "mmh", "--seed", "0", "--out", out)[0] == 0
    first = out.read_bytes()
    rc, _, err = predict(capsys, finished_run, "--data", data, "--method", "mmh", "--out", out)
    assert rc == 2 and "--overwrite" in err and out.read_bytes() == first
    rc, _, err = predict(capsys, finished_run, "--data", data, "--method", "mmh", "--out", out, "--overwrite")
    assert rc == 0, err
    assert read_csv(out)[0][0] == "pred" and out.read_bytes() != first  # both seeds now, not seed 0's
    mine = tmp_path / "mine.csv"
    mine.write_text("keep me\n")
    rc, _, err = predict(capsys, finished_run, "--data", data, "--method", "mmh", "--out", mine, "--overwrite")
    assert rc == 2 and "is not a file mmhal predict wrote" in err and mine.read_text() == "keep me\n"
    rc, _, err = predict(capsys, finished_run, "--data", data, "--method", "mmh", "--out", tmp_path)
    assert rc == 2 and "is a folder" in err


def test_pad_run_adds_bona_fide_score_threshold_and_decision(finished_pad_run, tmp_path, capsys):
    manifest = finished_pad_run.parent / "pad" / "manifest.csv"
    res = json.loads((finished_pad_run / "results.json").read_text())
    per_seed = res["results"]["mmh"]["pad"]["threshold"]["per_seed"]
    for args, name, want in (([], "all.csv", np.mean(per_seed)), (["--seed", "1"], "one.csv", per_seed[1])):
        rc, _, err = predict(capsys, finished_pad_run, "--data", manifest, "--method", "mmh",
                             "--out", tmp_path / name, *args)
        assert rc == 0, err
        assert "P(bona fide) >=" in err
        header, rows = read_csv(tmp_path / name)
        assert header == ["pred", "pred_name", "p_attack", "p_bona_fide", "bona_fide_score", "threshold", "decision",
                          "label"]
        score = np.array([float(r["bona_fide_score"]) for r in rows])
        assert np.array_equal(score, [float(r["p_bona_fide"]) for r in rows])
        thresholds = {float(r["threshold"]) for r in rows}
        assert len(thresholds) == 1 and thresholds.pop() == pytest.approx(want, abs=1e-8)
        clear = np.abs(score - want) > 1e-8  # (a validation sample's score is the threshold itself: >= holds)
        decision = np.array([r["decision"] for r in rows])
        assert decision[clear].tolist() == np.where(score >= want, "bona_fide", "attack")[clear].tolist()
    # seed 1's scores on the test rows are the run's own (P(bona fide) of its saved test logits)
    with open(manifest, newline="") as f:
        test = [i for i, r in enumerate(csv.DictReader(f)) if r["split"] == "test"]
    rows = read_csv(tmp_path / "one.csv")[1]
    got = np.array([float(rows[i]["bona_fide_score"]) for i in test])
    np.testing.assert_allclose(got, softmax(job_logits(finished_pad_run, "mmh", 1))[:, 1], rtol=0, atol=1e-8)


def test_manifest_needs_only_the_students_image_column(finished_pad_run, tmp_path, capsys):
    src = finished_pad_run.parent / "pad"
    lines = (src / "manifest.csv").read_text().splitlines()
    header = lines[0].split(",")
    j = header.index("x.rgb")
    new = tmp_path / "rgb-only.csv"
    new.write_text("x.rgb\n" + "".join(f"{src / line.split(',')[j]}\n" for line in lines[1:6]))
    rc, _, err = predict(capsys, finished_pad_run, "--data", new, "--method", "mmh", "--out", tmp_path / "p.csv")
    assert rc == 0, err
    header, rows = read_csv(tmp_path / "p.csv")
    assert len(rows) == 5 and "label" not in header and "decision" in header
    missing = tmp_path / "depth-only.csv"
    missing.write_text("x.depth\nimages/depth/0000.png\n")
    rc, _, err = predict(capsys, finished_pad_run, "--data", missing, "--method", "mmh", "--out", tmp_path / "q.csv")
    assert rc == 2 and "no modality 'rgb'" in err


def test_a_dataset_by_name_gives_each_sample_its_split_in_the_csv_and_the_accuracy_per_split(finished_run, tmp_path,
                                                                                            capsys):
    """Issue 21: `predict --data hapt` printed one accuracy over train, val and test mixed. A dataset read by name
    carries the split the run made; a .npz with a 'split' key carries its own: the CSV gets a split column and the
    accuracy is given per split, with the reminder that only test is unseen."""
    from mmhal.engine.predict import read_dataset_inputs

    run = open_run(finished_run)
    nets = load_networks(run, "kd")
    data = load_dataset(run.config.data)
    inputs = read_dataset_inputs(run.config.data.name, None, run, nets, 0)
    assert inputs.split.tolist() == data.split.tolist()
    with np.load(finished_run.parent / "tiny.npz") as z:
        arrays = dict(z)
    arrays["split"] = data.split.astype("U5")
    np.savez(tmp_path / "with_split.npz", **arrays)
    out = tmp_path / "p.csv"
    rc, _, err = predict(capsys, finished_run, "--data", tmp_path / "with_split.npz", "--method", "kd", "--out", out)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header[-2:] == ["label", "split"] and [r["split"] for r in rows] == data.split.tolist()
    right = np.array([r["pred"] == r["label"] for r in rows])
    for k in ("train", "val", "test"):
        want = right[data.split == k].mean()
        assert f"{k} {want:.4f} ({int((data.split == k).sum())})" in err
    assert "only test is unseen" in err
    rc, _, err = predict(capsys, finished_run, "--data", finished_run.parent / "tiny.npz", "--method", "kd", "--out",
                         tmp_path / "q.csv")
    assert rc == 0 and "by split" not in err and "split" not in read_csv(tmp_path / "q.csv")[0]

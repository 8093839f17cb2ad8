"""End to end: `mmhal run` on a fixture of each file loader (manifest.csv, casia-surf in both releases, cefa),
with paired augmentation, and one sentence with exit 2 for a missing or undecodable file."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from face_fixtures import write_casia_surf_challenge, write_casia_surf_rerelease, write_cefa, write_manifest
from mmhal.cli import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

FAST = ["--methods", "unimodal,kd,mmh", "--seeds", "2", "--epochs", "2", "--no-progress", "model.width=4",
        "train.batch_size=8", "train.loader_workers=0", "train.threads=1"]


def _run(tmp_path, capsys, *args):
    out = tmp_path / "run"
    code = main(["run", *args, "--out", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "results.json").read_text()), captured


@pytest.mark.slow
def test_a_manifest_of_image_files_just_works(tmp_path, capsys):
    csv_path = write_manifest(tmp_path / "mine", n=32, pad=False, num_classes=2)
    report, cap = _run(tmp_path, capsys, "--data", str(csv_path), "--student", "rgb", "data.augment.flip=true",
                       "data.augment.crop=0.8")
    assert report["student_modalities"] == ["rgb"] and report["teacher_modalities"] == ["depth", "ir", "rgb"]
    assert set(report["results"]) == {"teacher", "unimodal", "kd", "mmh"}
    assert len(report["results"]["mmh"]["accuracy"]["per_seed"]) == 2


@pytest.mark.slow
def test_casia_surf_challenge_release(tmp_path, capsys):
    root = write_casia_surf_challenge(tmp_path / "surf")
    report, _ = _run(tmp_path, capsys, "--data", "casia-surf", "--root", str(root), "--student", "rgb",
                     "data.image_size=24")
    assert report["dataset"] == "casia-surf"
    assert report["class_names"] == ["attack", "bona_fide"]
    for m in ("teacher", "unimodal", "kd", "mmh"):  # ISO/IEC 30107-3 figures next to accuracy, per seed
        pad = report["results"][m]["pad"]
        assert len(pad["acer"]["per_seed"]) == 2 and pad["criterion"] == "eer" and pad["scoring"] == "sample"
    assert "acer_vs_unimodal" in report["results"]["mmh"]
    counts = report["pad_counts"]["eval"]
    assert counts["n_bona_fide"] > 0 and counts["n_attack"] > 0
    assert "ACER" in _["out"] if isinstance(_, dict) else "ACER" in _.out


@pytest.mark.slow
def test_casia_surf_rerelease_and_cefa(tmp_path, capsys):
    root = write_casia_surf_rerelease(tmp_path / "surf")
    report, _ = _run(tmp_path, capsys, "--data", "casia-surf", "--root", str(root), "--student", "rgb",
                     "data.protocol=rerelease", "data.image_size=24")
    assert report["data_info"]["release"] == "rerelease"
    cefa = write_cefa(tmp_path / "cefa")
    (tmp_path / "run").rename(tmp_path / "surf-run")
    report, _ = _run(tmp_path, capsys, "--data", "cefa", "--root", str(cefa), "--student", "rgb", "data.protocol=4@1",
                     "data.image_size=24")
    assert report["dataset"] == "cefa"
    assert report["results"]["mmh"]["pad"]["scoring"] == "video"  # CeFA is scored per video (mean frame score)
    assert report["pad_counts"]["eval"]["n_bona_fide"] < 36


def test_a_missing_modality_file_is_one_sentence_and_exit_2(tmp_path, capsys):
    csv_path = write_manifest(tmp_path / "mine", n=16)
    os.remove(tmp_path / "mine" / "images" / "depth" / "0003.png")
    code = main(["run", "--data", str(csv_path), "--student", "rgb", "--out", str(tmp_path / "run"), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.startswith("mmhal: error:")]
    assert len(lines) == 1 and "0003.png" in lines[0] and "Traceback" not in err


@pytest.mark.slow
def test_the_casia_surf_recipe_runs_on_a_fixture_of_the_challenge_release(tmp_path, capsys):
    """recipes/casia-surf.yaml as written (ResNet-18-SE, SGD, paired augmentation, EER threshold), shrunk only
    in time: fewer epochs and seeds, 32x32 images, and no longer teacher schedule."""
    root = write_casia_surf_challenge(tmp_path / "surf", size=(40, 36))
    out = tmp_path / "run"
    code = main(["run", "--config", str(RECIPES / "casia-surf.yaml"), "--root", str(root), "--out", str(out), "--epochs", "1",
                 "--seeds", "2", "--no-progress", "data.image_size=32", "train.batch_size=4", "train.loader_workers=0",
                 "method_overrides={}"])
    err = capsys.readouterr().err
    assert code == 0, err
    report = json.loads((out / "results.json").read_text())
    assert report["results"]["mmh"]["pad"]["criterion"] == "eer"
    saved = (out / "config.yaml").read_text()
    assert "backbone: resnet18" in saved and "se: true" in saved


def test_an_image_that_cannot_be_decoded_is_one_sentence_and_exit_2_also_from_a_worker_process(tmp_path, capsys):
    from mmhal.config import DataConfig
    from mmhal.data.manifest import load_manifest
    from mmhal.engine.samples import SampleSplit
    from mmhal.errors import DataError

    csv_path = write_manifest(tmp_path / "mine", n=16)
    data = load_manifest(DataConfig(), path=str(csv_path))
    # damaged after loading (the loader's survey of the headers would find it first: below), so a worker meets it
    (tmp_path / "mine" / "images" / "rgb" / "0002.png").write_bytes(b"not an image at all")
    split = SampleSplit(data, np.arange(16), ["rgb"], "cpu", workers=2)
    with pytest.raises(DataError) as exc:  # 4 batches: read by the 2 worker processes
        list(split.eval_batches(["rgb"], 0, 16, 4))
    split.close()
    msg = str(exc.value)
    assert "\n" not in msg and "0002.png" in msg and "cannot be decoded" in msg and "worker" not in msg, msg
    code = main(["run", "--data", str(csv_path), "--student", "rgb", "--out", str(tmp_path / "run"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    said = [l for l in err.splitlines() if l.startswith("mmhal: error:") and "0002.png" in l]
    assert said and "line 4 of" in said[0] and "column 'x.rgb'" in said[0], err  # found by the survey, named by line
    assert "teacher" not in err  # before anything trained

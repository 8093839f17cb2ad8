"""The action recipes (recipes/{nw-ucla,ntu60,ucf101,hmdb51}.yaml) on fixtures written in their datasets' layouts,
shrunk in size and time only (frames, crops, clip length, test views, epochs, seeds, batch): every recipe's
configuration, data and networks are built, and the RGB + flow recipe runs end to end (R3D-18 teachers and
students cost ~40 s a run on a CPU; RGB + depth runs end to end with the small backbone in test_clip_data)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import clip_fixtures as cf
from mmhal.cli import main

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
WRITERS = {"nw-ucla": cf.write_nw_ucla, "ntu60": cf.write_ntu, "ucf101": cf.write_ucf101, "hmdb51": cf.write_hmdb51}
SHRINK = ["data.image_size=20,24", "data.clip.size=12,12", "data.clip.length=4", "data.clip.num_test_clips=2",
          "data.clip.test_crops=1", "train.batch_size=4", "train.loader_workers=0", "workers=1",
          "train.warmup_epochs=0"]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_each_action_recipe_builds_its_data_teacher_and_student_on_a_fixture(tmp_path, name):
    from mmhal.config import load_config
    from mmhal.engine.run import _build, load_run_data

    root = WRITERS[name](tmp_path / "data")
    cfg = load_config(str(RECIPES / f"{name}.yaml"), [f"data.path={root}", *SHRINK])
    data, teacher_mods, student_mods, _ = load_run_data(cfg)
    assert type(data).__name__ == "ClipData" and data.num_classes == {"nw-ucla": 10, "ntu60": 60}.get(name, data.num_classes)
    stats = {m: ([0.0] * data.shapes[m][0], [1.0] * data.shapes[m][0]) for m in data.shapes}
    teacher = _build(cfg, data, teacher_mods, stats, teacher=True)
    student = _build(cfg, data, student_mods, stats)
    assert type(teacher).__name__ == "LateFusionNet" and type(student).__name__ == "VideoNet"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ucf101"])
def test_each_action_recipe_runs_end_to_end_on_a_fixture_of_its_layout(tmp_path, name):
    root = WRITERS[name](tmp_path / "data")
    out = tmp_path / "run"
    rc = main(["run", "--config", str(RECIPES / f"{name}.yaml"), "--root", str(root), "--epochs", "1", "--seeds", "1",
               "--methods", "unimodal,mmh", "--out", str(out), "--no-progress", f"cache_dir={tmp_path / 'cache'}",
               *SHRINK, "method_overrides.teacher.train.epochs=1"])
    assert rc == 0
    saved = json.loads((out / "results.json").read_text())
    res = saved["results"]
    assert set(res) >= {"teacher", "unimodal", "mmh"}
    assert res["teacher"]["modalities"] == ["rgb", "depth" if name in ("nw-ucla", "ntu60") else "flow"]

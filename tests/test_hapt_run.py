"""The default job on the real default dataset, shortened (one seed, two epochs): it must run end to end."""
import json

import pytest

from mmhal.cli import main


@pytest.mark.slow
def test_mmhal_run_on_hapt_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--seeds", "1", "--epochs", "2", "--methods", "unimodal,mmh,mmh-ensemble",
               "--out", str(out), "--no-progress", "model.width=4"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    report = json.loads((out / "results.json").read_text())
    assert report["dataset"] == "hapt"
    assert report["teacher_modalities"] == ["acc", "gyro"]
    assert report["student_modalities"] == ["gyro"]
    assert set(report["results"]) == {"teacher", "unimodal", "mmh", "mmh-ensemble"}
    # even two epochs of a tiny teacher on acc+gyro are far above chance (1/6) on the test subjects
    assert report["results"]["teacher"]["accuracy"]["mean"] > 0.5
    assert "mmh-ensemble" in cap.out

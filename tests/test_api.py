"""The public Python API (``import mmhal``): every command as one call with typed results, the same results as the
command line (which calls it), mistakes as ``mmhal.UserError``."""
import json
import shutil
import subprocess
import sys

import pytest

import mmhal
from mmhal.cli import main

TINY = ["model.width=4", "train.batch_size=32", "workers=1", "train.loader_workers=0"]


def test_importing_mmhal_imports_neither_torch_nor_the_engine():
    code = ("import sys, mmhal; assert callable(mmhal.run) and callable(mmhal.report); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('mmhal.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_returns_its_results_and_equals_the_command_line(tmp_path, capsys):
    from run_fixtures import tiny_npz

    data = tiny_npz(tmp_path / "tiny.npz")
    res = mmhal.run(data, student="weak", methods=["unimodal", "kd"], seeds=2, epochs=2, out=tmp_path / "api",
                    overrides=TINY + ["train.lr=0.004"], progress=False)
    assert isinstance(res, mmhal.RunResult)
    assert res.folder == tmp_path / "api" and res.results_json.is_file()
    saved = json.loads(res.results_json.read_text())
    assert res.results == saved["results"] and set(res.results) == {"teacher", "unimodal", "kd"}
    assert res.recommended in (None, "unimodal", "kd") and res.failure is None
    assert res.table.startswith("method") and res.lines[-1].startswith("recommendation")
    assert (res.folder / "run.log").read_text().rstrip().endswith(res.lines[-1])
    rc = main(["run", "--data", str(data), "--student", "weak", "--methods", "unimodal,kd", "--seeds", "2",
               "--epochs", "2", "--out", str(tmp_path / "cli"), "--no-progress", *TINY, "train.lr=0.004"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert res.table in printed  # the command prints what the API returns
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())["results"]
    for m in ("teacher", "unimodal", "kd"):
        assert cli[m]["accuracy"]["per_seed"] == res.results[m]["accuracy"]["per_seed"]


def test_overrides_may_be_a_mapping(tmp_path):
    from run_fixtures import tiny_npz

    import yaml

    data = tiny_npz(tmp_path / "tiny.npz")
    res = mmhal.run(str(data), student=["weak"], methods="unimodal", seeds=1, epochs=1, out=tmp_path / "run",
                    overrides={"model.width": 4, "train.batch_size": 32, "workers": 1, "train.lr": 0.003,
                               "distill.rad_levels": [2, 1]}, progress=False)
    cfg = yaml.safe_load((res.folder / "config.yaml").read_text())
    assert cfg["train"]["lr"] == 0.003 and cfg["distill"]["rad_levels"] == [2, 1] and cfg["model"]["width"] == 4


@pytest.mark.parametrize("kwargs, words", [
    ({"seeds": [3, 4]}, "seeds is a number of seeds"),
    ({"seeds": 0}, "seeds must be at least 1"),
    ({"overrides": "train.lr=0.1"}, "overrides must be a list of key=value strings or a mapping"),
    ({"epochs": 3, "overrides": ["train.epochs=2"]}, "epochs and the override train.epochs=2 both set train.epochs"),
    ({"methods": ["kdd"]}, "kdd"),
])
def test_mistakes_are_one_user_error_naming_the_keyword(tmp_path, kwargs, words):
    from run_fixtures import tiny_npz

    data = tiny_npz(tmp_path / "tiny.npz")
    with pytest.raises(mmhal.UserError, match=words):
        mmhal.run(data, student="weak", out=tmp_path / "run", progress=False, **kwargs)
    assert not (tmp_path / "run").exists()  # nothing was made


def test_resume_needs_the_run_folder(tmp_path):
    with pytest.raises(mmhal.UserError, match="resume needs the run folder"):
        mmhal.run(resume=True)


def test_predict_export_and_report_on_a_finished_run(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    from run_fixtures import tiny_npz

    data = tiny_npz(tmp_path / "new.npz")
    pred = mmhal.predict(run, data, method="kd", progress=False)
    assert isinstance(pred, mmhal.PredictResult) and pred.path.is_file() and pred.n == 180
    assert pred.method == "kd" and 0.0 <= pred.accuracy <= 1.0 and pred.threshold is None
    assert pred.lines[-1][1].startswith(f"predictions: {pred.path}")
    rows = pred.path.read_text().splitlines()
    assert len(rows) == 1 + pred.n

    ex = mmhal.export(run, method="kd", seed=1, format="torchscript")
    assert isinstance(ex, mmhal.ExportResult) and ex.model.is_file() and ex.model.parent == ex.folder
    assert ex.method == "kd" and ex.seed == 1 and ex.card["check"]["passed"]
    with pytest.raises(mmhal.UserError, match="export format must be onnx or torchscript"):
        mmhal.export(run, format="tflite")

    pytest.importorskip("matplotlib")
    rep = mmhal.report(run, out=tmp_path / "page", regions=False, progress=False)
    assert isinstance(rep, mmhal.ReportResult) and rep.page == tmp_path / "page" / "index.html" and rep.page.is_file()
    assert rep.figures and any("RAD regions" in n for n in rep.notes)


@pytest.mark.slow
def test_tune_returns_its_recipe(tmp_path):
    from run_fixtures import tiny_npz

    data = tiny_npz(tmp_path / "tiny.npz")
    res = mmhal.tune(data, student="weak", methods=["unimodal", "kd"], trials=2, tune_seeds=1, epochs=1,
                     out=tmp_path / "tune", overrides=TINY, progress=False)
    assert isinstance(res, mmhal.TuneResult) and res.recipe.is_file() and res.trials_csv.is_file()
    assert set(res.best) == {"unimodal", "kd"} and res.failure is None
    assert all(b["trial"] in (0, 1) for b in res.best.values())
    assert "validation only" in res.text
    with pytest.raises(mmhal.UserError, match="tune_seeds"):
        mmhal.tune(data, tune_seeds=0, out=tmp_path / "t2")


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """README's "From Python" block, executed as written except for its size: the tiny data for HAPT (its
    modalities for HAPT's), fewer seeds, epochs and trials, and a narrower network."""
    from pathlib import Path

    from run_fixtures import tiny_npz

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("## From Python")
    code = text[text.index("```python\n", start) + len("```python\n"):]
    code = code[:code.index("```")]
    data = tiny_npz(tmp_path / "tiny.npz")
    monkeypatch.chdir(tmp_path)
    small = {'"hapt"': repr(str(data)), '["gyro"]': '["weak"]', "seeds=5": "seeds=2, epochs=1",
             "trials=8, tune_seeds=2": "trials=2, tune_seeds=1, epochs=1, overrides=TINY",
             '{"train.lr": 0.003}': '{"train.lr": 0.003, **TINY}'}
    for old, new in small.items():
        assert old in code, f"the README example no longer has {old}"
        code = code.replace(old, new)
    tiny = {"model.width": 4, "train.batch_size": 32, "workers": 1, "train.loader_workers": 0}
    pytest.importorskip("matplotlib")
    pytest.importorskip("onnxruntime")
    exec(compile(code, "README.md", "exec"), {"TINY": tiny})
    out = capsys.readouterr().out
    assert "method" in out and (tmp_path / "runs" / "demo" / "report" / "index.html").is_file()
    assert (tmp_path / "runs" / "demo" / "predictions").is_dir()

"""``mmhal export``: one trained network, self-contained (ONNX or TorchScript), checked against PyTorch, with a
model card (engine.export)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmhal.cli import main
from mmhal.config import ModelConfig
from mmhal.engine import export as export_mod
from mmhal.engine.artifacts import load_network
from mmhal.models.network import build_network


def export(capsys, run, *args) -> tuple[int, str, str]:
    rc = main(["export", str(run), *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def pytorch_logits(model_file: Path, inputs: list[torch.Tensor]) -> np.ndarray:
    net, _ = load_network(model_file)
    with torch.no_grad():
        return net(dict(zip(net.modalities, inputs))).logits.numpy()


def test_onnx_export_gives_pytorchs_logits_at_any_batch_size(finished_run, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "onnx"
    rc, stdout, err = export(capsys, finished_run, "--method", "mmh", "--seed", "1", "--out", out)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".mmhal-export", "model.onnx", "model_card.json", "model_card.md"]
    assert "max abs diff" in stdout
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["weak"]
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    for n in (5, 1):
        x = torch.randn(n, 2, 16) * 2
        logits, probs = session.run(None, {"weak": x.numpy()})
        want = pytorch_logits(finished_run / "models" / "mmh-seed1.pt", [x])
        np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14 marks torch.jit deprecated
def test_torchscript_export_gives_pytorchs_logits_and_carries_its_card(finished_run, tmp_path, capsys):
    out = tmp_path / "ts"
    rc, _, err = export(capsys, finished_run, "--method", "kd", "--seed", "0", "--format", "torchscript", "--out", out)
    assert rc == 0, err
    extra = {"model_card.json": ""}
    model = torch.jit.load(str(out / "model.pt"), _extra_files=extra)
    assert json.loads(extra["model_card.json"])["method"] == "kd"
    for n in (4, 1):
        x = torch.randn(n, 2, 16)
        with torch.no_grad():
            logits, probs = model(x)
        np.testing.assert_allclose(logits.numpy(), pytorch_logits(finished_run / "models" / "kd-seed0.pt", [x]),
                                   atol=1e-4, rtol=0)


def test_model_card_holds_provenance_inputs_figures_and_the_check(finished_run, tmp_path, capsys):
    out = tmp_path / "card"
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--seed", "0", "--out", out)
    assert rc == 0, err
    card = json.loads((out / "model_card.json").read_text())
    res = results(finished_run)
    entry = res["results"]["mmh"]
    assert card["method"] == "mmh" and card["seed"] == 0 and card["format"] == "onnx"
    assert card["data_fingerprint"] == res["teacher"]["data"]
    assert card["teacher_modalities"] == ["strong", "weak"] and card["student_modalities"] == ["weak"]
    assert card["class_names"] == ["a", "b", "c"]
    assert card["inputs"] == [{"name": "weak", "position": 0, "dtype": "float32", "shape": ["batch", 2, 16],
                               "kind": "sequence", "values": card["inputs"][0]["values"]}]
    val = card["metrics"]["validation"]["accuracy"]
    assert val["this_network"] == entry["val_accuracy"]["per_seed"][0]
    assert val["method_mean"] == entry["val_accuracy"]["mean"] and val["method_ci95"] == entry["val_accuracy"]["ci95"]
    assert card["metrics"]["test"]["accuracy"]["method_ci95"] == entry["accuracy"]["ci95"]
    assert card["selection"]["seed"] == "--seed" and "epoch" in card["selection"]
    assert card["check"]["samples"] == 256 and card["check"]["passed"]
    assert card["check"]["max_abs_diff"] <= 1e-4 and len(card["check"]["batch_sizes"]) == 2
    assert card["intended_use"]
    md = (out / "model_card.md").read_text()
    for text in (res["teacher"]["data"], "`weak`", "(batch, 2, 16)", "95 %", "## Intended use", "onnxruntime",
                 f"{100 * entry['val_accuracy']['per_seed'][0]:.2f} %", card["sha256"]):
        assert text in md


def test_default_seed_has_the_best_validation_accuracy_and_default_out_is_in_the_run(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    res = results(run)
    method = res["recommendation"]["method"]
    res["results"][method]["val_accuracy"]["per_seed"] = [0.5, 0.75]  # seed 1 is the best on validation
    (run / "results.json").write_text(json.dumps(res))
    rc, stdout, err = export(capsys, run, "--format", "torchscript")
    assert rc == 0, err
    out = run / "export" / f"{method}-seed1-torchscript"
    assert (out / "model.pt").is_file() and str(out) in stdout
    card = json.loads((out / "model_card.json").read_text())
    assert card["seed"] == 1 and "best validation accuracy" in card["selection"]["seed"]
    assert "recommendation" in card["selection"]["method"]
    assert [p.name for p in (run / "export").iterdir()] == [out.name]  # no temporary folder left beside it


def test_teacher_only_when_named_and_ensembles_refused(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    res = results(run)
    res["recommendation"]["method"] = "teacher"
    (run / "results.json").write_text(json.dumps(res))
    rc, _, err = export(capsys, run)
    assert rc == 2 and "--method teacher" in err and err.count("\n") == 1
    assert not (run / "export").exists()
    rc, _, err = export(capsys, run, "--method", "teacher", "--format", "torchscript")
    assert rc == 0, err
    card = json.loads((run / "export" / "teacher-torchscript" / "model_card.json").read_text())
    assert card["seed"] is None and card["student_modalities"] == ["strong", "weak"]
    rc, _, err = export(capsys, run, "--method", "mmh-ensemble")
    assert rc == 2 and "ensemble" in err and err.count("\n") == 1


@pytest.mark.parametrize("case", ["not-a-run", "missing-model", "truncated-model", "unknown-method"])
def test_bad_runs_and_names_are_one_sentence(case, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    if case == "not-a-run":
        run.mkdir()
    else:
        shutil.copytree(finished_run, run)
    args = ["--method", "mmh", "--seed", "0"]
    if case == "missing-model":
        (run / "models" / "mmh-seed0.pt").unlink()
    elif case == "truncated-model":
        f = run / "models" / "mmh-seed0.pt"
        f.write_bytes(f.read_bytes()[:100])
    elif case == "unknown-method":
        args[1] = "nope"
    rc, _, err = export(capsys, run, *args, "--out", tmp_path / "out")
    assert rc == 2 and err.startswith("mmhal: error: ") and err.count("\n") == 1 and "weights_only" not in err
    assert not (tmp_path / "out").exists()


def test_an_earlier_export_needs_overwrite_and_a_folder_of_someone_elses_is_never_replaced(finished_run, tmp_path,
                                                                                             capsys):
    out = tmp_path / "out"
    assert export(capsys, finished_run, "--method", "mmh", "--seed", "0", "--out", out)[0] == 0
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--seed", "1", "--out", out)
    assert rc == 2 and "--overwrite" in err and json.loads((out / "model_card.json").read_text())["seed"] == 0
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--seed", "1", "--out", out, "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".mmhal-export", "model.onnx", "model_card.json", "model_card.md"]
    assert json.loads((out / "model_card.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "old.txt").write_text("old")
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--seed", "0", "--out", mine, "--overwrite")
    assert rc == 2 and "is not an export folder mmhal wrote" in err and err.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["old.txt"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_failed_check_leaves_nothing_behind(fmt, finished_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export_mod, "TOLERANCE", -1.0)  # no difference can pass
    out = tmp_path / "exports" / "new"
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--seed", "0", "--format", fmt, "--out", out)
    assert rc == 2 and "nothing was written" in err and err.count("\n") == 1
    assert list((tmp_path / "exports").iterdir()) == []
    old = tmp_path / "old"  # an earlier export survives a failed --overwrite untouched
    monkeypatch.setattr(export_mod, "TOLERANCE", 1e-4)
    assert export(capsys, finished_run, "--method", "mmh", "--seed", "1", "--format", fmt, "--out", old)[0] == 0
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    monkeypatch.setattr(export_mod, "TOLERANCE", -1.0)
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--seed", "0", "--format", fmt, "--out", old,
                        "--overwrite")
    assert rc == 2 and "nothing was written" in err and {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "old"]


def test_onnx_without_onnxruntime_names_the_extra(finished_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    rc, _, err = export(capsys, finished_run, "--method", "mmh", "--out", tmp_path / "out")
    assert rc == 2 and 'pip install "mmhal[export]"' in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_pad_card_reports_the_threshold_and_pad_figures(finished_pad_run, tmp_path, capsys):
    rc, _, err = export(capsys, finished_pad_run, "--method", "mmh", "--seed", "1", "--out", tmp_path / "out")
    assert rc == 0, err
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    pad = results(finished_pad_run)["results"]["mmh"]["pad"]
    assert card["metrics"]["pad"]["threshold"]["this_network"] == pad["threshold"]["per_seed"][1]
    assert card["metrics"]["pad"]["acer"]["method_ci95"] == pad["acer"]["ci95"]
    assert card["inputs"][0]["shape"] == ["batch", 3, 24, 20] and "0..255" in card["inputs"][0]["values"]
    assert f"{pad['threshold']['per_seed'][1]:.6g}" in card["intended_use"]
    assert "ACER" in (tmp_path / "out" / "model_card.md").read_text()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_resnet18_backbone_exports_with_a_dynamic_batch(fmt, tmp_path):
    shapes = {"rgb": (3, 32, 32), "depth": (1, 32, 32)}
    net = build_network(shapes, ["rgb", "depth"], 2, ModelConfig(backbone="resnet18")).eval()
    model = export_mod.Deployable(net)
    inputs = export_mod.sample_inputs(net, shapes, n=8)
    path = tmp_path / export_mod.FILES[fmt]
    if fmt == "onnx":
        export_mod.write_onnx(model, [x[:2] for x in inputs], path, {})
        runner = export_mod.run_onnx(path, model.modalities)
    else:
        export_mod.write_torchscript(model, [x[:2] for x in inputs], path, {})
        runner = export_mod.run_torchscript(path, model.modalities)
    assert export_mod.check_outputs(model, runner, inputs) <= 1e-4  # batches of 8 and 3, traced at 2

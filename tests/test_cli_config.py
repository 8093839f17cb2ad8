"""The command line's configuration: each mistake is one sentence and exit code 2 (nothing runs), a run is
repeated from its saved config.yaml in a new folder, --version, and where the cache is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmhal.cli import build_config, get_parser, main
from mmhal.config import load_config, save_config


def one_sentence_error(argv, capsys) -> str:
    """The error `mmhal` prints for ``argv``, checked to be one line, exit code 2 and no traceback."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mmhal: error: "), err
    assert "Traceback" not in err and "omegaconf" not in err.lower() and out == ""
    return lines[0]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train.lr=-1"], "train.lr must be positive, got -1.0"),
        (["train.lr=0"], "train.lr must be positive, got 0.0"),
        (["train.lr=nan"], "config key 'train.lr' expects a finite number, got 'nan'"),
        (["train.lr=inf"], "config key 'train.lr' expects a finite number, got 'inf'"),
        (["train.lr=fast"], "config key 'train.lr' expects a finite number, got 'fast'"),
        (["train.epochs=ten"], "config key 'train.epochs' expects an integer, got 'ten'"),
        (["model.width=0"], "model.width must be at least 1, got 0"),
        (["model.blocks=-1"], "model.blocks must be at least 1, got -1"),
        (["distill.rad_levels=[]"], "distill.rad_levels needs at least one pyramid level"),
        (["distill.rad_levels=[0]"], "distill.rad_levels must be grid sizes of 1 or more, got [0]"),
        (["distill.rad_levels=[2,"], "config key 'distill.rad_levels' has an unclosed bracket in '[2,'"),
        (["--student", "rg.b"], "student names the modality 'rg.b', but a modality name may not hold a dot"),
        (["--teacher", "rgb,de.pth", "--student", "rgb"], "teacher names the modality 'de.pth'"),
        (["--student", "rgb,rgb"], "student lists the modality 'rgb' twice"),
        (["train.batch_size=64.5"], "config key 'train.batch_size' expects an integer, got '64.5'"),
        (["train.batch_size=0"], "train.batch_size must be at least 2 (DAD compares samples within a batch), got 0"),
        (["distill.kd_alpha=5"], "distill.kd_alpha must lie in [0, 1]"),
        (["seeds=[0,0]"], "seeds lists the seed 0 twice"),
        (["--epochs", "-1"], "train.epochs must be at least 1, got -1"),
        (["train.epochs=0"], "train.epochs must be at least 1, got 0"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["train.weight_decay=-0.1"], "train.weight_decay must be 0 or more, got -0.1"),
        (["distill.temperature=0"], "distill.temperature must be positive, got 0.0"),
        (["distill.rad_lambda=-1"], "distill.rad_lambda must be 0 or more, got -1.0"),
        (["distill.dad_lambda=-0.5"], "distill.dad_lambda must be 0 or more, got -0.5"),
        (["model.dropout=1"], "model.dropout must lie in [0, 1), got 1.0"),
        (["model.dropout=-0.1"], "model.dropout must lie in [0, 1), got -0.1"),
        (["data.augment.crop=0"], "data.augment.crop must lie in (0, 1]"),
        (["data.augment.crop=1.5"], "data.augment.crop must lie in (0, 1]"),
        (["data.augment.erase=1.5"], "data.augment.erase is a probability in [0, 1], got 1.5"),
        (["pad.legacy=2"], "config key 'pad.legacy' expects true/false, got '2'"),
        (["train.lrr=0.1"], "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
        (["epochs=3"], "unknown config key 'epochs'; did you mean 'train.epochs'?"),
        (["dta.name=x.npz"], "unknown config key 'dta.name'; did you mean 'data.name'?"),
        (["method_overrides.kd.distill.kd_alpha=2"], "method_overrides.kd: distill.kd_alpha must lie in [0, 1]"),
        (["method_overrides.kd.model.width=3"], "a method may set only train.* and distill.* keys"),
        (["out=${nowhere}"], "config key 'out' cannot be resolved"),
    ],
)
def test_each_configuration_mistake_is_one_sentence_and_exit_2(argv, words, capsys):
    assert words in one_sentence_error(["run", *argv], capsys)


def test_tune_refuses_the_same_mistakes(capsys):
    assert "train.lr must be positive" in one_sentence_error(["tune", "train.lr=-1"], capsys)


def test_a_config_file_mistake_names_the_file(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epoch: 3\n")
    line = one_sentence_error(["run", "--config", str(recipe)], capsys)
    assert f"config file '{recipe}'" in line and "did you mean 'train.epochs'?" in line


def test_a_list_the_shell_split_at_its_space_is_joined_again():
    args = get_parser().parse_args(["run", "distill.rad_levels=[2,", "1]", "seeds=[3,", "4]"])
    cfg = build_config(args)
    assert cfg.distill.rad_levels == [2, 1] and cfg.seeds == [3, 4]


# ----------------------------------------------------------------------------- repeating a run
def fake_run(folder: Path, finished: bool = True, out: str = "") -> Path:
    """A run folder as `mmhal run` leaves it, as far as the configuration is concerned (``out``: the folder
    its config.yaml names, default the folder itself)."""
    from mmhal.engine.run import MARKER

    folder.mkdir(parents=True)
    cfg = load_config(None, [f"out={out or folder}", "data.name=tiny.npz", "student=weak", "seeds=[2]"])
    save_config(cfg, folder / "config.yaml")
    (folder / MARKER).write_text("{}")
    if finished:
        (folder / "results.json").write_text(json.dumps({"results": {}}))
    return folder / "config.yaml"


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "interrupted"])
def test_a_run_repeated_from_its_config_yaml_gets_a_new_folder(tmp_path, monkeypatch, capsys, finished):
    monkeypatch.chdir(tmp_path)
    saved = fake_run(tmp_path / "runs" / "first", finished)
    cfg = build_config(get_parser().parse_args(["run", "--config", str(saved)]))
    err = capsys.readouterr().err
    assert Path(cfg.out).parent == Path("runs") and Path(cfg.out).name.startswith("tiny-weak-")
    assert cfg.data.name == str(tmp_path / "tiny.npz") and cfg.seeds == [2]  # the saved settings, paths absolute
    assert f"the run in '{tmp_path / 'runs' / 'first'}' is left as it is" in err
    assert cfg.out in err and len(err.splitlines()) == 1


def test_a_run_repeated_from_another_folder_gets_a_new_folder_though_its_out_is_relative(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    saved = fake_run(tmp_path / "a" / "r1", out="r1")  # `mmhal run --data tiny.npz --out r1`, started in a/
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    cfg = build_config(get_parser().parse_args(["run", "--config", str(saved)]))
    assert Path(cfg.out).parent == Path("runs") and cfg.data.name == str(tmp_path / "a" / "tiny.npz")


def test_a_recipe_naming_a_finished_run_folder_gets_a_new_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "first")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"out: {tmp_path / 'first'}\nstudent: [weak]\n")
    cfg = build_config(get_parser().parse_args(["run", "--config", str(recipe)]))
    assert Path(cfg.out).parent == Path("runs")
    assert f"the run in '{tmp_path / 'first'}' is left as it is" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--out", "X"], ["out=X"], ["--overwrite"]], ids=["--out", "out=", "--overwrite"])
def test_the_saved_folder_is_kept_when_the_user_says_so(tmp_path, monkeypatch, capsys, extra):
    monkeypatch.chdir(tmp_path)
    saved = fake_run(tmp_path / "first")
    cfg = build_config(get_parser().parse_args(["run", "--config", str(saved), *extra]))
    want = str(tmp_path / "first") if extra == ["--overwrite"] else "X"
    assert cfg.out == want and "note" not in capsys.readouterr().err


def test_resume_keeps_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    saved = fake_run(tmp_path / "first", finished=False)
    args = get_parser().parse_args(["run", "--resume", "--out", str(tmp_path / "first")])
    cfg = build_config(args, str(saved))  # what cmd_run does for --resume
    assert cfg.out == str(tmp_path / "first") and capsys.readouterr().err == ""


def test_a_recipe_naming_a_new_folder_keeps_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("out: runs/mine\n")
    assert build_config(get_parser().parse_args(["run", "--config", str(recipe)])).out == "runs/mine"


# ----------------------------------------------------------------------------- --version and --help
def test_version_names_mmhal_and_torch(capsys):
    import torch

    from mmhal import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mmhal {__version__} ") and f"torch {torch.__version__}" in out


@pytest.mark.parametrize("command", ["run", "tune"])
def test_help_says_where_the_cache_is(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / "my-cache"))
    monkeypatch.setenv("COLUMNS", "400")  # no line break inside the path
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert str(tmp_path / "my-cache") in out and "$MMHAL_CACHE" in out and "cache_dir" in out

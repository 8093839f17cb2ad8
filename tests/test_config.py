"""Configuration: overrides coerced by each field's declared type, recipes, the saved round trip, validation."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmhal.config import (
    RunConfig,
    apply_mapping,
    join_overrides,
    load_config,
    method_config,
    save_config,
)
from mmhal.errors import UserError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


# ----------------------------------------------------------------------------- overrides by declared type
def test_a_path_for_an_optional_string_stays_a_string():
    cfg = load_config(None, ["data.path=/some/file.pkl.gz"])
    assert cfg.data.path == "/some/file.pkl.gz"
    assert load_config(None, ["data.path=null"]).data.path is None
    assert load_config(None, ["data.path="]).data.path is None


def test_string_fields_keep_the_text_as_typed():
    cfg = load_config(None, ["out=01", "teacher_path=yes", "train.precision=32", "data.name='my data.npz'"])
    assert (cfg.out, cfg.teacher_path, cfg.train.precision, cfg.data.name) == ("01", "yes", "32", "my data.npz")


def test_optional_list_of_names_takes_commas_a_yaml_list_or_null():
    assert load_config(None, ["teacher=acc,gyro"]).teacher == ["acc", "gyro"]
    assert load_config(None, ["teacher=[acc, gyro]"]).teacher == ["acc", "gyro"]
    assert load_config(None, ["teacher=acc"]).teacher == ["acc"]
    assert load_config(None, ["teacher=acc,gyro", "teacher=null"]).teacher is None
    assert load_config(None, ["teacher="]).teacher is None


def test_lists_of_integers():
    assert load_config(None, ["seeds=[0,1]"]).seeds == [0, 1]
    assert load_config(None, ["seeds=3,4"]).seeds == [3, 4]
    assert load_config(None, ["seeds=[5]"]).seeds == [5]


@pytest.mark.parametrize("where", ["override", "recipe"])
def test_seeds_as_one_whole_number_is_refused_because_it_could_mean_two_things(where, tmp_path):
    """--seeds 3 means three seeds; seeds=3 used to mean the one seed numbered 3 (issue 21)."""
    if where == "override":
        args = (None, ["seeds=3"])
    else:
        (tmp_path / "r.yaml").write_text("seeds: 3\n")
        args = (str(tmp_path / "r.yaml"), [])
    with pytest.raises(UserError, match=r"seeds=3 could mean the seed numbered 3 or 3 seeds; write seeds=\[3\] for that "
                                        r"one seed, or --seeds 3 \(seeds=\[0, 1, 2\]\) for 3 seeds"):
        load_config(*args)
    assert load_config(None, ["seeds=1,3"]).seeds == [1, 3]
    assert load_config(None, ["data.hapt_val_subjects=[1, 2]"]).data.hapt_val_subjects == [1, 2]
    assert load_config(None, ["methods=kd,rad", "student=[acc]"]).methods == ["kd", "rad"]


def test_numbers_and_booleans():
    cfg = load_config(None, ["train.lr=1e-3", "train.epochs=2.0", "train.weight_decay=0", "train.compile=yes",
                             "train.cache_teacher=false", "distill.dad_lambda=5"])
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 2 and isinstance(cfg.train.epochs, int)
    assert cfg.train.weight_decay == 0.0 and cfg.distill.dad_lambda == 5.0
    assert cfg.train.compile is True and cfg.train.cache_teacher is False


def test_booleans_take_words_and_0_or_1_only():
    assert load_config(None, ["pad.legacy=1", "train.compile=on"]).pad.legacy is True
    with pytest.raises(UserError, match="'pad.legacy' expects true/false, got '2'"):
        load_config(None, ["pad.legacy=2"])


def test_the_cache_folder_follows_the_environment_at_each_load(tmp_path, monkeypatch):
    for name in ("a", "b"):
        monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / name))
        assert load_config().cache_dir == str(tmp_path / name)


def test_a_value_may_refer_to_another_setting():
    assert load_config(None, ["out=runs/${data.name}-x"]).out == "runs/hapt-x"


def test_a_value_the_shell_split_at_a_space_is_joined_again():
    assert join_overrides(["distill.rad_levels=[2,", "1]", "data.name=my[1.npz", "train.lr=1",
                           "method_overrides={kd:", "{distill.kd_alpha:", "0.7}}"]) == [
        "distill.rad_levels=[2, 1]", "data.name=my[1.npz", "train.lr=1", "method_overrides={kd: {distill.kd_alpha: 0.7}}"]
    assert load_config(None, ["distill.rad_levels=[2,", "1]"]).distill.rad_levels == [2, 1]


def test_a_nested_mapping_override():
    cfg = load_config(None, ["data={name: x.npz, split_seed: 3}"])
    assert cfg.data.name == "x.npz" and cfg.data.split_seed == 3


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.epochs=1.5", "config key 'train.epochs' expects an integer, got '1.5'"),
        ("train.epochs=true", "config key 'train.epochs' expects an integer, got 'true'"),
        ("train.lr=abc", "config key 'train.lr' expects a finite number, got 'abc'"),
        ("train.lr=.nan", "config key 'train.lr' expects a finite number, got '.nan'"),
        ("train.cache_teacher=maybe", "config key 'train.cache_teacher' expects true/false, got 'maybe'"),
        ("seeds=[0, a]", "config key 'seeds' expects a list of integers"),
        ("teacher={a: 1}", "config key 'teacher' expects a list of names"),
        ("data.name=[a, b]", "config key 'data.name' expects a single text value"),
        ("data.nonsense=1", "unknown config key 'data.nonsense'"),
    ],
)
def test_bad_values_are_one_sentence_user_errors(override, words):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_recipe_values_are_coerced_too(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("teacher: acc,gyro\nseeds: [4]\ntrain:\n  lr: 1e-3\n  precision: 16\ndistill:\n  dad_global: true\n")
    cfg = load_config(str(recipe))
    assert cfg.teacher == ["acc", "gyro"] and cfg.seeds == [4]
    assert cfg.train.lr == 0.001 and cfg.train.precision == "16" and cfg.distill.dad_global == "true"
    recipe.write_text("train:\n  epochs: 1.5\n")
    with pytest.raises(UserError, match="'train.epochs' expects an integer"):
        load_config(str(recipe))


# ----------------------------------------------------------------------------- method_overrides
def test_method_overrides_as_a_mapping_or_one_dotted_key_at_a_time():
    whole = load_config(None, ["method_overrides={kd: {distill.kd_alpha: 0.7, train.lr: 1e-3}}"])
    dotted = load_config(None, ["method_overrides.kd.distill.kd_alpha=0.7", "method_overrides.kd.train.lr=1e-3"])
    assert whole.method_overrides == dotted.method_overrides == {"kd": {"distill.kd_alpha": 0.7, "train.lr": 0.001}}
    kd = method_config(dotted, "kd")
    assert (kd.distill.kd_alpha, kd.train.lr, kd.method_overrides) == (0.7, 0.001, {})
    assert method_config(dotted, "mmh") is dotted
    assert load_config(None, ["method_overrides.kd.train.lr=0.1", "method_overrides.kd=null"]).method_overrides == {}


def test_method_override_values_are_typed_and_checked_like_the_common_ones():
    cfg = load_config(None, ["method_overrides={teacher: {train.epochs: 30.0}}"])
    assert cfg.method_overrides["teacher"]["train.epochs"] == 30 and isinstance(cfg.method_overrides["teacher"]["train.epochs"], int)
    assert method_config(cfg, "kd", {"distill.rad_levels": "2,1"}).distill.rad_levels == [2, 1]


@pytest.mark.parametrize(
    "override, words",
    [
        ("method_overrides.kd.train.lr=abc", "config key 'method_overrides.kd.train.lr' expects a finite number"),
        ("method_overrides.kd.train.lrr=1", "did you mean 'method_overrides.kd.train.lr'?"),
        ("method_overrides.kd.train.epochs=0", "method_overrides.kd: train.epochs must be at least 1"),
        ("method_overrides={kd: 3}", "expects a mapping of method names to mappings"),
    ],
)
def test_bad_method_overrides_are_one_sentence_user_errors(override, words):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert words in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- recipes and the saved config
def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_loads(recipe):
    cfg = load_config(str(recipe))
    assert isinstance(cfg, RunConfig) and cfg.student and cfg.seeds


def test_the_hapt_recipe_is_the_defaults_written_out():
    recipe = next(p for p in RECIPES if p.name == "hapt.yaml")
    cfg, default = load_config(str(recipe)), RunConfig()
    cfg.cache_dir = default.cache_dir
    assert cfg == default


def test_a_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(None, ["data.path=/some/file.pkl.gz", "teacher=acc,gyro", "seeds=[0,1]", "out=01",
                             "train.precision=bf16", "distill.rad_levels=[2, 1]", "data.allow_shared_groups=true"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")) == cfg
    default = RunConfig()
    save_config(default, tmp_path / "default.yaml")
    assert load_config(str(tmp_path / "default.yaml")) == default


def test_the_saved_config_holds_absolute_paths_and_works_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.name=data/x.npz", "data.path=root", "teacher_path=t.pt", "model.weights=w.pth",
                             "cache_dir=cache", "out=runs/a"])
    save_config(cfg, tmp_path / "config.yaml")
    assert cfg.data.name == "data/x.npz"  # the configuration in memory is left as it is
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["data"]["name"] == str(tmp_path / "data" / "x.npz") and saved["data"]["path"] == str(tmp_path / "root")
    assert saved["teacher_path"] == str(tmp_path / "t.pt") and saved["model"]["weights"] == str(tmp_path / "w.pth")
    assert saved["cache_dir"] == str(tmp_path / "cache") and saved["out"] == "runs/a"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_config(str(tmp_path / "config.yaml"))
    assert again.data.name == str(tmp_path / "data" / "x.npz") and again.data.path == str(tmp_path / "root")


def test_a_dataset_name_and_empty_paths_stay_as_they_are(tmp_path):
    save_config(load_config(None, ["data.name=casia-surf"]), tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["data"]["name"] == "casia-surf" and saved["data"]["path"] is None
    assert saved["teacher_path"] == "" and saved["model"]["weights"] == ""


def test_apply_mapping_reads_a_saved_mapping_into_the_config():
    cfg = RunConfig()
    assert apply_mapping(cfg, {"train": {"lr": "1e-3"}, "seeds": "0,1"}) is cfg
    assert cfg.train.lr == 0.001 and cfg.seeds == [0, 1]
    with pytest.raises(UserError, match="unknown config key 'train.nope'"):
        apply_mapping(RunConfig(), {"train": {"nope": 1}})


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "override, words",
    [
        ("train.lr=0", "train.lr must be positive"),
        ("train.lr=-0.1", "train.lr must be positive"),
        ("train.weight_decay=-1e-4", "train.weight_decay must be 0 or more"),
        ("distill.rad_levels=[]", "distill.rad_levels needs at least one pyramid level"),
        ("distill.rad_levels=[4, 0]", "distill.rad_levels must be grid sizes of 1 or more"),
        ("distill.kd_alpha=1.5", "distill.kd_alpha must lie in [0, 1]"),
        ("distill.kd_alpha=-0.1", "distill.kd_alpha must lie in [0, 1]"),
        ("seeds=[0, 1, 0]", "seeds lists the seed 0 twice"),
        ("distill.rad_lambda=-1", "distill.rad_lambda must be 0 or more"),
        ("distill.dad_lambda=-0.5", "distill.dad_lambda must be 0 or more"),
        ("distill.dad_k=0", "distill.dad_k must be at least 1"),
    ],
)
def test_invalid_settings_are_one_sentence_user_errors(override, words):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["distill.kd_alpha=0", "distill.kd_alpha=1", "distill.rad_lambda=0",
                                      "distill.dad_lambda=0", "train.weight_decay=0", "distill.dad_k=1"])
def test_boundary_settings_are_valid(override):
    load_config(None, [override])


@pytest.mark.parametrize("name", ["tmm-casia-surf", "tmm-cefa", "tmm-nw-ucla", "tmm-ntu60", "tmm-ucf101", "tmm-hmdb51"])
def test_the_tmm_recipes_set_the_settings_that_reproduce_the_authors_code(name):
    """docs/faithfulness.md: every row with a setting, as the recipe's dataset uses it."""
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml"), [])
    d = cfg.distill
    assert cfg.methods == ["unimodal", "rad", "dad", "mmh-ensemble"]  # their final model, with its members
    assert (d.rad_pool, d.dad_relation, d.dad_lambda, d.rad_reproduce_detach_defect) == ("finest", "similarity", 100.0,
                                                                                         False)
    want = {"tmm-nw-ucla": "learned", "tmm-ntu60": "mean", "tmm-ucf101": "mean", "tmm-hmdb51": "mean"}
    assert d.ensemble_weight == want.get(name, "sum")  # the face code sums (sp_ap_ensemble.py)
    if name in ("tmm-casia-surf", "tmm-cefa"):
        assert (cfg.model.backbone, cfg.model.dropout, cfg.train.schedule) == ("tmm-face", 0.5, "authors-face")
        assert (d.rad_weighting, d.rad_remap, d.dad_features, d.rad_lambda) == ("authors", "square", "trunk", 0.4)
    else:
        assert (cfg.model.teacher_fusion, d.rad_weighting, d.rad_remap, d.dad_features) == (
            "late", "authors-ucf101" if name == "tmm-ucf101" else "uniform", "none", "embedding")

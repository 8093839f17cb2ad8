"""Bring-your-own .npz data: the round trip through save_npz/load_npz and one clear error per bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmhal.config import DataConfig
from mmhal.data.base import MultimodalData, load_dataset
from mmhal.data.npz import load_npz, save_npz
from mmhal.data.select import check_modalities
from mmhal.errors import DataError

N = 24


def modalities(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "vec": rng.normal(size=(n, 5)),  # float64 on purpose: loaded as float32
        "seq": rng.normal(size=(n, 3, 16)).astype(np.float32),
        "img": rng.normal(size=(n, 1, 6, 7)).astype(np.float32),
        "clip": rng.normal(size=(n, 2, 3, 4, 5)).astype(np.float32),
    }


def labels(n: int = N) -> np.ndarray:
    return np.arange(n) % 3


def split(n: int = N) -> np.ndarray:
    s = np.array(["train"] * n, dtype="<U5")
    s[np.arange(n) % 4 == 1] = "val"
    s[np.arange(n) % 4 == 2] = "test"
    return s


def write(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> str:
    """Write raw arrays with np.savez (to build files save_npz would not)."""
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def good_arrays(**override) -> dict[str, np.ndarray]:
    arrays = {"label": labels(), "x.a": np.ones((N, 4), np.float32), "split": split()}
    arrays.update(override)
    return {k: v for k, v in arrays.items() if v is not None}


def load(path: str, **cfg) -> MultimodalData:
    return load_npz(DataConfig(**cfg), path=path)


# ----------------------------------------------------------------------------- round trip
def test_round_trip_keeps_every_modality_kind_labels_split_groups_and_names(tmp_path):
    mods = modalities()
    groups = (np.arange(N) % 4) * 10 + np.arange(N) // 8  # each group inside one split of split()
    path = tmp_path / "round.npz"
    save_npz(path, mods, labels(), split=split(), groups=groups, class_names=["a", "b", "c"])
    data = load(str(path))
    assert data.shapes == {"vec": (5,), "seq": (3, 16), "img": (1, 6, 7), "clip": (2, 3, 4, 5)}
    for m, a in mods.items():
        assert data.modalities[m].dtype == np.float32
        np.testing.assert_allclose(data.modalities[m], a.astype(np.float32))
    assert data.labels.dtype == np.int64 and np.array_equal(data.labels, labels())
    assert np.array_equal(data.split, split())
    assert np.array_equal(data.groups, groups)
    assert data.class_names == ["a", "b", "c"]
    assert data.info["split"] == "from the file"
    assert data.info["source"] == str(path)
    assert data.info["warnings"] == []
    data.check()


def test_path_argument_overrides_cfg_path_and_default_class_names_are_indices(tmp_path):
    path = tmp_path / "p.npz"
    save_npz(path, {"a": np.ones((N, 2))}, labels(), split=split())
    data = load_npz(DataConfig(path=str(tmp_path / "elsewhere.npz")), path=str(path))
    assert data.class_names == ["0", "1", "2"]
    assert load_npz(DataConfig(path=str(path))).num_classes == 3


def test_load_dataset_reads_an_npz_path_given_as_the_dataset_name(tmp_path):
    path = tmp_path / "named.npz"
    save_npz(path, {"a": np.ones((N, 2))}, labels(), split=split())
    data = load_dataset(DataConfig(name=str(path)))
    assert data.name == "named" and data.shapes == {"a": (2,)}


def test_integer_modalities_and_whole_float_labels_are_accepted(tmp_path):
    arrays = good_arrays(**{"x.a": np.arange(N * 3, dtype=np.uint8).reshape(N, 3)}, label=labels().astype(float))
    path = write(tmp_path, **arrays)
    data = load(path)
    assert data.modalities["a"].dtype == np.float32 and data.labels.dtype == np.int64


# ----------------------------------------------------------------------------- split handling
def test_missing_split_is_made_seeded_group_aware_and_recorded(tmp_path):
    n = 200
    groups = np.arange(n) // 10
    path = tmp_path / "nosplit.npz"
    save_npz(path, {"a": np.ones((n, 2))}, np.arange(n) % 2, groups=groups)
    data = load(str(path), val_fraction=0.2, test_fraction=0.2, split_seed=5)
    assert data.info["split"].startswith("made by mmhal")
    assert data.info["split_seed"] == 5 and data.info["val_fraction"] == 0.2 and data.info["test_fraction"] == 0.2
    assert set(data.split.tolist()) == {"train", "val", "test"}
    for g in np.unique(groups):
        assert len(set(data.split[groups == g].tolist())) == 1
    again = load(str(path), val_fraction=0.2, test_fraction=0.2, split_seed=5)
    assert np.array_equal(data.split, again.split)


def test_split_without_val_gets_val_carved_from_train_only(tmp_path):
    s = np.where(np.arange(100) % 5 == 0, "test", "train")
    path = write(tmp_path, label=np.arange(100) % 2, **{"x.a": np.ones((100, 2))}, split=s)
    data = load(path, val_fraction=0.25, split_seed=0)
    assert np.array_equal(data.split == "test", s == "test")  # test untouched
    assert (data.split == "val").sum() == 20  # a quarter of the 80 train samples
    assert "no 'val'" in data.info["split"] and "made by mmhal" in data.info["split"]


def test_val_carved_from_a_file_split_keeps_whole_groups_in_one_split(tmp_path):
    n = 240
    groups = np.arange(n) // 8  # 30 groups of 8 samples, each with both classes
    s = np.where(groups % 5 == 0, "test", "train")
    path = write(tmp_path, label=np.arange(n) % 2, **{"x.a": np.ones((n, 2))}, split=s, group=groups)
    data = load(path, val_fraction=0.25, split_seed=3)
    assert np.array_equal(data.split == "test", s == "test")
    assert (data.split == "val").any()
    for g in np.unique(groups):
        assert len(set(data.split[groups == g].tolist())) == 1, f"group {g} is cut across splits"
    assert "group-aware" in data.info["split"] and data.info["warnings"] == []


# ----------------------------------------------------------------------------- leakage across groups
def test_a_split_made_without_group_warns_that_it_is_per_sample(tmp_path):
    n = 60
    path = write(tmp_path, label=np.arange(n) % 2, **{"x.a": np.ones((n, 2))})
    data = load(path)
    assert data.info["split"].startswith("made by mmhal")
    (warning,) = data.info["warnings"]
    assert "per sample" in warning and "both sides" in warning and "test figures" in warning
    assert "'group'" in warning


def test_no_per_sample_warning_when_the_file_has_group(tmp_path):
    n = 60
    path = write(tmp_path, label=np.arange(n) % 2, **{"x.a": np.ones((n, 2))}, group=np.arange(n) // 4)
    data = load(path)
    assert data.info["split"].startswith("made by mmhal")
    assert data.info["warnings"] == []


def test_val_carved_without_group_warns_too(tmp_path):
    s = np.where(np.arange(40) % 4 == 0, "test", "train")
    path = write(tmp_path, label=(np.arange(40) // 4) % 2, **{"x.a": np.ones((40, 2))}, split=s)  # both in test
    (warning,) = load(path).info["warnings"]
    assert "per sample" in warning and "validation" in warning


def shared_group_file(tmp_path) -> str:
    """split() with groups of two neighbouring samples: groups 0, 1, ... each span two splits."""
    groups = np.array([f"person-{i // 2}" for i in range(N)])
    return write(tmp_path, **good_arrays(group=groups))


def test_a_file_split_that_cuts_a_group_is_refused_naming_the_group(tmp_path):
    with pytest.raises(DataError) as err:
        load(shared_group_file(tmp_path))
    msg = str(err.value)
    assert "group 'person-0' in train and val" in msg
    assert "12 of the 12 groups" in msg and "data.allow_shared_groups=true" in msg
    assert msg.count(". ") == 0  # one sentence


def test_a_file_split_that_only_cuts_one_group_counts_one(tmp_path):
    groups = np.arange(N) // 4  # each block of 4 holds train, val, test, train
    s = np.array(["train"] * N, dtype="<U5")
    s[groups % 3 == 1] = "val"
    s[groups % 3 == 2] = "test"
    s[N - 1] = "val"  # the last group (5, a test group) now spans val and test
    path = write(tmp_path, **good_arrays(split=s, group=groups))
    with pytest.raises(DataError, match=r"group 5 in val and test \(1 of the 6 groups"):
        load(path)


def test_allow_shared_groups_turns_the_error_into_a_warning(tmp_path):
    data = load(shared_group_file(tmp_path), allow_shared_groups=True)
    assert np.array_equal(data.split, split())  # the file's split, unchanged
    (warning,) = data.info["warnings"]
    assert "group 'person-0'" in warning and "allow_shared_groups is true" in warning


def test_split_without_test_is_fine_and_noted(tmp_path):
    s = np.where(np.arange(N) % 3 == 0, "val", "train")
    path = write(tmp_path, label=np.arange(N) % 2, **{"x.a": np.ones((N, 2))}, split=s)
    data = load(path)
    assert not (data.split == "test").any()
    assert "no 'test'" in data.info["test"]


# ----------------------------------------------------------------------------- bad inputs
def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(str(tmp_path / "nope.npz"))


def test_unreadable_file_is_reported(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(DataError, match="holds text, not a .npz archive"):
        load(str(path))


def test_single_npy_array_is_not_an_npz(tmp_path):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load(str(path))


def test_pickled_object_arrays_are_refused(tmp_path):
    path = write(tmp_path, **good_arrays(split=np.array(["train"] * N, dtype=object)))
    with pytest.raises(DataError, match="'split'.*pickled"):
        load(path)


def test_missing_label_key(tmp_path):
    path = write(tmp_path, **good_arrays(label=None), labels=labels())
    with pytest.raises(DataError, match="no 'label' key"):
        load(path)


def test_no_modality_key(tmp_path):
    path = write(tmp_path, **good_arrays(**{"x.a": None}), a=np.ones((N, 2)))
    with pytest.raises(DataError, match="no modality"):
        load(path)


def test_non_integer_labels(tmp_path):
    path = write(tmp_path, **good_arrays(label=labels() + 0.5))
    with pytest.raises(DataError, match=r"'label' holds 0\.5 \(sample 0\), which is not a whole number"):
        load(path)
    path = write(tmp_path, "s.npz", **good_arrays(label=np.array(["cat"] * N)))
    with pytest.raises(DataError, match="'label' holds strings.*'class_names'"):
        load(path)


def test_negative_labels_are_outside_range(tmp_path):
    y = labels()
    y[3] = -1
    path = write(tmp_path, **good_arrays(label=y))
    with pytest.raises(DataError, match=r"'label' holds the negative value -1 \(sample 3\)"):
        load(path)


def test_labels_beyond_class_names_are_outside_range(tmp_path):
    path = write(tmp_path, **good_arrays(class_names=np.array(["a", "b"])))
    with pytest.raises(DataError, match=r"^label 2 \(8 samples, first at sample 2\) is outside the 2 classes \(0\.\.1\)"):
        load(path)


def test_sample_count_mismatch_names_the_modality(tmp_path):
    path = write(tmp_path, **good_arrays(**{"x.gyro": np.ones((N - 1, 3, 8))}))
    with pytest.raises(DataError, match=r"modality 'gyro'.*23 samples.*'label' has 24"):
        load(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_names_the_modality(tmp_path, bad):
    a = np.ones((N, 2, 5))
    a[7, 1, 2] = bad
    path = write(tmp_path, **good_arrays(**{"x.depth": a}))
    with pytest.raises(DataError, match=r"modality 'depth'.*NaN or Inf.*sample 7"):
        load(path)


def test_values_too_large_for_float32(tmp_path):
    path = write(tmp_path, **good_arrays(**{"x.a": np.full((N, 2), 1e300)}))
    with pytest.raises(DataError, match="too large for float32"):
        load(path)


@pytest.mark.parametrize(
    "array", [np.full((N, 2), "x"), np.ones((N, 2), dtype=np.complex64)], ids=["strings", "complex"]
)
def test_non_numeric_modality(tmp_path, array):
    path = write(tmp_path, **good_arrays(**{"x.rgb": array}))
    with pytest.raises(DataError, match=r"modality 'rgb'.*real numbers"):
        load(path)


@pytest.mark.parametrize("shape", [(N,), (N, 1, 1, 1, 1, 1)], ids=["scalar", "5d"])
def test_per_sample_rank_must_be_one_to_four(tmp_path, shape):
    path = write(tmp_path, **good_arrays(**{"x.a": np.ones(shape)}))
    with pytest.raises(DataError, match=r"modality 'a'.*1 to 4 dimensions"):
        load(path)


def test_split_values_other_than_train_val_test(tmp_path):
    s = split()
    s[0] = "dev"
    path = write(tmp_path, **good_arrays(split=s))
    with pytest.raises(DataError, match=r"'split' holds the value 'dev'"):
        load(path)


def test_split_length_mismatch(tmp_path):
    path = write(tmp_path, **good_arrays(split=split()[:-2]))
    with pytest.raises(DataError, match=r"'split' has 22 entries"):
        load(path)


def test_group_length_mismatch(tmp_path):
    path = write(tmp_path, **good_arrays(group=np.arange(N + 1)))
    with pytest.raises(DataError, match=r"'group' must have one value per sample"):
        load(path)


def test_class_absent_from_train(tmp_path):
    s = split()
    s[(labels() == 2) & (s == "train")] = "test"
    path = write(tmp_path, **good_arrays(split=s, class_names=np.array(["a", "b", "cat"])))
    with pytest.raises(DataError, match=r"class 'cat' \(label 2\) has no sample in the train split"):
        load(path)


def test_class_named_but_never_labelled(tmp_path):
    path = write(tmp_path, **good_arrays(class_names=np.array(["a", "b", "c", "ghost"])))
    with pytest.raises(DataError, match=r"class 'ghost'.*no sample at all"):
        load(path)


def test_duplicate_class_names(tmp_path):
    path = write(tmp_path, **good_arrays(class_names=np.array(["a", "b", "a"])))
    with pytest.raises(DataError, match="'class_names' lists the name 'a' twice"):
        load(path)


def test_no_train_sample_in_split(tmp_path):
    s = np.where(np.arange(N) % 2 == 0, "val", "test")
    path = write(tmp_path, **good_arrays(split=s))
    with pytest.raises(DataError, match="no sample as 'train'"):
        load(path)


def test_empty_validation_is_refused(tmp_path):
    s = np.where(np.arange(N) % 2 == 0, "train", "test")
    path = write(tmp_path, **good_arrays(split=s))
    with pytest.raises(DataError, match="'val' split is empty"):
        load(path, val_fraction=0.0)


# ----------------------------------------------------------------------------- modality selection
def test_check_modalities_names_the_role_and_the_available_modalities(tmp_path):
    path = tmp_path / "m.npz"
    save_npz(path, {"rgb": np.ones((N, 2)), "depth": np.ones((N, 2))}, labels(), split=split())
    data = load(str(path))
    assert check_modalities(data, ["rgb"], "student") == ["rgb"]
    with pytest.raises(DataError) as err:
        check_modalities(data, ["rgb", "ir"], "teacher")
    assert str(err.value) == "the teacher asks for modality 'ir', which the data does not have (it has: depth, rgb)"
    with pytest.raises(DataError, match="defaults to 'gyro'.*HAPT.*depth, rgb.*--student NAME"):
        check_modalities(data, ["gyro"], "student")
    with pytest.raises(DataError, match="no modality"):
        check_modalities(data, [], "student")


def test_a_sequence_that_looks_channels_last_is_warned_about(tmp_path):
    """(N, 100, 3): 100 channels of 3 steps as mmhal reads it, more likely 100 steps of 3 channels (issue 21)."""
    from mmhal.data.npz import channels_last_warning

    said = channels_last_warning("acc", (100, 3))
    assert said is not None and "store it channels-first, as (N, 3, 100)" in said
    for shape in ((3, 100), (6, 6), (40, 20), (5,), (3, 8, 8)):  # channels-first, square, long enough, not sequences
        assert channels_last_warning("acc", shape) is None
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, **{"x.acc": rng.normal(size=(30, 100, 3)).astype("f4"), "x.b": rng.normal(size=(30, 2)).astype("f4"),
                      "label": np.arange(30) % 2})
    from mmhal.config import DataConfig
    from mmhal.data.npz import load_npz

    assert any("'x.acc' is (100, 3) per sample" in w for w in load_npz(DataConfig(), str(path)).info["warnings"])

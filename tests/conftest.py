import pytest

import spinforce  # noqa: F401  before torch, as in the command line: idle OpenMP threads sleep
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def single_thread():
    """One torch/OpenMP thread: for small systems extra threads add only overhead and contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

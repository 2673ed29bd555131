import pytest

import spinforce  # noqa: F401  before torch, as in the command line: idle OpenMP threads sleep
import torch

import spinforce


def pytest_collection_modifyitems(config, items):
    # `gpu` tests need both a CUDA device and this build's CUDA kernels.
    if not spinforce._core.cuda_kernels:
        reason = "this spinforce was built without CUDA kernels"
    elif not torch.cuda.is_available():
        reason = "needs a CUDA device"
    else:
        return
    skip = pytest.mark.skip(reason=reason)
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


@pytest.fixture
def staged_files(monkeypatch):
    """The list of the .partial paths of every file outputs.atomic_write stages during the test."""
    from spinforce.outputs import atomic_write
    staged, stage = [], atomic_write.__init__

    def recording(self, path):
        stage(self, path)
        staged.append(self.partial)
    monkeypatch.setattr(atomic_write, "__init__", recording)
    return staged

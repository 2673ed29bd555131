"""`spinforce info`: versions, the CUDA kernels built in (or why not), the devices seen."""
import torch

import spinforce
import spinforce.cli


def test_info_reports_torch_kernels_and_devices(capsys):
    assert spinforce.cli.main(["info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"torch {torch.__version__} ") for line in out)
    kernels = next(line for line in out if line.startswith("CUDA kernels: "))
    if spinforce._core.cuda_kernels:
        assert kernels.startswith("CUDA kernels: built, architectures ")
    else:
        assert kernels.startswith("CUDA kernels: not built")
        # the build says why (a CPU build of torch, no nvcc, a version mismatch, ...)
        assert spinforce._build_info.CUDA_NOTE in kernels
    devices = [line for line in out if line.startswith("cuda")]
    assert len(devices) == max(1, torch.cuda.device_count() if torch.cuda.is_available() else 0)

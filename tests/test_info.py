"""`spinforce info`: versions, the CUDA kernels built in (or why not), the devices seen."""
import os
import shutil

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
    pt2 = next(line for line in out if line.startswith(".pt2 export: "))  # what --pt2 would compile with
    if shutil.which("g++") and "CXX" not in os.environ:
        assert pt2.startswith(f".pt2 export: C++ compiler {shutil.which('g++')}, packages tied to the CPU instruction set ")
    devices = [line for line in out if line.startswith("cuda")]
    assert len(devices) == max(1, torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_info_without_a_compiler_says_pt2_export_needs_one(capsys):
    import torch._inductor.config as inductor_config
    with inductor_config.patch({"cpp.cxx": (None, "no-such-compiler-here")}):  # (monkeypatch would delete it)
        assert spinforce.cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert ".pt2 export: no working C++ compiler (set CXX or install g++): use --torchscript" in out

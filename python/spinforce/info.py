"""Print what this spinforce runs on: versions, whether the CUDA kernels were built (and why
not), what `spinforce export --pt2` would compile with, and the devices torch sees.

    spinforce info
"""
from __future__ import annotations

import os
import platform
import sys

HELP = "print versions, the CUDA kernels built in, and the devices seen"


def add_arguments(parser) -> None:
    pass


def lines() -> list[str]:
    import torch

    from . import _build_info, _core
    from ._version import __version__

    if torch.version.cuda:
        flavour = f"CUDA {torch.version.cuda} build"
    elif getattr(torch.version, "hip", None):
        flavour = f"ROCm {torch.version.hip} build"
    else:
        flavour = "CPU build"
    out = [f"spinforce {__version__} ({os.path.dirname(__file__)})",
           f"python {platform.python_version()} ({sys.executable})",
           f"torch {torch.__version__} ({flavour}; spinforce was built against {_build_info.TORCH_VERSION})"]
    note = getattr(_build_info, "CUDA_NOTE", "")
    if _core.cuda_kernels:
        out.append(f"CUDA kernels: built, architectures {getattr(_core, 'cuda_architectures', '?')}")
    else:
        out.append("CUDA kernels: not built" + (f" ({note})" if note else ""))
    out.append(f"cpu: {platform.machine()}, {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads")
    out.append(_pt2_line())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(f"cuda:{i}: {p.name}, compute capability {p.major}.{p.minor}, "
                       f"{p.total_memory / 2**30:.0f} GiB")
    else:
        out.append("cuda: no device visible to torch" + ("" if torch.version.cuda else " (CPU build of torch)"))
    return out


def _pt2_line() -> str:
    """What `spinforce export --pt2` would compile with: the C++ compiler torch's Inductor picks
    (from CXX, else g++) and the CPU instruction set the package would be tied to."""
    import shutil
    no_compiler = ".pt2 export: no working C++ compiler (set CXX or install g++): use --torchscript"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.cpu_vec_isa import pick_vec_isa
        from torch._inductor.exc import InvalidCxxCompiler
    except Exception as err:  # Inductor unavailable in this torch: say so instead of failing `info`
        return f".pt2 export: unavailable ({type(err).__name__}: {err})"
    try:
        found = shutil.which(get_cpp_compiler())
    except InvalidCxxCompiler:
        return no_compiler
    if found is None:
        return no_compiler
    return f".pt2 export: C++ compiler {found}, packages tied to the CPU instruction set {pick_vec_isa() or 'none'}"


def run(args) -> int:
    print("\n".join(lines()))
    return 0

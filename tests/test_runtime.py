"""The allocator setting for large lattices."""
import ctypes
import subprocess
import sys

import pytest

from spinforce import runtime


def _run(code, env_value=None):
    import os
    env = dict(os.environ)
    if env_value is not None:
        env["SPINFORCE_KEEP_FREED_MEMORY"] = env_value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallopt"), reason="needs glibc")
def test_keep_freed_memory_applies_once_and_can_be_disabled():
    code = "from spinforce import runtime; print(runtime.keep_freed_memory(), runtime.keep_freed_memory())"
    assert _run(code).split() == ["True", "True"]
    assert _run(code, "0").split() == ["False", "False"]


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallopt"), reason="needs glibc")
def test_large_frees_are_kept_for_reuse():
    # After the setting, freeing a 64 MB block does not return it to the kernel: a second
    # allocation of the same size reuses it and the resident set does not drop in between.
    code = """
import torch, resource
from spinforce import runtime
runtime.keep_freed_memory()
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
x = torch.ones(8 * 2**20, dtype=torch.float64)
held = rss()
del x
print(held - rss())
"""
    dropped = int(_run(code))
    assert dropped < 16 * 2**20, f"resident memory dropped by {dropped / 2**20:.0f} MB after a free"
    dropped_default = int(_run(code.replace("runtime.keep_freed_memory()", "pass")))
    assert dropped_default > 48 * 2**20  # glibc's default returns the mmapped block at once

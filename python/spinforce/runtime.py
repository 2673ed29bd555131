"""Process-level settings that large simulations need.

Every force evaluation on a large lattice allocates and frees tensors of hundreds of MB.
glibc serves blocks that large with mmap and hands them back to the kernel on free, so each
evaluation pays for page faults on fresh memory again: on 2.6e5 sites this made an ML force
evaluation 2.7 times slower per site than on 1.6e4 sites. Keeping freed memory in the heap
restores linear scaling; the price is that the process keeps its peak memory until it exits.
Set SPINFORCE_KEEP_FREED_MEMORY=0 to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse (no mmap, no trimming). Idempotent.

    Returns True when the setting is in force; False on other C libraries or when disabled by
    SPINFORCE_KEEP_FREED_MEMORY=0.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("SPINFORCE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied

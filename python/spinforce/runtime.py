"""Process-level settings that large simulations need.

Every force evaluation on a large lattice allocates and frees tensors of hundreds of MB.
glibc serves blocks that large with mmap and hands them back to the kernel on free, so each
evaluation pays for page faults on fresh memory again: on 2.6e5 sites this made an ML force
evaluation 2.7 times slower per site than on 1.6e4 sites. Keeping freed memory in the heap
restores linear scaling; the price is that the process keeps its peak memory until it exits.
Set SPINFORCE_KEEP_FREED_MEMORY=0 to leave the allocator alone.

OpenMP threads that wait by spinning collapse throughput on a busy machine. torch and the
core share one OpenMP runtime (libgomp on Linux), whose idle threads by default spin for
milliseconds at every barrier and between parallel regions before they sleep. When other
processes hold the cores, the thread a parallel region waits for is not running while its
partner spins on the core it could use, so each of the hundreds of regions of an ML step
waits for a scheduler time slice: ML-LLG (48 x 48, 2 threads) on 2 cores shared with other
jobs ran at 1.2e3 spin-steps/s with spinning threads and 1.6e4 with sleeping ones
(bench/contention.py). Idle threads that sleep at once (OMP_WAIT_POLICY=PASSIVE) hand the core
to the thread that needs it. The runtime reads the policy once, when it loads with torch, so
`import spinforce` sets it only when torch is not imported yet and the user has not chosen a
policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment); the command line always
imports spinforce first. Scripts should import spinforce before torch (spinforce warns when
they do not) or set OMP_WAIT_POLICY=PASSIVE.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import warnings

__all__ = ["keep_freed_memory", "sleep_idle_openmp_threads"]

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


def sleep_idle_openmp_threads() -> bool:
    """Ask the OpenMP runtime for passive waiting (idle threads sleep instead of spinning).

    Effective only before torch is imported; a policy the user set in the environment is kept.
    When torch came first with several threads and no policy, warns once how to fix it.
    Returns True when passive waiting is what the runtime will use (or already uses).
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    if "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return True
    if sys.modules["torch"].get_num_threads() > 1:
        warnings.warn("torch was imported before spinforce, so idle OpenMP threads spin and steal the cores that "
                      "other threads wait for: on a busy machine runs slow down many times over. Import spinforce "
                      "before torch, or set OMP_WAIT_POLICY=PASSIVE in the environment.", RuntimeWarning,
                      stacklevel=3)
    return False

"""Process-level settings: how idle OpenMP threads wait.

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

import os
import sys
import warnings

__all__ = ["sleep_idle_openmp_threads"]


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

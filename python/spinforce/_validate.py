"""Checks at the Python boundary: scalar arguments (no silent coercion of bool, str or complex) and
the length of spins."""
from __future__ import annotations

import numbers
import operator

import numpy as np

__all__ = ["real", "integer", "spin_lengths", "UNIT_TOLERANCE"]

UNIT_TOLERANCE = 1e-6  # how far |S| may be off 1 in a file of spins (rounding, float32 storage)


def real(value, name: str) -> float:
    """`value` as a float; ValueError naming `name` for bool, str, complex or other non-numbers.
    Range checks (finite, > 0, ...) stay with the callee."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def integer(value, name: str) -> int:
    """`value` as an int (anything with __index__: int, numpy integers); ValueError naming `name`
    for bool, float, str and the rest."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r} (bool)")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None


def spin_lengths(spins) -> tuple[np.ndarray, str]:
    """For finite spins (..., 3): (a mask of the spins whose |S| is off 1 by more than UNIT_TOLERANCE,
    the range of |S| as "[min, max]") - each caller names what it read and what to do."""
    norms = np.linalg.norm(np.asarray(spins, dtype=np.float64), axis=-1)
    return np.abs(norms - 1.0) > UNIT_TOLERANCE, f"[{norms.min():.6g}, {norms.max():.6g}]"

"""Checks of scalar arguments at the Python boundary: no silent coercion of bool, str or complex."""
from __future__ import annotations

import numbers
import operator

__all__ = ["real", "integer"]


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

"""Declarative config schemas: every key of every config table with its type, range and default.

A table schema maps key -> Key(check, default). `check_table` refuses unknown keys (with a
"did you mean" suggestion), fills defaults, and checks each value, so that every config error
names the table, the key and the value, and no value is silently coerced (a float where an
integer belongs, true where a number belongs, a number written as a string).
"""
from __future__ import annotations

import copy
import difflib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["REQUIRED", "OMIT", "Key", "check_table", "check_sections", "did_you_mean", "integer", "number",
           "boolean", "one_of", "string", "shape", "vector3", "int_list", "number_pair", "device", "strings",
           "list_of", "number_or", "multiple_of", "shipped_configs"]

REQUIRED = object()   # the key must be given
OMIT = object()       # no default: an absent key stays absent (settings passed on as given)


@dataclass(frozen=True)
class Key:
    check: Callable[[Any, str], Any]
    default: Any = REQUIRED


def did_you_mean(word, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(word, options, where: str) -> ValueError:
    return ValueError(f"unknown key {word!r} in {where}{did_you_mean(word, options)} "
                      f"(allowed: {', '.join(map(str, options)) or 'none'})")


def check_table(section: str, given, keys: dict, *, where: str | None = None) -> dict:
    """A checked copy of the table `given` with defaults filled in. Values are named
    "section.key" in messages (just "key" when section is empty); where names the table."""
    where = where or f"[{section}]"
    if not isinstance(given, dict):
        raise ValueError(f"{where} must be a table of keys, got {given!r}")
    for k in given:
        if k not in keys:
            raise _unknown(k, keys, where)
    out = {}
    for k, key in keys.items():
        if k in given:
            out[k] = key.check(given[k], f"{section}.{k}" if section else k)
        elif key.default is REQUIRED:
            raise ValueError(f"{where} needs the key {k!r}")
        elif key.default is not OMIT:
            out[k] = copy.deepcopy(key.default)  # a list default must not be shared between configs
    return out


def check_sections(where: str, raw: dict, sections) -> None:
    """Refuse top-level names of a config that are not in `sections`."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table of sections, got {raw!r}")
    for k in raw:
        if k not in sections:
            raise ValueError(f"unknown section or key {k!r} in {where}{did_you_mean(k, sections)} "
                             f"(allowed: {', '.join(sections)})")


def multiple_of(table: dict, key: str, of: str, section: str = "") -> None:
    """Refuse a checked table whose `key` is not a multiple of its `of` (steps and save_every)."""
    name = (lambda k: f"{section}.{k}") if section else (lambda k: k)
    if table[key] % table[of]:
        raise ValueError(f"{name(key)} ({table[key]}) must be a multiple of {name(of)} ({table[of]})")


# --- value checks: each returns check(value, name) -> the value to use -------------------------
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _quoted(value) -> str:
    return " (a string: write the value without quotes)" if isinstance(value, str) else ""


def integer(lo: int | None = None, hi: int | None = None) -> Callable:
    def check(value, name):
        if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            bound = (f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}") if lo is not None else ""
            raise ValueError(f"{name} must be an integer{bound}, got {value!r}{_quoted(value)}")
        return int(value)
    return check


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> Callable:
    def check(value, name):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            x = float(value)
            ok = ((lo is None or (x > lo if lo_open else x >= lo)) and (hi is None or (x < hi if hi_open else x <= hi)))
        if not ok:
            lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
            hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
            rng = " and ".join(s for s in (lo_s, hi_s) if s)
            raise ValueError(f"{name} must be a finite number{' ' + rng if rng else ''}, got {value!r}{_quoted(value)}")
        return float(value)
    return check


def boolean() -> Callable:
    def check(value, name):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    return check


def one_of(*choices) -> Callable:
    def check(value, name):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
                             + (did_you_mean(value, choices) if isinstance(value, str) else ""))
        return value
    return check


def string(what: str = "a non-empty string") -> Callable:
    def check(value, name):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be {what}, got {value!r}")
        return value
    return check


def strings(what: str = "a file path or a list of file paths", *, empty: bool = False) -> Callable:
    """A string or a list of strings, as a list; empty=True also takes []."""
    def check(value, name):
        items = [value] if isinstance(value, str) else value
        if (not isinstance(items, list) or (not items and not empty)
                or not all(isinstance(v, str) and v for v in items)):
            raise ValueError(f"{name} must be {what}, got {value!r}")
        return list(items)
    return check


def shape() -> Callable:
    def check(value, name):
        items = [value] if _is_int(value) else value
        if not isinstance(items, list) or not 1 <= len(items) <= 3 or not all(_is_int(v) and v >= 1 for v in items):
            raise ValueError(f"{name} must be a positive integer or a list of 2 or 3 positive integers, got {value!r}")
        return value if _is_int(value) else [int(v) for v in items]
    return check


def _numbers(value, n: int | None) -> bool:
    return (isinstance(value, list) and (n is None or len(value) == n) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def vector3() -> Callable:
    def check(value, name):
        if not _numbers(value, 3):
            raise ValueError(f"{name} must be a list of 3 finite numbers, got {value!r}")
        return [float(v) for v in value]
    return check


def number_pair() -> Callable:
    def check(value, name):
        if not _numbers(value, 2) or not value[0] < value[1]:
            raise ValueError(f"{name} must be a pair [lower, upper] of finite numbers with lower < upper, "
                             f"got {value!r}")
        return [float(v) for v in value]
    return check


def int_list(lo: int = 1) -> Callable:
    def check(value, name):
        if not isinstance(value, list) or not value or not all(_is_int(v) and v >= lo for v in value):
            raise ValueError(f"{name} must be a non-empty list of integers >= {lo}, got {value!r}")
        return [int(v) for v in value]
    return check


def list_of(item: Callable, what: str, *, empty: bool = False) -> Callable:
    """A list whose entries each pass `item` (named NAME[k] in messages); non-empty unless empty=True."""
    def check(value, name):
        if not isinstance(value, list) or (not value and not empty):
            raise ValueError(f"{name} must be a {'' if empty else 'non-empty '}list of {what}, got {value!r}")
        return [item(v, f"{name}[{k}]") for k, v in enumerate(value)]
    return check


def number_or(*words: str) -> Callable:
    """A finite number or one of the given words (such as "auto")."""
    def check(value, name):
        if isinstance(value, str) and value in words:
            return value
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        hint = did_you_mean(value, words) if isinstance(value, str) else ""
        raise ValueError(f"{name} must be a finite number or {' or '.join(map(repr, words))}, got {value!r}{hint}")
    return check


def table() -> Callable:
    """A free-form table (its keys are checked later, by what reads it)."""
    def check(value, name):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a table of keys, got {value!r}")
        return value
    return check


def device() -> Callable:
    def check(value, name):
        import torch
        try:
            dev = torch.device(value) if isinstance(value, str) else None
        except (RuntimeError, TypeError):
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:<index>', got {value!r}")
        return value
    return check


def shipped_configs(folder: str) -> dict:
    """The TOML configs shipped in the package folder spinforce/<folder>: name (file stem) -> path."""
    from importlib import resources
    from pathlib import Path
    found = resources.files("spinforce") / folder
    return {Path(str(p)).stem: Path(str(p)) for p in found.iterdir() if str(p).endswith(".toml")}


def shipped_config_lines(configs: dict, width: int = 20) -> list:
    """One line per shipped config: its name and the first line of its header comment."""
    return [f"{name:{width}s} {path.read_text().splitlines()[0].lstrip('# ')}" for name, path in sorted(configs.items())]

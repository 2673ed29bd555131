"""What each command writes, and the one rule for replacing it.

A command declares the files it writes as patterns relative to a folder, one fnmatch pattern
per path component ("plots/parity_*.png"). `prepare_outputs` then applies the same rule for
every command:

- a folder the command owns (the run folder of `train`, the results folder of `analyze`, the
  demo folder, the OVF folder of a run) must be new, empty, or hold only files the command
  writes; anything else there is an error and nothing is touched;
- without overwrite, none of the command's files may exist yet (unless the run continues
  them: resume);
- with overwrite, exactly the existing files that match the patterns are removed, and the
  folders that held only them; nothing else.
"""
from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path

__all__ = ["under", "scan_outputs", "prepare_outputs", "partial_path", "with_partial", "atomic_write"]


def partial_path(path) -> Path:
    """PATH.partial: where a file is written before it takes its name PATH."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def with_partial(*patterns) -> tuple:
    """The output patterns of files written through atomic_write (or staged under partial_path):
    each pattern, then the name its file has while it is written."""
    return tuple(name for p in patterns for name in (p, partial_path(p).as_posix()))


class atomic_write:
    """Write a file under PATH.partial, then rename it to PATH in one step.

    ``with atomic_write(path) as tmp:`` gives the .partial path to write to (any writer: text,
    torch.save, h5py). Readers never see a half-written PATH, and a crash or an exception leaves
    any previous PATH as it was; on an exception the .partial file is removed.

    A file that is staged longer than one block (a dataset that takes its name once its first
    frame is complete) keeps the object and calls ``commit()`` or ``discard()`` itself.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.partial = partial_path(self.path)

    def __enter__(self) -> Path:
        return self.partial

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False

    def commit(self) -> None:
        """The staged file takes its name PATH (replacing any previous PATH)."""
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        """Remove the staged file; PATH stays as it was."""
        self.partial.unlink(missing_ok=True)


def under(prefix: str, patterns) -> tuple:
    """The patterns of a sub-command that writes into the subfolder `prefix`."""
    return tuple(f"{prefix}/{p}" for p in patterns)


def _split(patterns) -> list:
    return [tuple(p.split("/")) for p in patterns]


def _match(parts: tuple, pattern: tuple, prefix: bool) -> bool:
    if len(parts) > len(pattern) or (not prefix and len(parts) != len(pattern)):
        return False
    if prefix and len(parts) == len(pattern):
        return False
    return all(fnmatchcase(a, b) for a, b in zip(parts, pattern))


def scan_outputs(folder, patterns, *, exclusive: bool = True, owned=None) -> tuple[list, list]:
    """(ours, foreign): existing files under `folder` that match `patterns`, and entries that
    do not. With exclusive=False the top level of `folder` may hold anything else (a run file
    beside the user's config): only subfolders named by the patterns must hold nothing else.
    owned(path) -> bool can refuse a file whose name matches but whose content is not ours."""
    folder = Path(folder)
    split = _split(patterns)
    ours, foreign = [], []

    def walk(directory: Path, rel: tuple) -> None:
        for entry in sorted(directory.iterdir()):
            parts = rel + (entry.name,)
            if entry.is_dir() and not entry.is_symlink():
                if any(_match(parts, p, prefix=True) for p in split):
                    walk(entry, parts)
                elif rel or exclusive:
                    foreign.append(entry)
            elif any(_match(parts, p, prefix=False) for p in split):
                (ours if owned is None or owned(entry) else foreign).append(entry)
            elif rel or exclusive:
                foreign.append(entry)

    if folder.is_dir():
        walk(folder, ())
    return ours, foreign


def _names(folder: Path, paths: list, limit: int = 4) -> str:
    shown = [str(p.relative_to(folder)) + ("/" if p.is_dir() else "") for p in paths[:limit]]
    return ", ".join(shown) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def prepare_outputs(folder, patterns, *, command: str, overwrite: bool = False, keep: bool = False,
                    resumable: bool = False, exclusive: bool = True, owned=None) -> list:
    """Check `folder` against the rule above and, with overwrite, remove the command's old
    files. keep=True: the run continues the existing files (resume), nothing is removed;
    resumable: the command has --resume (said in the message).
    Returns the files that were removed. Raises FileExistsError, changing nothing, when the
    rule is broken."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a folder; {command} writes a folder there: choose another path")
    ours, foreign = scan_outputs(folder, patterns, exclusive=exclusive, owned=owned)
    if foreign:
        raise FileExistsError(
            f"{folder} holds {_names(folder, foreign)}, which {command} did not write; "
            + ("it writes only into a new or empty folder or one that holds nothing but its own results: choose "
               "another folder" if exclusive else "it replaces only its own files: choose another output path")
            + " (nothing was changed)")
    if ours and not (overwrite or keep):
        raise FileExistsError(f"{folder} already holds results of {command} ({_names(folder, ours)}); "
                              f"use --overwrite to replace them{' or --resume to continue them' if resumable else ''}")
    if not overwrite:
        return []
    for path in ours:
        path.unlink()
    # folders that held only our files go too (deepest first); the top folder stays
    for directory in sorted({p.parent for p in ours}, key=lambda d: len(d.parts), reverse=True):
        while directory != folder and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent
    return ours

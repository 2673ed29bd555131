"""The ``spinforce`` command: ``spinforce <command> [options]``.

Each command is a module with ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; adding a command is one line in COMMANDS.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import sys
import warnings

COMMANDS = {
    "generate": "spinforce.generate",
    "simulate": "spinforce.simulate",
    "analyze": "spinforce.analysis.cli",
    "demo": "spinforce.demo",
    "train": "spinforce.ml.train_command",
    "export": "spinforce.ml.export_command",
    "info": "spinforce.info",
    "locality": "spinforce.locality",
    "learn": "spinforce.learn",
    "study": "spinforce.study",
}

# Errors a user can fix from the command line: printed as one line, exit status 2.
_USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                PermissionError)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _allocation_failure(err: BaseException) -> str | None:
    """What an allocation failure (Python, C++ or torch's allocators) asked for; None for other errors."""
    text = str(err)
    if not (isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    asked = re.search(r"allocate (\d+) bytes", text)
    if not asked:
        return "more memory than is available"
    gb = int(asked.group(1)) / 1e9
    return f"{gb:,.0f} GB more" if gb >= 100 else f"{gb:.3g} GB more"


@contextlib.contextmanager
def _model_warnings_as_lines(prog: str):
    """A force field's warnings about itself (a committee past its uncertainty threshold, a
    chemical potential outside its trained range) as one line, `PROG: warning: ...`, without the
    source line Python's default shows; other warnings as usual."""
    from .ml.committee import UncertaintyWarning
    from .ml.provider import ChemicalPotentialWarning
    default_show = warnings.showwarning

    def show(message, category, *rest):
        if issubclass(category, (UncertaintyWarning, ChemicalPotentialWarning)):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, *rest)
    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    parser = argparse.ArgumentParser(prog="spinforce", description=(
        "Machine-learning force fields for LLG dynamics of itinerant magnets."))
    parser.add_argument("--version", action="version", version=f"spinforce {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with _model_warnings_as_lines(f"spinforce {args.command}"):
            return int(args._run(args) or 0)
    except _USER_ERRORS as err:
        print(f"spinforce {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        needed = _allocation_failure(err)
        if needed is None:
            raise
        print(f"spinforce {args.command}: error: out of memory: the run needed {needed}; use a smaller lattice",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nspinforce {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

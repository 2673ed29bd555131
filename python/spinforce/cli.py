"""The `spinforce` command: one subcommand per module, each registering its own parser."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand module -> it defines register(subparsers), whose parser sets func(args) -> exit code
COMMANDS = [
    "spinforce.simulate",
    "spinforce.analysis.cli",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="spinforce", description="ML force fields for LLG spin dynamics")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"spinforce {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

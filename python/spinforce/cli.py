"""The `spinforce` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from .ml.cli_commands import COMMANDS as ML_COMMANDS
    parser = argparse.ArgumentParser(prog="spinforce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in ML_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"spinforce {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``python -m spinforce``: the same as the ``spinforce`` command."""
import sys

from .cli import main

sys.exit(main())

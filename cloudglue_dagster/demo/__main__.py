"""``python -m cloudglue_dagster.demo``: see :mod:`cloudglue_dagster.demo`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

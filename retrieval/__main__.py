"""Entry point of `python -m retrieval`."""

import sys

from .cli import main

sys.exit(main())

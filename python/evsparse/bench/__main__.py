"""``python -m evsparse.bench``: the CPU report (same as ``evsparse-bench``)."""

import sys

from .cli import main

sys.exit(main())

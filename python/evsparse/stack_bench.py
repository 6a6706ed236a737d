"""Deprecated alias of :mod:`evsparse.bench.stack` (moved with the benchmark harness into its own subpackage);
kept for one release."""

import importlib
import sys
import warnings

warnings.warn("evsparse.stack_bench is deprecated; use evsparse.bench.stack", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("evsparse.bench.stack")

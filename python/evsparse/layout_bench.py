"""Deprecated alias of :mod:`evsparse.bench.layout` (moved with the benchmark harness into its own subpackage);
kept for one release."""

import importlib
import sys
import warnings

warnings.warn("evsparse.layout_bench is deprecated; use evsparse.bench.layout", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("evsparse.bench.layout")

"""Deprecated alias of :mod:`evsparse.bench.common` (moved with the benchmark harness into its own subpackage);
kept for one release."""

import importlib
import sys
import warnings

warnings.warn("evsparse._bench_common is deprecated; use evsparse.bench.common", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("evsparse.bench.common")

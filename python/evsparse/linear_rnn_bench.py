"""Deprecated alias of :mod:`evsparse.bench.linear_rnn` (moved with the benchmark harness into its own subpackage);
kept for one release."""

import importlib
import sys
import warnings

warnings.warn("evsparse.linear_rnn_bench is deprecated; use evsparse.bench.linear_rnn", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("evsparse.bench.linear_rnn")

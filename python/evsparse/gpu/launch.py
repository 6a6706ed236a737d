"""Deprecated alias of :mod:`evsparse.gpu.sparse_linear` (one name per op family: the launchers of
the sparse_linear products); kept for one release."""

import importlib
import sys
import warnings

warnings.warn("evsparse.gpu.launch is deprecated; use evsparse.gpu.sparse_linear", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("evsparse.gpu.sparse_linear")

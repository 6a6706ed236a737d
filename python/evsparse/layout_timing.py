"""Deprecated alias of :mod:`evsparse.layout` (``layout="timed"`` now lives beside ``pack`` and
``"auto"``); kept for one release."""

import importlib
import sys
import warnings

warnings.warn("evsparse.layout_timing is deprecated; use evsparse.layout", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("evsparse.layout")

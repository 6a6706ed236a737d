"""The benchmark harness (``evsparse-bench``, ``evsparse-gpu-bench``): its own subpackage, which the
library never imports. ``cli`` is the CPU report and its product sweep; one module per further
section (``layout``, ``linear_rnn``, ``stack``); ``gpu`` the GPU report; ``common`` the shared
helpers (timing comes from the library's :mod:`evsparse.timing`).

``evsparse.bench.main`` and the names of the CPU report (``Case``, ``build_methods``, ...) are
re-exported here, where ``evsparse.bench`` (then a module) had them. Lazily: importing ``cli`` (and
through it every section) with the package made ``python -m evsparse.bench.<section>`` warn that the
section was imported before it ran.
"""


import importlib


def __getattr__(name: str):
    if not name.startswith("__"):
        cli = importlib.import_module(f"{__name__}.cli")  # (not "from . import": that asks __getattr__ again)
        if hasattr(cli, name):
            return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The benchmark harness (``evsparse-bench``, ``evsparse-gpu-bench``): its own subpackage, which the
library never imports. ``cli`` is the CPU report and its product sweep; one module per further
section (``layout``, ``linear_rnn``, ``stack``); ``gpu`` the GPU report; ``common`` the shared
helpers (timing comes from the library's :mod:`evsparse.timing`).

``evsparse.bench.main`` and the names of the CPU report (``Case``, ``build_methods``, ...) are
re-exported here, where ``evsparse.bench`` (then a module) had them.
"""

from .cli import *  # noqa: F401,F403
from .cli import main  # noqa: F401

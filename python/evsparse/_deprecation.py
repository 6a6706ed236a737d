"""Old names kept for one release after a rename: they work, and say what replaced them."""

from __future__ import annotations

import warnings


def moved(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}", DeprecationWarning,
                  stacklevel=stacklevel)


def alias_classmethod(new_name: str, old_qualname: str, new_qualname: str) -> classmethod:
    """A classmethod that warns and calls ``cls.<new_name>``."""

    def old(cls, *args, **kwargs):
        moved(old_qualname, new_qualname)
        return getattr(cls, new_name)(*args, **kwargs)

    old.__doc__ = f"Deprecated alias of :meth:`{new_qualname}`."
    return classmethod(old)

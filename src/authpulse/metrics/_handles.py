"""What an ``instrument_*`` call returns: an :class:`Instrumentation` handle, and
:func:`combined` to make one handle of several."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Instrumentation", "combined"]


class Instrumentation:
    """What an ``instrument_*`` call returns. :meth:`remove` stops it (idempotent).

    Counters already exported keep their values; observed metrics of the
    removed object disappear from the next collection.
    """

    __slots__ = ("_lock", "_on_remove", "what")

    def __init__(self, what: str, on_remove: Callable[[], None]) -> None:
        self.what = what
        self._on_remove: Callable[[], None] | None = on_remove
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Instrumentation {self.what} {'active' if self.active else 'removed'}>"

    @property
    def active(self) -> bool:
        return self._on_remove is not None

    def remove(self) -> None:
        with self._lock:
            fn, self._on_remove = self._on_remove, None
        if fn is not None:
            fn()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def combined(handles: list[Instrumentation]) -> Instrumentation:
    """One handle for several (``remove()`` removes them all)."""
    if len(handles) == 1:
        return handles[0]

    def remove() -> None:
        for h in handles:
            h.remove()

    return Instrumentation(" + ".join(h.what for h in handles), remove)


# The public names defined here show the module they are imported from.
for _public in (Instrumentation,):
    _public.__module__ = "authpulse.metrics"
del _public

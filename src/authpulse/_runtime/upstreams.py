"""One value per upstream (an origin), created on first use: the base of the breaker
and retry-budget registries."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from .backend import INVALID_URL_ERRORS, as_url, httpx, origin_of

__all__ = ["upstream_key"]


def upstream_key(url: httpx.URL | str) -> str:
    """The breaker/budget key of a URL: its origin, port explicit (``https://h:443``)."""
    scheme, host, port = origin_of(url)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


_V = TypeVar("_V")


class _UpstreamRegistry(Generic[_V]):
    """One value per upstream, created on first use by ``make(key)``. Thread-safe.

    Keys are origins (``https://api.example.com:443``); a URL, or an origin
    without its default port, finds the same value. Any other string
    (``"idp"``) is used as given. The base of :class:`BreakerRegistry` and
    :class:`~authpulse.BudgetRegistry`.
    """

    def __init__(self) -> None:
        self._items: dict[str, _V] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def _make(self, key: str) -> _V:  # pragma: no cover - every registry overrides
        raise NotImplementedError

    @staticmethod
    def key(upstream: httpx.URL | str) -> str:
        """The registry key of ``upstream`` (see the class documentation)."""
        if isinstance(upstream, str) and "://" not in upstream:
            return upstream
        try:
            url = as_url(upstream)
        except INVALID_URL_ERRORS:
            return str(upstream)
        return upstream_key(url) if url.host else str(upstream)

    def get(self, upstream: httpx.URL | str) -> _V:
        """The value of ``upstream``, created on demand."""
        value = self._items.get(upstream) if isinstance(upstream, str) else None
        if value is not None:  # already a key: skip parsing it again
            return value
        key = self.key(upstream)
        value = self._items.get(key)
        if value is not None:
            return value
        with self._lock:
            value = self._items.get(key)
            if value is None:
                value = self._items[key] = self._make(key)
        return value

    def _snapshot(self) -> dict[str, _V]:
        with self._lock:
            return dict(self._items)

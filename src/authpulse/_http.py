"""The one place where authpulse imports its HTTP library.

Every other module writes ``from ._http import httpx``. Supporting a fork
that keeps httpx's API under another name (``httpx2``) means changing this
module only.
"""

from __future__ import annotations

import httpx

__all__ = ["httpx", "origin_of"]


def origin_of(url: httpx.URL | str) -> tuple[str, str, int | None]:
    """Return ``(scheme, host, port)`` with the default port made explicit."""
    u = url if isinstance(url, httpx.URL) else httpx.URL(url)
    port = u.port
    if port is None:
        port = {"http": 80, "https": 443}.get(u.scheme)
    return (u.scheme, u.host, port)

"""The one place where authpulse imports its HTTP library.

Every other module writes ``from ._http import httpx``. Supporting a fork
that keeps httpx's API under another name (``httpx2``) means changing this
module only.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

__all__ = ["httpx", "origin_of", "parse_origins"]

Origin = tuple[str, str, int | None]


def origin_of(url: httpx.URL | str) -> tuple[str, str, int | None]:
    """Return ``(scheme, host, port)`` with the default port made explicit."""
    u = url if isinstance(url, httpx.URL) else httpx.URL(url)
    port = u.port
    if port is None:
        port = {"http": 80, "https": 443}.get(u.scheme)
    return (u.scheme, u.host, port)


def parse_origins(origins: Iterable[str] | None) -> frozenset[Origin] | None:
    """Validate and normalise a list of origins (or URLs); ``None`` stays ``None``."""
    from ._errors import ConfigurationError

    if origins is None:
        return None
    if isinstance(origins, str):
        origins = [origins]
    out = set()
    for o in origins:
        try:
            origin = origin_of(o) if isinstance(o, str | httpx.URL) else None
        except httpx.InvalidURL:
            origin = None
        if origin is None or origin[0] not in ("http", "https") or not origin[1]:
            raise ConfigurationError(
                "origins must be absolute http(s) URLs such as 'https://api.example.com'"
            )
        out.add(origin)
    return frozenset(out)

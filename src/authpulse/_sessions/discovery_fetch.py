"""Fetching a provider's metadata: :func:`discover` and :func:`adiscover`.

The document is looked for at ``{issuer}/.well-known/openid-configuration``
and, on a 404, at the RFC 8414 location; it is validated by
:func:`authpulse._core.discovery.parse_provider_metadata` and kept in one
process-wide cache per issuer for ``ttl`` seconds of the clock. The fetch is
one flow, run by the sync and the async driver; the grants run it inside
their own fetch flow (``issuer=``), with the session's HTTP client.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, Any

from .._core.discovery import MAX_DOCUMENT_BYTES as _LIMIT
from .._core.discovery import ProviderMetadata, check_issuer, discovery_urls
from .._core.discovery import parse_provider_metadata as _parse
from .._core.errors import ConfigurationError, DiscoveryError, ErrorClass
from .._core.retry import classify_status
from .._runtime.backend import REQUEST_ERRORS, async_client_for, client_for, endpoint_label
from .._runtime.clock import Clock, SystemClock
from .._runtime.flow import Flow, Op, run_async, run_sync

if TYPE_CHECKING:
    from .._runtime.backend import AnyAsyncTransport, AnyTransport

__all__ = ["DiscoveryCache", "adiscover", "discover", "discovery_flow", "metadata_cache"]

#: seconds a fetch of the document may take
_TIMEOUT = 10.0


class DiscoveryCache:
    """Validated metadata per ``(issuer, allow_insecure_http)``, each until its
    expiry on the monotonic clock it was stored with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, bool], tuple[ProviderMetadata, float]] = {}

    def get(self, issuer: str, insecure: bool, now: float) -> ProviderMetadata | None:
        with self._lock:
            entry = self._entries.get((issuer, insecure))
            if entry is None:
                return None
            if now >= entry[1]:
                del self._entries[(issuer, insecure)]
                return None
            return entry[0]

    def put(self, metadata: ProviderMetadata, insecure: bool, until: float) -> None:
        with self._lock:
            self._entries[(metadata.issuer, insecure)] = (metadata, until)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: the one process-wide cache of provider metadata
metadata_cache = DiscoveryCache()


def _check_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl < 10**9:
        raise ConfigurationError("ttl must be a non-negative number of seconds")
    return float(ttl)


def _read(client: Any, url: str) -> tuple[int, Any, bytes]:
    with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > _LIMIT:
                break
        return response.status_code, response.headers, bytes(body)


async def _aread(client: Any, url: str) -> tuple[int, Any, bytes]:
    async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > _LIMIT:
                break
        return response.status_code, response.headers, bytes(body)


def discovery_flow(
    issuer: str,
    client: Any,
    *,
    clock: Clock,
    ttl: float = 3600.0,
    allow_insecure_http: bool = False,
) -> Flow[ProviderMetadata]:
    """The metadata of ``issuer``: from the cache, or fetched with ``client`` (an
    ``httpx.Client`` for the sync driver, an ``AsyncClient`` for the async one)."""
    cached = metadata_cache.get(issuer, allow_insecure_http, clock.monotonic())
    if cached is not None:
        return cached
    status, headers, body = 0, None, b""
    for url in discovery_urls(issuer):
        label = endpoint_label(url)
        try:
            status, headers, body = yield Op(
                partial(_read, client, url), partial(_aread, client, url)
            )
        except REQUEST_ERRORS as exc:
            raise DiscoveryError(
                f"fetching the metadata of {issuer} from {label} failed: {type(exc).__name__}",
                issuer=issuer,
                error_class=ErrorClass.NETWORK,
            ) from None
        if status != 404:
            break
    if status != 200:
        cls = classify_status(status, headers) if headers is not None else None
        raise DiscoveryError(
            f"the metadata of {issuer} could not be fetched: {label} answered HTTP {status}",
            issuer=issuer,
            status_code=status,
            error_class=cls if cls is not None and cls.transient else ErrorClass.CLIENT,
        )
    metadata = _parse(body, issuer=issuer, allow_insecure_http=allow_insecure_http)
    if ttl > 0:
        metadata_cache.put(metadata, allow_insecure_http, clock.monotonic() + ttl)
    return metadata


def _arguments(issuer: object, clock: Clock | None, ttl: object, insecure: object) -> Clock:
    if not isinstance(insecure, bool):
        raise ConfigurationError("allow_insecure_http must be a boolean")
    check_issuer(issuer, allow_insecure_http=insecure)
    _check_ttl(ttl)
    return clock or SystemClock()


def discover(
    issuer: str,
    *,
    transport: AnyTransport | None = None,
    clock: Clock | None = None,
    ttl: float = 3600,
    allow_insecure_http: bool = False,
) -> ProviderMetadata:
    """The validated metadata of ``issuer`` (RFC 8414 / OpenID Connect Discovery).

    Fetched from ``{issuer}/.well-known/openid-configuration`` (on a 404, from
    ``/.well-known/oauth-authorization-server`` with the issuer's path after
    it), then kept for ``ttl`` seconds of ``clock``: a second call within
    that time makes no request. Raises :class:`~authpulse.DiscoveryError`.

    .. versionadded:: unreleased
    """
    real_clock = _arguments(issuer, clock, ttl, allow_insecure_http)
    cached = metadata_cache.get(issuer, allow_insecure_http, real_clock.monotonic())
    if cached is not None:  # a hit opens no HTTP client (making one costs more than the read)
        return cached
    with client_for(transport, follow_redirects=False, timeout=_TIMEOUT) as client:
        return run_sync(
            discovery_flow(
                issuer, client, clock=real_clock, ttl=ttl, allow_insecure_http=allow_insecure_http
            )
        )


async def adiscover(
    issuer: str,
    *,
    transport: AnyAsyncTransport | None = None,
    clock: Clock | None = None,
    ttl: float = 3600,
    allow_insecure_http: bool = False,
) -> ProviderMetadata:
    """:func:`discover` for async code (``transport`` is an async transport).

    .. versionadded:: unreleased
    """
    real_clock = _arguments(issuer, clock, ttl, allow_insecure_http)
    cached = metadata_cache.get(issuer, allow_insecure_http, real_clock.monotonic())
    if cached is not None:
        return cached
    async with async_client_for(transport, follow_redirects=False, timeout=_TIMEOUT) as client:
        return await run_async(
            discovery_flow(
                issuer, client, clock=real_clock, ttl=ttl, allow_insecure_http=allow_insecure_http
            )
        )


# The public names defined here show the module they are imported from.
for _public in (discover, adiscover):
    _public.__module__ = "authpulse"
del _public

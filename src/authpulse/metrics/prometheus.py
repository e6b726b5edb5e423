"""Prometheus metrics for authpulse sessions, managers and caches.

Needs the ``prometheus`` extra (``pip install 'authpulse[prometheus]'``);
importing this module does not import prometheus-client, calling one of
its functions without it raises :class:`~authpulse.metrics.MissingExtraError`
(a :class:`~authpulse.ConfigurationError`) naming the extra.

>>> from prometheus_client import start_http_server
>>> from authpulse.metrics import prometheus
>>> prometheus.instrument_manager(manager)          # the global REGISTRY
>>> start_http_server(9464)

One collector per registry serves every instrumented object. Counters
move as events happen; health, breaker states, cache statistics and a
manager's sessions are read when the registry is scraped. See
docs/metrics.md for every metric and label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.errors import ConfigurationError
from .._fleet.manager import SessionManager
from .._http.cache import ResponseCache
from .._http.client import AsyncClient, Client
from .._sessions.session import Session
from ._extras import require
from ._handles import Instrumentation, combined

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ._prometheus import AuthpulseCollector

__all__ = [
    "collector",
    "instrument_cache",
    "instrument_client",
    "instrument_manager",
    "instrument_session",
]


def collector(registry: CollectorRegistry | None = None) -> AuthpulseCollector:
    """The authpulse collector of ``registry`` (default: ``prometheus_client.REGISTRY``),
    created and registered on first use."""
    require(
        ("prometheus_client",),
        integration="prometheus",
        package="prometheus-client",
        extra="prometheus",
    )
    from ._prometheus import hub_for

    return hub_for(registry)


def instrument_session(
    session: Session, registry: CollectorRegistry | None = None, *, name: str | None = None
) -> Instrumentation:
    """Export ``session``'s metrics to ``registry`` (default: the global one).

    Its per-session series are labelled ``session=name`` (default: the
    session's ``name``). A session owned by a :class:`SessionManager` is
    named by its id, so it needs ``name=`` — or use :func:`instrument_manager`.
    Calling this again for the same session returns the same handle.
    """
    hub = collector(registry)
    return hub.add_session(session, name, hub)


def instrument_manager(
    manager: SessionManager,
    registry: CollectorRegistry | None = None,
    *,
    session_ids: bool = False,
    owners: bool = False,
    health: bool = True,
) -> Instrumentation:
    """Export ``manager``'s metrics to ``registry`` (default: the global one).

    Sessions by status and kind, by health band, their breakers and their
    events (refreshes, retries, ...), present sessions and future ones. Read
    at scrape time: nothing is polled between scrapes.

    ``session_ids``: also export per-session series labelled with the
    session id (one series per session: mind the cardinality).
    ``owners``: add an ``owner`` label to ``authpulse_sessions``.
    ``health``: compute every open session's health at each scrape (about
    15 µs a session); ``False`` leaves out the health series.
    """
    hub = collector(registry)
    return hub.add_manager(manager, hub, session_ids=session_ids, owners=owners, health=health)


def instrument_cache(
    cache: ResponseCache, registry: CollectorRegistry | None = None, *, name: str = "default"
) -> Instrumentation:
    """Export a :class:`ResponseCache`'s statistics, labelled ``cache=name``."""
    hub = collector(registry)
    return hub.add_cache(cache, name)


def instrument_client(
    client: Client | AsyncClient,
    registry: CollectorRegistry | None = None,
    *,
    name: str | None = None,
    cache_name: str | None = None,
) -> Instrumentation:
    """:func:`instrument_session` on the client's session and, if the client has a
    cache, :func:`instrument_cache` on it (named ``cache_name``, default the
    session's label). ``remove()`` on the result undoes both."""
    if not isinstance(client, Client | AsyncClient):
        raise ConfigurationError("instrument_client needs an authpulse.Client or AsyncClient")
    hub = collector(registry)
    handles = [hub.add_session(client.session, name, hub)]
    if client.cache is not None:
        label = cache_name if cache_name is not None else (name or client.session.name)
        handles.append(hub.add_cache(client.cache, label))
    return combined(handles)

"""OpenTelemetry metrics and refresh spans for authpulse sessions, managers and caches.

Needs the ``otel`` extra (``pip install 'authpulse[otel]'``: the
OpenTelemetry API; configure an SDK or a distro to export). Importing this
module does not import OpenTelemetry; calling one of its functions without
it raises :class:`~authpulse.metrics.MissingExtraError` (a
:class:`~authpulse.ConfigurationError`) naming the extra.

>>> from authpulse.metrics import otel
>>> otel.instrument_session(session)        # global meter and tracer providers

Every refresh becomes an ``authpulse.refresh`` span (started by
``refresh_started``, ended by ``refreshed`` / ``refresh_failed``, from
whichever thread or task finishes it); event counters are OpenTelemetry
counters; health, breakers, caches and a manager's sessions are
observable instruments read at collection time. See docs/metrics.md.
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
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._otel import OtelHub, OtelSink

__all__ = [
    "instrument_cache",
    "instrument_client",
    "instrument_manager",
    "instrument_session",
]


def _hub(meter_provider: MeterProvider | None) -> OtelHub:
    require(
        ("opentelemetry.metrics", "opentelemetry.trace"),
        integration="otel",
        package="opentelemetry-api",
        extra="otel",
    )
    from ._otel import hub_for

    return hub_for(meter_provider)


def _sink(hub: OtelHub, tracer_provider: TracerProvider | None, spans: bool) -> OtelSink:
    from ._otel import OtelSink, tracer_for

    return OtelSink(hub, tracer_for(tracer_provider) if spans else None)


def instrument_session(
    session: Session,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    *,
    name: str | None = None,
    spans: bool = True,
) -> Instrumentation:
    """Record ``session``'s metrics and a span per refresh.

    Providers default to the global ones. Per-session series and the
    ``authpulse.session`` span attribute carry ``name`` (default: the
    session's ``name``; a session owned by a :class:`SessionManager` is
    named by its id, so it needs ``name=``). ``spans=False``: metrics only.
    Calling this again for the same session returns the same handle.
    """
    hub = _hub(meter_provider)
    return hub.add_session(session, name, _sink(hub, tracer_provider, spans))


def instrument_manager(
    manager: SessionManager,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    *,
    session_ids: bool = False,
    owners: bool = False,
    health: bool = True,
    spans: bool = True,
) -> Instrumentation:
    """Record ``manager``'s metrics, and a span per refresh of each of its sessions
    (present and future). The options are those of
    :func:`authpulse.metrics.prometheus.instrument_manager`; with
    ``session_ids``, refresh spans also carry the session id."""
    hub = _hub(meter_provider)
    return hub.add_manager(
        manager,
        _sink(hub, tracer_provider, spans),
        session_ids=session_ids,
        owners=owners,
        health=health,
    )


def instrument_cache(
    cache: ResponseCache, meter_provider: MeterProvider | None = None, *, name: str = "default"
) -> Instrumentation:
    """Observe a :class:`ResponseCache`'s statistics, with the attribute ``cache=name``."""
    return _hub(meter_provider).add_cache(cache, name)


def instrument_client(
    client: Client | AsyncClient,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    *,
    name: str | None = None,
    cache_name: str | None = None,
    spans: bool = True,
) -> Instrumentation:
    """:func:`instrument_session` on the client's session and :func:`instrument_cache`
    on its cache, if it has one. ``remove()`` on the result undoes both."""
    if not isinstance(client, Client | AsyncClient):
        raise ConfigurationError("instrument_client needs an authpulse.Client or AsyncClient")
    hub = _hub(meter_provider)
    handles = [hub.add_session(client.session, name, _sink(hub, tracer_provider, spans))]
    if client.cache is not None:
        label = cache_name if cache_name is not None else (name or client.session.name)
        handles.append(hub.add_cache(client.cache, label))
    return combined(handles)

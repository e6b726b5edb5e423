"""The catalogue of series: one :class:`MetricSpec` per metric, in documentation order.

:data:`METRICS` names each metric for Prometheus and OpenTelemetry, with its
type, labels, help and unit (docs/metrics.md is the same table). ``observed``
metrics are read from the instrumented objects at collection time; the others
are counted from events as they happen. Data only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["DURATION_BUCKETS", "METRICS", "SPECS", "Labels", "MetricSpec", "MetricType"]

MetricType = Literal["counter", "gauge", "histogram"]
Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its names, type, labels and meaning.

    ``name`` is the Prometheus name (a counter is exposed as ``name_total``);
    ``otel`` the OpenTelemetry instrument name. ``observed`` metrics are
    read from the instrumented objects at collection time; the others are
    counted from events as they happen.
    """

    key: str
    name: str
    otel: str
    type: MetricType
    labels: Labels
    help: str
    unit: str = "1"
    observed: bool = False


def _event(key: str, name: str, otel: str, labels: Labels, help: str, unit: str) -> MetricSpec:
    return MetricSpec(key, name, otel, "counter", labels, help, unit)


def _seen(
    key: str, name: str, otel: str, type: MetricType, labels: Labels, help: str, unit: str = "1"
) -> MetricSpec:
    return MetricSpec(key, name, otel, type, labels, help, unit, observed=True)


#: Every metric, in documentation order.
METRICS: Final[tuple[MetricSpec, ...]] = (
    # -- counted from session events ------------------------------------------------
    _event(
        "refreshes",
        "authpulse_token_refreshes",
        "authpulse.token.refreshes",
        ("reason",),
        "Token sets installed (successful refreshes; reason 'initial' is set_token).",
        "{refresh}",
    ),
    _event(
        "refresh_failures",
        "authpulse_token_refresh_failures",
        "authpulse.token.refresh_failures",
        ("reason", "error_class"),
        "Token refreshes that failed, by reason and error class.",
        "{refresh}",
    ),
    MetricSpec(
        "refresh_duration",
        "authpulse_token_refresh_duration_seconds",
        "authpulse.token.refresh.duration",
        "histogram",
        ("reason", "outcome"),
        "Wall-clock time from the start of a refresh to its outcome.",
        "s",
    ),
    _event(
        "token_retries",
        "authpulse_token_retries",
        "authpulse.token.retries",
        ("error_class",),
        "Token endpoint attempts that failed and were retried, by error class.",
        "{retry}",
    ),
    _event(
        "api_retries",
        "authpulse_api_retries",
        "authpulse.api.retries",
        ("upstream", "error_class"),
        "API requests retried by authpulse.Client, by upstream origin and error class.",
        "{retry}",
    ),
    _event(
        "api_gave_up",
        "authpulse_api_gave_up",
        "authpulse.api.gave_up",
        ("upstream", "reason", "error_class"),
        "API calls that ended on a transient failure (retries spent, deadline, budget, breaker).",
        "{call}",
    ),
    _event(
        "api_budget_exhausted",
        "authpulse_api_retry_budget_exhausted",
        "authpulse.api.retry_budget_exhausted",
        ("upstream",),
        "API retries refused because the upstream's retry budget was spent.",
        "{retry}",
    ),
    _event(
        "api_stale_served",
        "authpulse_api_stale_served",
        "authpulse.api.stale_served",
        ("mode",),
        "Stale cached answers a session's client served instead of an upstream failure.",
        "{response}",
    ),
    _event(
        "breaker_transitions",
        "authpulse_breaker_transitions",
        "authpulse.breaker.transitions",
        ("upstream", "state"),
        "Circuit breaker transitions of a session's API clients, by the state entered.",
        "{transition}",
    ),
    _event(
        "fallback_used",
        "authpulse_fallback_used",
        "authpulse.fallback.used",
        ("level",),
        "Times a session moved to a fallback level of its FallbackChain.",
        "{event}",
    ),
    _event(
        "primary_recovered",
        "authpulse_fallback_primary_recovered",
        "authpulse.fallback.primary_recovered",
        (),
        "Times a session went back to the primary level of its FallbackChain.",
        "{event}",
    ),
    _event(
        "login_required",
        "authpulse_login_required",
        "authpulse.login_required",
        (),
        "Times a session reached the end of its fallback chain: a new login is needed.",
        "{event}",
    ),
    _event(
        "store_unavailable",
        "authpulse_store_unavailable",
        "authpulse.store.unavailable",
        (),
        "Times a session found its shared store unavailable (it refreshes locally meanwhile).",
        "{event}",
    ),
    _event(
        "hook_failures",
        "authpulse_token_update_hook_failures",
        "authpulse.token.update_hook_failures",
        (),
        "on_token_update hooks that raised (the new token was installed anyway).",
        "{event}",
    ),
    # -- counted from manager events --------------------------------------------------
    _event(
        "sessions_created",
        "authpulse_sessions_created",
        "authpulse.sessions.created",
        ("kind",),
        "Sessions created by a SessionManager, by kind.",
        "{session}",
    ),
    _event(
        "status_changes",
        "authpulse_session_status_changes",
        "authpulse.session.status_changes",
        ("status",),
        "Lifecycle status changes of managed sessions, by the status entered.",
        "{change}",
    ),
    _event(
        "heartbeats",
        "authpulse_heartbeats",
        "authpulse.heartbeats",
        ("outcome",),
        "Heartbeat probes of managed sessions, by outcome (ok, failed).",
        "{probe}",
    ),
    _event(
        "revocations",
        "authpulse_revocations",
        "authpulse.revocations",
        ("outcome",),
        "Grants revoked when managed sessions ended, by outcome (ok, failed).",
        "{revocation}",
    ),
    # -- read at collection time --------------------------------------------------------
    _seen(
        "sessions",
        "authpulse_sessions",
        "authpulse.sessions",
        "gauge",
        ("status", "kind"),
        "Managed sessions by lifecycle status and kind (and owner, if enabled).",
        "{session}",
    ),
    _seen(
        "health_band",
        "authpulse_sessions_by_health_band",
        "authpulse.sessions.health_band",
        "gauge",
        ("band",),
        "Open sessions by health band (excellent, good, fair, poor, critical).",
        "{session}",
    ),
    _seen(
        "session_health",
        "authpulse_session_health_score",
        "authpulse.session.health_score",
        "gauge",
        ("session",),
        "Health score of a session, 0 to 100.",
    ),
    _seen(
        "session_expiry",
        "authpulse_session_token_expires_in_seconds",
        "authpulse.session.token.expires_in",
        "gauge",
        ("session",),
        "Seconds until a session's access token expires (0 once expired).",
        "s",
    ),
    _seen(
        "breaker_state",
        "authpulse_breaker_state",
        "authpulse.breaker.state",
        "gauge",
        ("upstream", "state"),
        "Circuit breakers per upstream in each state (1/0 for a single breaker).",
        "{breaker}",
    ),
    _seen(
        "breaker_opens",
        "authpulse_breaker_opens",
        "authpulse.breaker.opens",
        "counter",
        ("upstream",),
        "Times the circuit breakers of an upstream opened.",
        "{event}",
    ),
    _seen(
        "breaker_rejected",
        "authpulse_breaker_rejected_calls",
        "authpulse.breaker.rejected_calls",
        "counter",
        ("upstream",),
        "Calls refused by an open circuit breaker, per upstream.",
        "{call}",
    ),
    _seen(
        "cache_hits",
        "authpulse_cache_hits",
        "authpulse.cache.hits",
        "counter",
        ("cache",),
        "Fresh answers served from a response cache.",
        "{response}",
    ),
    _seen(
        "cache_misses",
        "authpulse_cache_misses",
        "authpulse.cache.misses",
        "counter",
        ("cache",),
        "Cacheable requests that went upstream.",
        "{request}",
    ),
    _seen(
        "cache_stale_served",
        "authpulse_cache_stale_served",
        "authpulse.cache.stale_served",
        "counter",
        ("cache", "mode"),
        "Stale answers served: while revalidating (revalidate) or on an upstream failure (error).",
        "{response}",
    ),
    _seen(
        "cache_revalidations",
        "authpulse_cache_revalidations",
        "authpulse.cache.revalidations",
        "counter",
        ("cache",),
        "Background revalidations started.",
        "{request}",
    ),
    _seen(
        "cache_revalidation_errors",
        "authpulse_cache_revalidation_errors",
        "authpulse.cache.revalidation_errors",
        "counter",
        ("cache",),
        "Background revalidations that failed.",
        "{request}",
    ),
    _seen(
        "cache_not_cached",
        "authpulse_cache_not_cached",
        "authpulse.cache.not_cached",
        "counter",
        ("cache",),
        "Answers not stored (uncacheable, or the request bypassed the cache).",
        "{response}",
    ),
    _seen(
        "cache_evictions",
        "authpulse_cache_evictions",
        "authpulse.cache.evictions",
        "counter",
        ("cache",),
        "Entries evicted to respect the cache's bounds.",
        "{entry}",
    ),
    _seen(
        "cache_entries",
        "authpulse_cache_entries",
        "authpulse.cache.entries",
        "gauge",
        ("cache",),
        "Entries in a response cache.",
        "{entry}",
    ),
    _seen(
        "cache_bytes",
        "authpulse_cache_size_bytes",
        "authpulse.cache.size",
        "gauge",
        ("cache",),
        "Bytes held by a response cache.",
        "By",
    ),
    _seen(
        "manager_ticks",
        "authpulse_manager_ticks",
        "authpulse.manager.ticks",
        "counter",
        (),
        "Maintenance ticks run by SessionManager workers.",
        "{tick}",
    ),
    _seen(
        "manager_tick_errors",
        "authpulse_manager_tick_errors",
        "authpulse.manager.tick_errors",
        "counter",
        (),
        "Maintenance ticks that raised (logged; the worker keeps running).",
        "{tick}",
    ),
    _seen(
        "manager_workers",
        "authpulse_manager_worker_running",
        "authpulse.manager.worker_running",
        "gauge",
        (),
        "SessionManager workers running (1 per running manager).",
        "{worker}",
    ),
)

SPECS: Final[Mapping[str, MetricSpec]] = {s.key: s for s in METRICS}

#: bucket upper bounds of the refresh duration histogram, seconds
DURATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# The public names defined here show the module they are imported from.
for _public in (MetricSpec,):
    _public.__module__ = "authpulse.metrics"
del _public

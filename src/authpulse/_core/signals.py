"""Typed session events: what a :class:`~authpulse.Session` and its clients report.

A session, its retry transport, its response cache and its circuit breakers
report what happens as :class:`SessionEvent` values: a
:class:`SessionEventKind`, flat JSON-safe fields, and — for a failure — the
exception class in :attr:`SessionEvent.error` (never its message). The
manager, the auth state machine, the metrics and the dashboard read these
typed values; none of them compares event names or class names as strings.

The kinds' values are the names the listeners of
:meth:`Session.add_listener <authpulse.Session.add_listener>` have always
seen (``"refreshed"``, ``"api_retry_scheduled"``, ...), and :func:`journal_entry`
maps a session event to the :class:`~authpulse.EventKind` and fields the
manager publishes, so journals written before stay readable.

Pure: no clock, no I/O, no locks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from .events import EventKind, FieldValue

__all__ = [
    "ApiEventKind",
    "LegacyListener",
    "SessionEvent",
    "SessionEventHook",
    "SessionEventKind",
    "api_kind",
    "journal_entry",
]


class ApiEventKind(enum.StrEnum):
    """What a session's API client reports: retries, cache answers, breaker moves.

    The values are the ``kind`` strings the ``on_event`` hooks of
    :class:`~authpulse.RetryTransport` and :class:`~authpulse.CacheTransport`
    receive (a member is a ``str`` equal to its value).
    """

    ATTEMPT = "attempt"  #: an attempt of an API call starts
    RETRY_SCHEDULED = "retry_scheduled"  #: a failed attempt will be retried
    BUDGET_EXHAUSTED = "budget_exhausted"  #: the upstream's retry budget is spent
    GAVE_UP = "gave_up"  #: the call ends on a transient failure
    STALE_SERVED = "stale_served"  #: a stale cached answer replaced a failure
    REVALIDATED = "revalidated"  #: a background revalidation finished
    REVALIDATION_FAILED = "revalidation_failed"  #: a background revalidation failed
    BREAKER_STATE = "breaker_state"  #: a circuit breaker changed state


class SessionEventKind(enum.StrEnum):
    """What happened to a session (the values are the listener ``kind`` names)."""

    REFRESH_STARTED = "refresh_started"  #: this caller leads a refresh
    REFRESHED = "refreshed"  #: a token set was installed
    REFRESH_FAILED = "refresh_failed"  #: a refresh produced no token set
    RETRY = "retry"  #: a token endpoint attempt failed and is retried
    LOGIN_REQUIRED = "login_required"  #: no source can help without a new login
    LOGIN_COMPLETED = "login_completed"  #: ``set_token`` installed a new login's set
    FALLBACK_USED = "fallback_used"  #: a fallback level of the chain produced the token
    PRIMARY_RECOVERED = "primary_recovered"  #: the primary source works again
    TOKEN_RECORD_REPLACED = "token_record_replaced"  #: an unusable stored set was replaced
    HOOK_FAILED = "hook_failed"  #: the ``on_token_update`` hook raised
    STORE_UNAVAILABLE = "store_unavailable"  #: the shared store failed
    STORE_RECOVERED = "store_recovered"  #: the shared store works again
    API_ATTEMPT = "api_attempt"
    API_RETRY_SCHEDULED = "api_retry_scheduled"
    API_BUDGET_EXHAUSTED = "api_budget_exhausted"
    API_GAVE_UP = "api_gave_up"
    API_STALE_SERVED = "api_stale_served"
    API_REVALIDATED = "api_revalidated"
    API_REVALIDATION_FAILED = "api_revalidation_failed"
    API_BREAKER_STATE = "api_breaker_state"


#: the session event each API client event becomes
_FROM_API: Final[Mapping[ApiEventKind, SessionEventKind]] = MappingProxyType(
    {api: SessionEventKind["API_" + api.name] for api in ApiEventKind}
)


def api_kind(kind: object) -> ApiEventKind | None:
    """``kind`` (an :class:`ApiEventKind` or its value) as a member, ``None`` if unknown."""
    if isinstance(kind, ApiEventKind):
        return kind
    if not isinstance(kind, str):
        return None
    try:
        return ApiEventKind(kind)
    except ValueError:
        return None


def _frozen(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(fields))


def _no_fields() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing a session reported: its kind, flat fields, and the error class.

    ``fields`` are flat JSON scalars (read-only) and never carry a secret;
    ``error`` is the class of the exception behind a failure (``None``
    otherwise): ask :meth:`failed_with`, never compare class names.
    """

    kind: SessionEventKind
    fields: Mapping[str, FieldValue] = field(default_factory=_no_fields)
    error: type[BaseException] | None = None

    @classmethod
    def of(
        cls,
        kind: SessionEventKind,
        fields: Mapping[str, Any],
        error: type[BaseException] | None = None,
    ) -> SessionEvent:
        """An event with a read-only copy of ``fields``."""
        return cls(kind, _frozen(fields), error)

    @classmethod
    def from_api(cls, kind: ApiEventKind, fields: Mapping[str, Any]) -> SessionEvent:
        """The session event for an event of one of the session's API clients."""
        return cls(_FROM_API[kind], _frozen(fields))

    def failed_with(self, error: type[BaseException]) -> bool:
        """True if the failure behind this event is an ``error`` (or a subclass)."""
        return self.error is not None and issubclass(self.error, error)


#: A typed session event hook (see :meth:`authpulse.Session.add_event_hook`).
SessionEventHook: TypeAlias = Callable[[SessionEvent], object]


@dataclass(frozen=True, slots=True)
class LegacyListener:
    """Adapts a ``fn(kind, fields)`` listener to the typed hook: ``fn(kind.value, fields)``."""

    fn: Callable[[str, dict[str, Any]], object]

    def __call__(self, event: SessionEvent) -> None:
        self.fn(event.kind.value, dict(event.fields))


#: how the manager publishes a session event: its EventKind and any added fields
_JOURNAL: Final[Mapping[SessionEventKind, tuple[EventKind, Mapping[str, FieldValue]]]] = (
    MappingProxyType(
        {
            SessionEventKind.REFRESHED: (EventKind.TOKEN_REFRESHED, {}),
            SessionEventKind.REFRESH_FAILED: (EventKind.REFRESH_FAILED, {}),
            SessionEventKind.RETRY: (EventKind.RETRY_SCHEDULED, {}),
            SessionEventKind.FALLBACK_USED: (EventKind.FALLBACK_USED, {}),
            SessionEventKind.PRIMARY_RECOVERED: (
                EventKind.RECOVERED,
                {"reason": "primary source works again"},
            ),
            SessionEventKind.LOGIN_REQUIRED: (EventKind.LOGIN_REQUIRED, {}),
            SessionEventKind.TOKEN_RECORD_REPLACED: (EventKind.TOKEN_RECORD_REPLACED, {}),
        }
    )
)


def journal_entry(event: SessionEvent) -> tuple[EventKind, dict[str, FieldValue]] | None:
    """The manager event (kind and fields) a session event is published as, if any.

    The fields are those listeners have always seen, so the JSONL journal
    keeps its format.
    """
    entry = _JOURNAL.get(event.kind)
    if entry is None:
        return None
    kind, extra = entry
    return kind, {**extra, **event.fields}


# The public names defined here show the module they are imported from.
for _public in (
    ApiEventKind,
    SessionEvent,
    SessionEventKind,
):
    _public.__module__ = "authpulse"
del _public

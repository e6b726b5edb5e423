"""Label values, and which event counters a session or manager event moves.

Label values are drawn from closed vocabularies (reasons, error classes,
states, bands), from origins (``https://api.example.com:443``: no path, no
query, no user-info) or from names the user chose. Session ids and owners
appear only when the user opts in. Nothing here ever reads a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .._core.errors import ConfigurationError
from .._core.signals import SessionEvent, SessionEventKind
from .._fleet.manager import ManagedSession
from .._runtime.events import Event, EventKind
from .._sessions.session import Session
from ._catalogue import Labels

__all__ = [
    "MAX_LABEL",
    "increments",
    "label_value",
    "manager_increments",
    "session_label",
    "upstream_label",
]

#: the longest label value (and name a user may choose)
MAX_LABEL: Final = 200


def label_value(value: object, default: str = "unknown") -> str:
    """A label value: a short string, "unknown" for a missing one."""
    if value is None or value == "":
        return default
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_LABEL]


def upstream_label(value: object) -> str:
    """An upstream label: an origin as the breaker registry keys it, user-info removed."""
    text = label_value(value)
    if "://" in text and "@" in text:
        scheme, rest = text.split("://", 1)
        text = f"{scheme}://{rest.rsplit('@', 1)[1]}"
    return text


def increments(event: SessionEvent) -> list[tuple[str, Labels]]:
    """The event counters moved by one session event."""
    get = event.fields.get
    match event.kind:
        case SessionEventKind.REFRESHED:
            return [("refreshes", (label_value(get("reason")),))]
        case SessionEventKind.REFRESH_FAILED:
            return [
                ("refresh_failures", (label_value(get("reason")), label_value(get("error_class"))))
            ]
        case SessionEventKind.RETRY:
            return [("token_retries", (label_value(get("error_class")),))]
        case SessionEventKind.API_RETRY_SCHEDULED:
            return [
                ("api_retries", (upstream_label(get("upstream")), label_value(get("error_class"))))
            ]
        case SessionEventKind.API_GAVE_UP:
            return [
                (
                    "api_gave_up",
                    (
                        upstream_label(get("upstream")),
                        label_value(get("reason")),
                        label_value(get("error_class")),
                    ),
                )
            ]
        case SessionEventKind.API_BUDGET_EXHAUSTED:
            return [("api_budget_exhausted", (upstream_label(get("upstream")),))]
        case SessionEventKind.API_STALE_SERVED:
            return [("api_stale_served", (label_value(get("mode")),))]
        case SessionEventKind.API_BREAKER_STATE:
            return [
                ("breaker_transitions", (upstream_label(get("upstream")), label_value(get("to"))))
            ]
        case SessionEventKind.FALLBACK_USED:
            return [("fallback_used", (label_value(get("level")),))]
    simple = _SIMPLE.get(event.kind)
    return [(simple, ())] if simple is not None else []


_SIMPLE: Final[Mapping[SessionEventKind, str]] = {
    SessionEventKind.PRIMARY_RECOVERED: "primary_recovered",
    SessionEventKind.LOGIN_REQUIRED: "login_required",
    SessionEventKind.STORE_UNAVAILABLE: "store_unavailable",
    SessionEventKind.HOOK_FAILED: "hook_failures",
}


def manager_increments(event: Event) -> list[tuple[str, Labels]]:
    """The event counters moved by one manager event."""
    kind = event.kind
    if kind is EventKind.SESSION_CREATED:
        return [("sessions_created", (label_value(event.fields.get("session_kind")),))]
    if kind is EventKind.STATUS_CHANGED:
        return [("status_changes", (label_value(event.fields.get("to")),))]
    if kind is EventKind.HEARTBEAT:
        return [("heartbeats", ("ok" if event.fields.get("ok") else "failed",))]
    if kind is EventKind.REVOKED:
        return [("revocations", ("ok",))]
    if kind is EventKind.REVOCATION_FAILED:
        return [("revocations", ("failed",))]
    return []


def _is_managed(session: Session) -> bool:
    hooks = session.event_hooks
    return any(isinstance(getattr(fn, "__self__", None), ManagedSession) for fn in hooks)


def session_label(session: Session, name: str | None) -> str:
    """The ``session`` label of a session instrumented on its own.

    ``name`` if given, else the session's ``name`` — except for a session a
    :class:`SessionManager` owns, whose name is its id: ids are labels only
    when the user asks (``name=``, or ``instrument_manager(session_ids=True)``).
    """
    if not isinstance(session, Session):
        raise ConfigurationError("instrument_session needs an authpulse.Session")
    if name is not None:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_LABEL:
            raise ConfigurationError(f"name must be a string of 1 to {MAX_LABEL} characters")
        return name
    if _is_managed(session):
        raise ConfigurationError(
            "this session belongs to a SessionManager and is named by its id: pass name= "
            "to label it, or use instrument_manager(manager, session_ids=True)"
        )
    return session.name[:MAX_LABEL]

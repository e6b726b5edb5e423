"""Typed events: what happened to a session, as values.

Every change to a session is an :class:`Event`: a kind, the time it
happened (given by the caller; nothing here reads a clock), the session and
owner it concerns, labels, and flat JSON-safe fields. Events never carry
secrets: field names that look like one are refused at construction, and
values must be plain scalars, so a ``SecretStr`` or a token set cannot slip
in. The bus and the journal that carry them are in the runtime.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeAlias

from .errors import ConfigurationError
from .redact import is_secret_name

__all__ = ["Event", "EventKind", "FieldValue", "Label", "labels_for"]


class EventKind(enum.StrEnum):
    """What happened."""

    SESSION_CREATED = "session_created"
    ACTIVITY = "activity"  #: a request or other use of the session
    UPDATED = "updated"  #: metadata, phase or step changed
    STATE_CHANGED = "state_changed"  #: the auth state machine moved
    STATUS_CHANGED = "status_changed"  #: the lifecycle status moved
    TOKEN_REFRESHED = "token_refreshed"
    REFRESH_FAILED = "refresh_failed"
    RETRY_SCHEDULED = "retry_scheduled"
    FALLBACK_USED = "fallback_used"  #: a fallback token source produced the token
    LOGIN_REQUIRED = "login_required"  #: no source can help without a new login
    #: the stored token set was unusable (corrupt, or plaintext in an encrypted
    #: store) and was replaced by one fetched afresh
    TOKEN_RECORD_REPLACED = "token_record_replaced"
    STUCK = "stuck"  #: a state was held longer than its limit
    RECOVERED = "recovered"  #: a stuck state or a crashed session was recovered
    PAUSED = "paused"
    RESUMED = "resumed"
    CLOSED = "closed"
    ERROR = "error"
    HEARTBEAT = "heartbeat"
    ARCHIVED = "archived"
    PURGED = "purged"  #: deleted by the retention purge
    REVOKED = "revoked"  #: the grant was revoked at the IdP when the session ended
    REVOCATION_FAILED = "revocation_failed"  #: the IdP did not confirm the revocation


class Label(enum.StrEnum):
    """The standard labels (from the source documents: session, active, error, completed).

    Labels are free-form strings; these are the ones authpulse itself uses.
    """

    SESSION = "session"
    ACTIVE = "active"
    ERROR = "error"
    COMPLETED = "completed"


_ERROR_KINDS: Final = frozenset(
    {
        EventKind.ERROR,
        EventKind.REFRESH_FAILED,
        EventKind.LOGIN_REQUIRED,
        EventKind.STUCK,
        EventKind.REVOCATION_FAILED,
    }
)
_COMPLETED_KINDS: Final = frozenset(
    {EventKind.CLOSED, EventKind.ARCHIVED, EventKind.PURGED, EventKind.REVOKED}
)


def labels_for(kind: EventKind) -> tuple[str, ...]:
    """The standard labels for an event of ``kind``.

    Always ``session``; then ``error`` for failures, ``completed`` for the
    end of a session, ``active`` otherwise.
    """
    if kind in _ERROR_KINDS:
        return (Label.SESSION.value, Label.ERROR.value)
    if kind in _COMPLETED_KINDS:
        return (Label.SESSION.value, Label.COMPLETED.value)
    return (Label.SESSION.value, Label.ACTIVE.value)


#: A field value: a flat JSON scalar (finite floats only).
FieldValue: TypeAlias = str | int | float | bool | None


def _scalar(name: str, value: object) -> FieldValue:
    """``value`` as a plain JSON scalar, or ConfigurationError (naming the type, not the value)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"event field {name!r} must be a finite number")
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise ConfigurationError(
        f"event field {name!r} must be a str, int, float, bool or None, not {type(value).__name__}"
    )


def _optional_str(what: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"event {what} must be a str or None, not {type(value).__name__}")
    return str.__str__(value)


def _empty_fields() -> Mapping[str, FieldValue]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a session, at ``at`` (seconds since the epoch).

    ``fields`` is a flat mapping of JSON scalars, copied and made read-only.
    Construction refuses secret-looking field names (the one rule of
    :func:`authpulse.is_secret_name`: ``access_token``, ``clientSecret``,
    ``x-api-key``, ...) and values
    that are not flat JSON scalars, with :class:`~authpulse.ConfigurationError`.
    """

    kind: EventKind
    at: float
    session_id: str | None = None
    owner: str | None = None
    labels: tuple[str, ...] = ()
    fields: Mapping[str, FieldValue] = field(default_factory=_empty_fields, hash=False)

    def __post_init__(self) -> None:
        kind: object = self.kind
        if not isinstance(kind, EventKind):
            raise ConfigurationError(f"event kind must be an EventKind, not {kind!r}")
        at: object = self.at
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ConfigurationError("event time must be a finite number of seconds")
        object.__setattr__(self, "at", float(at))
        object.__setattr__(self, "session_id", _optional_str("session_id", self.session_id))
        object.__setattr__(self, "owner", _optional_str("owner", self.owner))
        labels: object = self.labels  # checked at run time: callers may not be typed
        if not isinstance(labels, tuple | list):
            raise ConfigurationError("event labels must be a tuple of strings")
        clean_labels: list[str] = []
        for label in labels:
            if not isinstance(label, str) or not label:
                raise ConfigurationError("event labels must be non-empty strings")
            clean_labels.append(str.__str__(label))
        object.__setattr__(self, "labels", tuple(clean_labels))
        fields: object = self.fields
        if not isinstance(fields, Mapping):
            raise ConfigurationError("event fields must be a mapping")
        clean: dict[str, FieldValue] = {}
        for name, value in fields.items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError("event field names must be non-empty strings")
            if is_secret_name(name):
                raise ConfigurationError(
                    f"event field name {name!r} looks like a secret; events never carry secrets"
                )
            clean[str.__str__(name)] = _scalar(name, value)
        object.__setattr__(self, "fields", MappingProxyType(clean))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (plain types only)."""
        return {
            "kind": self.kind.value,
            "at": self.at,
            "session_id": self.session_id,
            "owner": self.owner,
            "labels": list(self.labels),
            "fields": dict(self.fields),
        }

    def to_json(self) -> str:
        """One line of compact JSON (ASCII only)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Event:
        """The inverse of :meth:`to_dict`. Raises ConfigurationError on a malformed dict."""
        unknown = set(data) - _KEYS
        if unknown:
            raise ConfigurationError(f"unknown event keys: {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ConfigurationError("event kind is missing or unknown")
        at = data.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise ConfigurationError("event time is missing or not a number")
        labels = data.get("labels", [])
        if not isinstance(labels, list):
            raise ConfigurationError("event labels must be a list")
        fields = data.get("fields", {})
        if not isinstance(fields, Mapping):
            raise ConfigurationError("event fields must be an object")
        session_id = _optional_str("session_id", data.get("session_id"))
        owner = _optional_str("owner", data.get("owner"))
        return cls(
            kind=EventKind(kind),
            at=at,
            session_id=session_id,
            owner=owner,
            labels=tuple(labels),
            fields=fields,
        )


_KEYS: Final = frozenset({"kind", "at", "session_id", "owner", "labels", "fields"})
_KINDS: Final = frozenset(k.value for k in EventKind)

#: A subscriber: called with each matching event; its return value is ignored.


# The public names defined here show the module they are imported from.
for _public in (
    Event,
    EventKind,
):
    _public.__module__ = "authpulse"
del _public

"""The session model: lifecycle statuses, kinds, metadata, the stored record.

Pure: records are immutable; every change is a function from a record (and
the time, passed in) to a new record. The manager's shells store them.
"""

from __future__ import annotations

import enum
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .errors import AuthpulseError, ConfigurationError
from .redact import redact_mapping

__all__ = [
    "TERMINAL",
    "ErrorDetails",
    "InvalidStatusChangeError",
    "SessionKind",
    "SessionMetadata",
    "SessionRecord",
    "SessionStatus",
    "check_id",
    "check_status_change",
    "validate_labels",
]


class SessionStatus(enum.StrEnum):
    """Lifecycle status of a managed session."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True for COMPLETED, FAILED, TIMEOUT and CANCELLED: nothing leaves them."""
        return self in TERMINAL


TERMINAL = frozenset(
    {SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.TIMEOUT, SessionStatus.CANCELLED}
)

#: allowed lifecycle changes (from -> to), as data
STATUS_TRANSITIONS: Mapping[SessionStatus, frozenset[SessionStatus]] = MappingProxyType(
    {
        SessionStatus.ACTIVE: frozenset({SessionStatus.PAUSED} | TERMINAL),
        SessionStatus.PAUSED: frozenset({SessionStatus.ACTIVE} | TERMINAL),
        **{s: frozenset() for s in TERMINAL},
    }
)


class SessionKind(enum.StrEnum):
    """What a session is for."""

    USER = "user"
    DEVELOPMENT = "development"
    SYSTEM = "system"
    INTEGRATION = "integration"


class InvalidStatusChangeError(AuthpulseError):
    """A lifecycle change the status table does not allow (e.g. resuming a closed session)."""

    def __init__(self, session_id: str, current: SessionStatus, wanted: SessionStatus) -> None:
        self.session_id = session_id
        self.current = current
        self.wanted = wanted
        super().__init__(f"session {session_id!r} cannot go from {current.value} to {wanted.value}")


def check_status_change(session_id: str, current: SessionStatus, wanted: SessionStatus) -> None:
    """Raise :class:`InvalidStatusChangeError` unless the table allows ``current -> wanted``."""
    if wanted not in STATUS_TRANSITIONS[current]:
        raise InvalidStatusChangeError(session_id, current, wanted)


#: the longest session id (a store key: its lock name adds a short prefix)
MAX_ID_LENGTH = 128


def _unfit(char: str) -> bool:
    return char.isspace() or not char.isprintable()


def check_id(value: object, what: str, max_length: int = MAX_ID_LENGTH) -> str:
    """The one rule for ids that become store keys and lock names (session ids,
    ``Session(store_key=)``, the names of :class:`~authpulse.StoreLock`): a string
    of 1 to ``max_length`` printable characters, none of them whitespace or a
    control character. Letters of any script, digits and punctuation (``. : / - _
    @ |`` ...) are fine; spaces, tabs, newlines, escapes (ESC, DEL, C1), format
    characters such as bidirectional overrides, and lone surrogates are not.

    Returns ``value``; anything else raises :class:`ConfigurationError` naming
    ``what``, quoting at most a short, escaped excerpt of the value.
    """
    rule = (
        f"{what} must be 1 to {max_length} printable characters without whitespace or control "
        "characters"
    )
    if not isinstance(value, str):
        raise ConfigurationError(f"{rule}, not {type(value).__name__}")
    if not value:
        raise ConfigurationError(f"{rule}, not empty")
    if len(value) > max_length:
        raise ConfigurationError(
            f"{rule}; it has {len(value)} characters (starting {_excerpt(value)})"
        )
    # a printable character is whitespace only if it is the ASCII space
    if value.isprintable() and " " not in value:
        return value
    at, char = next((i, c) for i, c in enumerate(value) if _unfit(c))
    kind = (
        "whitespace"
        if char.isspace()
        else "a control character"
        if unicodedata.category(char) == "Cc"
        else "an unprintable character"
    )
    raise ConfigurationError(
        f"{rule}; {_excerpt(value)} has {kind} (U+{ord(char):04X}) at position {at}"
    )


def _excerpt(value: str, limit: int = 20) -> str:
    """A short excerpt of ``value`` as ASCII-only text (every other character escaped)."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


_Scalar = str | int | float | bool | None
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_.:/-]{0,62}$")


def _scalar_map(value: Mapping[str, Any] | None, what: str) -> Mapping[str, _Scalar]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping of names to scalars")
    out: dict[str, _Scalar] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k or len(k) > 64:
            raise ConfigurationError(f"{what} keys must be non-empty strings of at most 64 chars")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigurationError(f"{what}[{k!r}] must be a finite number")
        if not isinstance(v, str | int | float | bool) and v is not None:
            raise ConfigurationError(
                f"{what}[{k!r}] must be a string, number, boolean or None, not {type(v).__name__}"
            )
        if isinstance(v, str) and len(v) > 1024:
            raise ConfigurationError(f"{what}[{k!r}] is longer than 1024 characters")
        out[k] = v
    return MappingProxyType(out)


def _opt_str(value: object, what: str, limit: int = 512) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise ConfigurationError(f"{what} is longer than {limit} characters")
    return value


@dataclass(frozen=True, slots=True)
class SessionMetadata:
    """Who and where: user agent, IP address, device, and your own fields."""

    user_agent: str | None = None
    ip_address: str | None = None
    device: str | None = None
    custom: Mapping[str, _Scalar] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        _opt_str(self.user_agent, "metadata.user_agent")
        _opt_str(self.ip_address, "metadata.ip_address", 64)
        _opt_str(self.device, "metadata.device")
        object.__setattr__(self, "custom", _scalar_map(self.custom, "metadata.custom"))

    @classmethod
    def coerce(cls, value: SessionMetadata | Mapping[str, Any] | None) -> SessionMetadata:
        """Accept a ``SessionMetadata``, a dict of its fields, or ``None``."""
        if value is None:
            return _EMPTY_METADATA
        if isinstance(value, SessionMetadata):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError("metadata must be a SessionMetadata or a mapping")
        unknown = set(value) - {"user_agent", "ip_address", "device", "custom"}
        if unknown:
            raise ConfigurationError(
                f"unknown metadata fields: {sorted(unknown)}; put your own under 'custom'"
            )
        return cls(**value)

    def merged(self, changes: Mapping[str, Any]) -> SessionMetadata:
        """A copy with ``changes`` applied (``custom`` is merged key by key)."""
        base = {
            "user_agent": self.user_agent,
            "ip_address": self.ip_address,
            "device": self.device,
            "custom": dict(self.custom),
        }
        for k, v in changes.items():
            if k == "custom":
                base["custom"] = {**base["custom"], **_scalar_map(v, "metadata.custom")}  # type: ignore[dict-item]
            else:
                base[k] = v
        return SessionMetadata.coerce(base)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_agent": self.user_agent,
            "ip_address": self.ip_address,
            "device": self.device,
            "custom": dict(self.custom),
        }


_EMPTY_METADATA = SessionMetadata()


def validate_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Labels are short lowercase identifiers; returns them sorted, without duplicates."""
    if isinstance(labels, str):
        raise ConfigurationError("labels must be a collection of strings, not one string")
    out = set()
    for label in labels:
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ConfigurationError(
                "labels must be lowercase identifiers (a-z 0-9 _ . : / -), at most 63 chars"
            )
        out.add(label)
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """Why a session failed or is in trouble. ``message`` never holds a secret."""

    message: str
    error_class: str | None = None
    at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "error_class": self.error_class, "at": self.at}


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """The stored part of a managed session. Immutable; ``version`` increases
    with every write (optimistic concurrency)."""

    id: str
    owner: str
    kind: SessionKind
    status: SessionStatus
    created_at: float
    last_activity_at: float
    auth_state: str = "fresh"
    metadata: SessionMetadata = _EMPTY_METADATA
    labels: tuple[str, ...] = ("active", "session")
    phase: str | None = None
    step: str | None = None
    ended_at: float | None = None
    paused_reason: str | None = None
    error: ErrorDetails | None = None
    version: int = 0

    def with_status(
        self,
        status: SessionStatus,
        *,
        now: float,
        error: ErrorDetails | None = None,
        reason: str | None = None,
    ) -> SessionRecord:
        """The record after a lifecycle change (checked against the table)."""
        check_status_change(self.id, self.status, status)
        labels = set(self.labels) - {"active", "paused"}
        if status is SessionStatus.ACTIVE:
            labels.add("active")
        elif status is SessionStatus.PAUSED:
            labels.add("paused")
        elif status is SessionStatus.COMPLETED:
            labels.add("completed")
        else:
            labels.add("error" if status is SessionStatus.FAILED else status.value.lower())
        return replace(
            self,
            status=status,
            labels=tuple(sorted(labels)),
            ended_at=now if status.terminal else None,
            paused_reason=reason if status is SessionStatus.PAUSED else None,
            error=error if error is not None else self.error,
            last_activity_at=now if status is SessionStatus.ACTIVE else self.last_activity_at,
        )

    @property
    def duration(self) -> float | None:
        """Seconds from creation to end, for ended sessions."""
        return None if self.ended_at is None else self.ended_at - self.created_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "owner": self.owner,
            "kind": self.kind.value,
            "status": self.status.value,
            "auth_state": self.auth_state,
            "metadata": self.metadata.to_dict(),
            "labels": list(self.labels),
            "phase": self.phase,
            "step": self.step,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
            "ended_at": self.ended_at,
            "paused_reason": self.paused_reason,
            "error": self.error.to_dict() if self.error else None,
            "version": self.version,
        }

    def to_public_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` for showing or exporting: the values of custom
        metadata keys that look like a secret (see :func:`authpulse.is_secret_name`)
        are replaced by ``[redacted]``."""
        out = self.to_dict()
        out["metadata"]["custom"] = redact_mapping(out["metadata"]["custom"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionRecord:
        """Rebuild a record from :meth:`to_dict` output; bad data raises
        :class:`ConfigurationError` naming the field."""
        try:
            err = data.get("error")
            return cls(
                id=str(data["id"]),
                owner=str(data["owner"]),
                kind=SessionKind(data["kind"]),
                status=SessionStatus(data["status"]),
                auth_state=str(data.get("auth_state", "fresh")),
                metadata=SessionMetadata.coerce(data.get("metadata")),
                labels=validate_labels(data.get("labels", ())),
                phase=data.get("phase"),
                step=data.get("step"),
                created_at=float(data["created_at"]),
                last_activity_at=float(data["last_activity_at"]),
                ended_at=None if data.get("ended_at") is None else float(data["ended_at"]),
                paused_reason=data.get("paused_reason"),
                error=ErrorDetails(**err) if isinstance(err, Mapping) else None,
                version=int(data.get("version", 0)),
            )
        except KeyError as exc:
            raise ConfigurationError(f"session record is missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"session record is malformed: {type(exc).__name__}") from None


# The public names defined here show the module they are imported from.
for _public in (
    ErrorDetails,
    InvalidStatusChangeError,
    SessionKind,
    SessionMetadata,
    SessionRecord,
    SessionStatus,
):
    _public.__module__ = "authpulse"
del _public

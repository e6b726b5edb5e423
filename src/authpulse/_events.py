"""Typed events, an in-process bus, and a JSONL journal sink.

Every change to a session is an :class:`Event`: a kind, the time it
happened (given by the caller; nothing here reads a clock), the session and
owner it concerns, labels, and flat JSON-safe fields. Events never carry
secrets: field names that look like one are refused at construction, and
values must be plain scalars, so a ``SecretStr`` or a token set cannot slip
in.

:class:`EventBus` delivers events to subscribers and keeps a bounded ring of
recent ones; :class:`JsonlJournal` is a sink that appends one JSON line per
event, and :func:`read_journal` reads a journal back.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Final, TextIO, TypeAlias

from ._errors import AuthpulseError, ConfigurationError, UsageError
from ._redact import is_secret_name

__all__ = [
    "Event",
    "EventBus",
    "EventKind",
    "FieldValue",
    "JournalError",
    "JsonlJournal",
    "Label",
    "Subscriber",
    "Unsubscribe",
    "labels_for",
    "read_journal",
]

_log = logging.getLogger("authpulse.events")


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


class Label(enum.StrEnum):
    """The standard labels (from the source documents: session, active, error, completed).

    Labels are free-form strings; these are the ones authpulse itself uses.
    """

    SESSION = "session"
    ACTIVE = "active"
    ERROR = "error"
    COMPLETED = "completed"


_ERROR_KINDS: Final = frozenset(
    {EventKind.ERROR, EventKind.REFRESH_FAILED, EventKind.LOGIN_REQUIRED, EventKind.STUCK}
)
_COMPLETED_KINDS: Final = frozenset({EventKind.CLOSED, EventKind.ARCHIVED, EventKind.PURGED})


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
Subscriber: TypeAlias = Callable[[Event], object]
#: What :meth:`EventBus.subscribe` returns: call it to unsubscribe (idempotent).
Unsubscribe: TypeAlias = Callable[[], None]


class EventBus:
    """Delivers events to subscribers and remembers the most recent ones.

    Thread-safe. Subscribers are called in the publishing thread, in
    subscription order, *outside* the bus's lock: a subscriber may publish
    or unsubscribe, and a slow one delays only its publisher. With several
    threads publishing at once, a subscriber may see their events in a
    different order than :meth:`recent` lists them.

    A subscriber that raises is logged on the ``authpulse.events`` logger
    and counted in :attr:`errors`; the exception is never re-raised and the
    other subscribers still get the event.
    """

    def __init__(self, *, history: int = 1000) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ConfigurationError(f"history must be an int >= 0, not {history!r}")
        self._lock = threading.Lock()
        self._subs: dict[int, tuple[Subscriber, frozenset[EventKind] | None]] = {}
        self._next_id = 0
        self._ring: deque[Event] = deque(maxlen=history)
        self._published = 0
        self._errors = 0

    def subscribe(
        self, callback: Subscriber, *, kinds: Iterable[EventKind] | None = None
    ) -> Unsubscribe:
        """Call ``callback(event)`` for every published event (of ``kinds``, if given).

        Returns a callable that removes this subscription; calling it again
        does nothing.
        """
        if not callable(callback):
            raise ConfigurationError("subscriber must be callable")
        wanted: frozenset[EventKind] | None = None
        if kinds is not None:
            wanted = frozenset(kinds)
            if not wanted:
                raise ConfigurationError("kinds must name at least one EventKind (or be None)")
            if not all(isinstance(k, EventKind) for k in wanted):
                raise ConfigurationError("kinds must be EventKind members")
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._subs[key] = (callback, wanted)
        return functools.partial(self._unsubscribe, key)

    def _unsubscribe(self, key: int) -> None:
        with self._lock:
            self._subs.pop(key, None)

    def publish(self, event: Event) -> None:
        """Record ``event`` and deliver it to every matching subscriber."""
        with self._lock:
            self._ring.append(event)
            self._published += 1
            targets = [
                cb for cb, kinds in self._subs.values() if kinds is None or event.kind in kinds
            ]
        for callback in targets:
            try:
                callback(event)
            except Exception:
                with self._lock:
                    self._errors += 1
                _log.exception(
                    "event subscriber %s failed on a %s event",
                    getattr(callback, "__qualname__", type(callback).__qualname__),
                    event.kind.value,
                    extra={
                        "authpulse_event": "subscriber_failed",
                        "authpulse_session": event.session_id,
                        "authpulse_kind": event.kind.value,
                    },
                )

    def recent(self, n: int = 50, session_id: str | None = None) -> list[Event]:
        """The last ``n`` remembered events (of ``session_id``, if given), oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigurationError(f"n must be an int >= 0, not {n!r}")
        with self._lock:
            events = list(self._ring)
        if session_id is not None:
            events = [e for e in events if e.session_id == session_id]
        return events[len(events) - n :] if n < len(events) else events

    @property
    def published(self) -> int:
        """How many events were ever published."""
        with self._lock:
            return self._published

    @property
    def errors(self) -> int:
        """How many subscriber calls raised."""
        with self._lock:
            return self._errors

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are active."""
        with self._lock:
            return len(self._subs)

    def __repr__(self) -> str:
        return (
            f"<EventBus subscribers={self.subscriber_count} published={self.published} "
            f"errors={self.errors}>"
        )


class JournalError(AuthpulseError):
    """A journal could not be read: unreadable file, or a corrupt line.

    ``path`` is the journal; ``line`` is the 1-based line number of the
    corrupt line (``None`` when the file itself could not be read). The
    message never quotes the line's content.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_journal_error, (str(self), self.path, self.line))


def _journal_error(message: str, path: str, line: int | None) -> JournalError:
    return JournalError(message, path=path, line=line)


def _owner_only(path: str, flags: int) -> int:
    """Create journals readable by their owner only (they name users and sessions)."""
    return os.open(path, flags, 0o600)


class JsonlJournal:
    """An event sink appending one JSON line per event to ``path``.

    Opened in append mode and line-buffered, so every event is handed to the
    OS as soon as it is written; a new file is created with mode ``0o600``.
    Thread-safe. Use it as a subscriber (``bus.subscribe(journal)``) or call
    :meth:`write`. Close it with :meth:`close` or a ``with`` block; writing
    after that raises :class:`~authpulse.UsageError`. One process per file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._written = 0
        # the journal owns the file for its lifetime; close() releases it
        self._file: TextIO | None = open(  # noqa: SIM115
            self._path, "a", encoding="utf-8", newline="\n", buffering=1, opener=_owner_only
        )

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._path

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._file is None

    @property
    def written(self) -> int:
        """How many events this object has written."""
        with self._lock:
            return self._written

    def write(self, event: Event) -> None:
        """Append ``event`` as one line."""
        line = event.to_json() + "\n"
        with self._lock:
            if self._file is None:
                raise UsageError("the journal is closed")
            self._file.write(line)
            self._written += 1

    def __call__(self, event: Event) -> None:
        self.write(event)

    def close(self) -> None:
        """Flush and close the file. Idempotent."""
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            file.close()

    def __enter__(self) -> JsonlJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<JsonlJournal {str(self._path)!r} {state}>"


def read_journal(path: str | os.PathLike[str]) -> list[Event]:
    """Every event in the journal at ``path``, in file order.

    Blank lines are skipped. Raises :class:`JournalError` naming the line
    number of the first line that is not a valid event (including a line
    cut short by a crash), or if the file cannot be read.
    """
    where = os.fspath(path)
    events: list[Event] = []
    try:
        with open(where, "rb") as file:
            for lineno, raw in enumerate(file, start=1):
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw)
                except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                    raise JournalError(
                        f"{where}: line {lineno}: not valid JSON", path=where, line=lineno
                    ) from exc
                if not isinstance(data, dict):
                    raise JournalError(
                        f"{where}: line {lineno}: not a JSON object", path=where, line=lineno
                    )
                try:
                    events.append(Event.from_dict(data))
                except ConfigurationError as exc:
                    raise JournalError(
                        f"{where}: line {lineno}: not a valid event ({exc})",
                        path=where,
                        line=lineno,
                    ) from exc
    except OSError as exc:
        raise JournalError(
            f"{where}: cannot read the journal ({exc.strerror or type(exc).__name__})",
            path=where,
        ) from exc
    return events

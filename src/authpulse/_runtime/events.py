"""The in-process event bus and the JSONL journal sink.

The events themselves (:class:`~authpulse.Event`, :class:`~authpulse.EventKind`)
are values of the core. :class:`EventBus` delivers events to subscribers and keeps a bounded ring of
recent ones; :class:`JsonlJournal` is a sink that appends one JSON line per
event, and :func:`read_journal` reads a journal back.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TextIO, TypeAlias

from .._core.errors import AuthpulseError, ConfigurationError, UsageError
from .._core.events import Event, EventKind, FieldValue, Label, labels_for

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
]  # the event types are the core's, named here too for the journal's readers

_log = logging.getLogger("authpulse.events")


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


# The public names defined here show the module they are imported from.
for _public in (
    EventBus,
    JournalError,
    JsonlJournal,
    read_journal,
):
    _public.__module__ = "authpulse"
del _public

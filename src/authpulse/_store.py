"""Session stores: where records and timelines live.

``MemoryStore`` is the default. Every store offers the same operations,
synchronously and asynchronously: ``get``, ``put`` with optimistic
concurrency (the version the writer read must still be the stored one),
``query`` by owner / status / kind, ``delete`` (used only by an explicit
purge), and a bounded per-session timeline of events.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol, runtime_checkable

from ._errors import AuthpulseError
from ._events import Event
from ._model import SessionKind, SessionRecord, SessionStatus

__all__ = ["MemoryStore", "SessionStore", "StoreError", "VersionConflictError"]


class StoreError(AuthpulseError):
    """The store failed or is unavailable."""


class VersionConflictError(StoreError):
    """Another writer changed the record since it was read."""

    def __init__(self, session_id: str, expected: int | None, actual: int | None) -> None:
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"session {session_id!r} was changed concurrently (expected version {expected}, "
            f"found {actual})"
        )


@runtime_checkable
class SessionStore(Protocol):
    """What the session manager needs from a store."""

    def get(self, session_id: str) -> SessionRecord | None: ...

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        """Store ``record`` if the stored version is ``expected_version`` (``None``: the
        record must not exist yet). Returns the record with its new version."""
        ...

    def query(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]: ...

    def delete(self, session_id: str) -> bool: ...

    def append_event(self, session_id: str, event: Event) -> None: ...

    def events(self, session_id: str) -> list[Event]: ...

    def close(self) -> None: ...


class MemoryStore:
    """An in-process store: fast, thread-safe, gone when the process ends.

    ``timeline_limit`` bounds the events kept per session (oldest dropped).
    Queries are ordered by creation time, then id.
    """

    def __init__(self, *, timeline_limit: int = 200) -> None:
        self._records: dict[str, SessionRecord] = {}
        self._timelines: dict[str, deque[Event]] = {}
        self._lock = threading.Lock()
        self.timeline_limit = timeline_limit

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._records)} sessions)"

    def __len__(self) -> int:
        return len(self._records)

    def get(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    def put(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        with self._lock:
            current = self._records.get(record.id)
            actual = current.version if current is not None else None
            if actual != expected_version:
                raise VersionConflictError(record.id, expected_version, actual)
            stored = replace(record, version=(actual or 0) + 1)
            self._records[record.id] = stored
            return stored

    def query(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]:
        statuses = frozenset(status) if status is not None else None
        with self._lock:
            rows = [
                r
                for r in self._records.values()
                if (owner is None or r.owner == owner)
                and (statuses is None or r.status in statuses)
                and (kind is None or r.kind is kind)
            ]
        rows.sort(key=lambda r: (r.created_at, r.id))
        end = None if limit is None else offset + limit
        return rows[offset:end]

    def delete(self, session_id: str) -> bool:
        with self._lock:
            self._timelines.pop(session_id, None)
            return self._records.pop(session_id, None) is not None

    def append_event(self, session_id: str, event: Event) -> None:
        with self._lock:
            tl = self._timelines.get(session_id)
            if tl is None:
                tl = self._timelines[session_id] = deque(maxlen=self.timeline_limit)
            tl.append(event)

    def events(self, session_id: str) -> list[Event]:
        with self._lock:
            return list(self._timelines.get(session_id, ()))

    def close(self) -> None:
        """Nothing to release; present for symmetry with persistent stores."""

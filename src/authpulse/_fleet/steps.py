"""The store steps of a manager's flows: each one store call, made sync or
awaited by the driver (see ``flow``), and the optimistic write built on them.
Each step yields its :class:`Op` itself (no helper generator between: a
session's creation makes two of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .._core.errors import UsageError
from .._core.model import SessionRecord, SessionStatus
from .._stores.base import VersionConflictError
from .errors import SessionNotFoundError
from .flow import Flow, Op
from .managed import ManagedSession

if TYPE_CHECKING:
    from .._runtime.events import Event
    from .._sessions.stats import Aggregates
    from .._stores.base import SessionStore

__all__ = ["StoreSteps"]

#: how many times a write is tried again after a version conflict
_WRITE_ATTEMPTS = 8


class StoreSteps:
    """A manager's store calls as flow steps; :meth:`write` keeps the live
    session's record and the aggregates in step with what was stored."""

    __slots__ = ("_agg", "store")

    def __init__(self, store: SessionStore, agg: Aggregates) -> None:
        self.store = store
        self._agg = agg

    def get(self, session_id: str) -> Flow[SessionRecord | None]:
        store = self.store
        record: SessionRecord | None = yield Op(
            lambda: store.get(session_id), lambda: store.aget(session_id)
        )
        return record

    def put(self, record: SessionRecord, expected: int | None) -> Flow[SessionRecord]:
        store = self.store
        stored: SessionRecord = yield Op(
            lambda: store.put(record, expected_version=expected),
            lambda: store.aput(record, expected_version=expected),
        )
        return stored

    def delete(self, session_id: str) -> Flow[bool]:
        store = self.store
        deleted: bool = yield Op(
            lambda: store.delete(session_id), lambda: store.adelete(session_id)
        )
        return deleted

    def query_status(self, statuses: Iterable[SessionStatus]) -> Flow[list[SessionRecord]]:
        store, st = self.store, [*statuses]
        records: list[SessionRecord] = yield Op(
            lambda: store.query(status=st), lambda: store.aquery(status=st)
        )
        return records

    def append_event(self, session_id: str, event: Event) -> Flow[None]:
        store = self.store
        yield Op(
            lambda: store.append_event(session_id, event),
            lambda: store.aappend_event(session_id, event),
        )

    def write(
        self, target: ManagedSession | str, change: Callable[[SessionRecord], SessionRecord]
    ) -> Flow[tuple[SessionRecord, SessionRecord]]:
        """Apply ``change`` with optimistic concurrency; retry on a version conflict.

        ``target`` is a live session (its record and the aggregates follow), or
        the id of a stored one that is not live here: the aggregates are left
        alone, they count the sessions this manager created or recovered."""
        ms = target if isinstance(target, ManagedSession) else None
        session_id = ms.id if ms is not None else str(target)
        for _ in range(_WRITE_ATTEMPTS):
            current = yield from self.get(session_id)
            if current is None:
                if ms is None:
                    raise SessionNotFoundError(session_id)
                current = ms.record
            new = change(current)
            try:
                stored = yield from self.put(new, current.version)
            except VersionConflictError:
                continue
            if ms is not None:
                ms._record = stored
                self._agg.changed(current, stored)
            return current, stored
        raise UsageError(f"session {session_id!r} is being changed too often to update")

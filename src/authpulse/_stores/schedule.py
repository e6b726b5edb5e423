"""The stores' schedule: an index of sessions by due time, so a manager's worker
finds the work due among a million stored sessions without holding them.

Each session has at most one entry: the earliest instant (on the manager's
clock) at which something is due for it. ``put_due`` sets it (replacing any
earlier entry), ``peek_due`` / ``pop_due`` read (and remove) the entries due at
``now``, earliest first, at most ``limit`` of them, ``remove_due`` drops one;
``delete`` of a session drops its entry too. ``create_many`` writes new
sessions in one batch: their records, token sets, due times and first events.

:class:`MemorySchedule` is the memory store's index (a heap with lazy deletion);
:class:`OffloadedSchedule` writes the async twins of a store whose async
operations run its sync ones (``_offload``).
"""

from __future__ import annotations

import heapq
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import (
    TYPE_CHECKING,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    runtime_checkable,
)

from .._core.errors import ConfigurationError

if TYPE_CHECKING:
    from .._core.model import SessionRecord
    from .._core.tokens import TokenSet
    from .._runtime.events import Event
    from .base import _SyncStore

__all__ = [
    "MAX_DUE_BATCH",
    "MemorySchedule",
    "NewSession",
    "OffloadedSchedule",
    "ScheduleStore",
    "check_due_limit",
    "check_due_time",
]

#: the most entries one ``peek_due`` / ``pop_due`` returns
MAX_DUE_BATCH = 100_000

_T = TypeVar("_T")
_P = ParamSpec("_P")


class NewSession(NamedTuple):
    """One session of a batch for ``create_many``: its first record (version 0),
    its token set, its first due time and its first timeline event (each may be
    ``None``)."""

    record: SessionRecord
    token: TokenSet | None
    due_at: float | None
    event: Event | None


def check_due_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_DUE_BATCH:
        raise ConfigurationError(f"limit must be an int from 1 to {MAX_DUE_BATCH}")
    return limit


def check_due_time(when: float) -> float:
    if isinstance(when, bool) or not isinstance(when, int | float) or when != when:
        raise ConfigurationError("a due time must be a number")
    return float(when)


@runtime_checkable
class ScheduleStore(Protocol):
    """The schedule operations of a store (see the module docstring)."""

    def put_due(self, session_id: str, due_at: float) -> None: ...

    def put_due_many(self, entries: Iterable[tuple[str, float]]) -> None: ...

    def peek_due(self, now: float, limit: int) -> list[tuple[str, float]]: ...

    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]: ...

    def remove_due(self, session_id: str) -> bool: ...

    def create_many(self, sessions: Sequence[NewSession]) -> None:
        """Store new sessions, each record as its version 1 (none may exist yet:
        :class:`VersionConflictError`, and nothing of the batch is kept where the
        store can promise it)."""
        ...

    async def aput_due(self, session_id: str, due_at: float) -> None: ...

    async def aput_due_many(self, entries: Iterable[tuple[str, float]]) -> None: ...

    async def apeek_due(self, now: float, limit: int) -> list[tuple[str, float]]: ...

    async def apop_due(self, now: float, limit: int) -> list[tuple[str, float]]: ...

    async def aremove_due(self, session_id: str) -> bool: ...

    async def acreate_many(self, sessions: Sequence[NewSession]) -> None: ...


class MemorySchedule:
    """The memory store's due index: the due time of each session, and a heap of
    ``(due, id)`` whose entries that no longer match are skipped."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._due_lock = threading.Lock()

    def put_due(self, session_id: str, due_at: float) -> None:
        self.put_due_many([(session_id, due_at)])

    def put_due_many(self, entries: Iterable[tuple[str, float]]) -> None:
        checked = [(sid, check_due_time(at)) for sid, at in entries]
        with self._due_lock:
            for sid, at in checked:
                self._due[sid] = at
                heapq.heappush(self._heap, (at, sid))
            if len(self._heap) > 2 * len(self._due) + 1024:  # mostly replaced entries
                self._heap = [(at, sid) for sid, at in self._due.items()]
                heapq.heapify(self._heap)

    def _take(self, now: float, limit: int, remove: bool) -> list[tuple[str, float]]:
        check_due_limit(limit)
        out: list[tuple[str, float]] = []
        kept: list[tuple[float, str]] = []
        seen: set[str] = set()
        with self._due_lock:
            heap = self._heap
            while heap and heap[0][0] <= now and len(out) < limit:
                at, sid = heapq.heappop(heap)
                if self._due.get(sid) != at or sid in seen:
                    continue  # replaced or removed since it was pushed, or a duplicate
                seen.add(sid)
                out.append((sid, at))
                if remove:
                    del self._due[sid]
                else:
                    kept.append((at, sid))
            for entry in kept:
                heapq.heappush(heap, entry)
        return out

    def peek_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return self._take(now, limit, remove=False)

    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return self._take(now, limit, remove=True)

    def remove_due(self, session_id: str) -> bool:
        with self._due_lock:
            return self._due.pop(session_id, None) is not None

    def create_many(self, sessions: Sequence[NewSession]) -> None:
        """One session after the other: a store without I/O gains nothing from a batch."""
        store = cast("_SyncStore", self)
        for new in sessions:
            store.put(new.record, expected_version=None)
            if new.token is not None:
                store.put_token(new.record.id, new.token)
            if new.event is not None:
                store.append_event(new.record.id, new.event)
        self.put_due_many([(n.record.id, n.due_at) for n in sessions if n.due_at is not None])


class OffloadedSchedule:
    """The async schedule operations of a store whose async operations run its
    sync ones through ``_offload`` (see :class:`OffloadedStore`)."""

    @abstractmethod
    async def _offload(self, fn: Callable[_P, _T], /, *args: _P.args, **kw: _P.kwargs) -> _T: ...

    @abstractmethod
    def put_due(self, session_id: str, due_at: float) -> None: ...

    @abstractmethod
    def put_due_many(self, entries: Iterable[tuple[str, float]]) -> None: ...

    @abstractmethod
    def peek_due(self, now: float, limit: int) -> list[tuple[str, float]]: ...

    @abstractmethod
    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]: ...

    @abstractmethod
    def remove_due(self, session_id: str) -> bool: ...

    @abstractmethod
    def create_many(self, sessions: Sequence[NewSession]) -> None: ...

    async def aput_due(self, session_id: str, due_at: float) -> None:
        await self._offload(self.put_due, session_id, due_at)

    async def aput_due_many(self, entries: Iterable[tuple[str, float]]) -> None:
        await self._offload(self.put_due_many, [*entries])

    async def apeek_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return await self._offload(self.peek_due, now, limit)

    async def apop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        return await self._offload(self.pop_due, now, limit)

    async def aremove_due(self, session_id: str) -> bool:
        return await self._offload(self.remove_due, session_id)

    async def acreate_many(self, sessions: Sequence[NewSession]) -> None:
        await self._offload(self.create_many, sessions)

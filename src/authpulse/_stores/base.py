"""Session stores: where records and timelines live.

``MemoryStore`` is the default. Every store offers the same operations,
synchronously and asynchronously: ``get``, ``put`` with optimistic
concurrency (the version the writer read must still be the stored one),
``query`` by owner / status / kind, ``delete`` (used only by an explicit
purge), and a bounded per-session timeline of events.

Stores also keep each session's token set (``get_token`` / ``put_token``,
guarded by fencing tokens) and named locks with a TTL (``lock``, see
``_store_lock``), which is how one refresh serves every process sharing a
persistent store. What the stores share is written once: the rules
(``_store_rules``), the base classes here (:class:`StoreBase`, and
:class:`OffloadedStore`, whose async operations run the sync ones directly or
in a worker thread). ``_open_store`` opens a store from a URL
(``memory://``, ``sqlite:///path.db``, ``redis://host:port/db``).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import ParamSpec, Protocol, TypeVar, runtime_checkable

from .._core.errors import AuthpulseError
from .._core.model import SessionKind, SessionRecord, SessionStatus
from .._core.tokens import TokenSet
from .._runtime.clock import Clock, SystemClock
from .._runtime.events import Event
from .lock import (
    MAX_LOCK_NAME,
    LockBackend,
    LockRecord,
    StoreLock,
    lock_released,
    lock_renewed,
    lock_taken,
)
from .rules import (
    MAX_PAGE,
    RecordQuery,
    check_page,
    check_timeline_limit,
    check_token_put,
)
from .schedule import MemorySchedule, NewSession, OffloadedSchedule, ScheduleStore

__all__ = [
    "MAX_LOCK_NAME",
    "MAX_PAGE",
    "CorruptRecordError",
    "FencingError",
    "LockBackend",
    "MemoryStore",
    "NewSession",
    "OffloadedSchedule",
    "OffloadedStore",
    "RecordQuery",
    "ScheduleStore",
    "SessionStore",
    "StoreBase",
    "StoreError",
    "StoreLock",
    "StoreUnavailableError",
    "StoredToken",
    "VersionConflictError",
    "check_page",
    "check_timeline_limit",
    "check_token_put",
]


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


class FencingError(StoreError):
    """A write carried a fencing token older than one the store has already seen:
    the writer's lock expired and a newer holder has written since."""

    def __init__(self, session_id: str, fence: int, highest: int) -> None:
        self.session_id = session_id
        self.fence = fence
        self.highest = highest
        super().__init__(
            f"token set of session {session_id!r} was not written: fence {fence} is older "
            f"than fence {highest} already used by a newer lock holder"
        )


class StoreUnavailableError(StoreError):
    """The store cannot be reached or used right now (server down, connection
    refused, database locked for longer than the store's timeout). Transient."""


class CorruptRecordError(StoreError):
    """Stored data that cannot be read back: bad JSON, an unknown status, a row
    written by something else. Names the session, never the stored values."""

    def __init__(self, session_id: str, what: str, reason: str) -> None:
        self.session_id = session_id
        self.what = what
        self.reason = reason
        super().__init__(
            f"stored {what} of session {session_id!r} is corrupt or was not written by "
            f"authpulse: {reason}"
        )


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token set as a store keeps it.

    ``skew`` is the estimated IdP clock skew (seconds) that goes with it,
    ``version`` counts the writes (1 for the first), ``fence`` is the fencing
    token of the lock holder that wrote it (``None``: written without a lock),
    ``updated_at`` the store's wall-clock time of the write.
    """

    token: TokenSet
    skew: float
    version: int
    fence: int | None
    updated_at: float


class _SyncStore(Protocol):
    """The synchronous half of :class:`SessionStore`."""

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

    # -- token sets (added with the persistent stores)

    def get_token(self, session_id: str) -> StoredToken | None: ...

    def put_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        """Store the session's token set. With a ``fence`` lower than the highest
        fence already used for this session, raise :class:`FencingError`."""
        ...

    # -- locks

    def lock(self, name: str, ttl: float) -> StoreLock: ...


@runtime_checkable
class SessionStore(_SyncStore, Protocol):
    """What the session manager needs from a store."""

    async def aget(self, session_id: str) -> SessionRecord | None: ...

    async def aput(
        self, record: SessionRecord, *, expected_version: int | None
    ) -> SessionRecord: ...

    async def aquery(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]: ...

    async def adelete(self, session_id: str) -> bool: ...

    async def aappend_event(self, session_id: str, event: Event) -> None: ...

    async def aevents(self, session_id: str) -> list[Event]: ...

    async def aget_token(self, session_id: str) -> StoredToken | None: ...

    async def aput_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken: ...

    async def aclose(self) -> None: ...


_T = TypeVar("_T")
_P = ParamSpec("_P")


class StoreBase(_SyncStore):
    """What every store shares: the argument checks of ``query`` and ``put_token``
    (then ``_select`` / ``_put_token`` and their async twins do the store's own
    I/O) and the lock handles, which wait on the store's clock."""

    _clock: Clock

    def query(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]:
        q = RecordQuery.of(owner, status, kind, limit, offset)
        return [] if q.empty else self._select(q)

    async def aquery(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]:
        q = RecordQuery.of(owner, status, kind, limit, offset)
        return [] if q.empty else await self._aselect(q)

    def put_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        return self._put_token(session_id, token, *check_token_put(skew, fence))

    async def aput_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        return await self._aput_token(session_id, token, *check_token_put(skew, fence))

    def lock(self, name: str, ttl: float) -> StoreLock:
        """A named lock; see :class:`~authpulse.StoreLock`."""
        return StoreLock(self, name, ttl, clock=self._clock)

    @abstractmethod
    def lock_try(self, name: str, holder: str, ttl: float) -> int | None: ...

    @abstractmethod
    def lock_release(self, name: str, holder: str) -> bool: ...

    @abstractmethod
    def lock_renew(self, name: str, holder: str, ttl: float) -> bool: ...

    @abstractmethod
    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None: ...

    @abstractmethod
    async def alock_release(self, name: str, holder: str) -> bool: ...

    @abstractmethod
    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool: ...

    @abstractmethod
    def _select(self, q: RecordQuery) -> list[SessionRecord]: ...

    @abstractmethod
    async def _aselect(self, q: RecordQuery) -> list[SessionRecord]: ...

    @abstractmethod
    def _put_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken: ...

    @abstractmethod
    async def _aput_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken: ...


class OffloadedStore(StoreBase):
    """A store whose async operations run its sync ones through ``_offload``:
    directly for a store without I/O, in a worker thread for a blocking one.
    Every async twin is written here, once."""

    @abstractmethod
    async def _offload(self, fn: Callable[_P, _T], /, *args: _P.args, **kw: _P.kwargs) -> _T: ...

    async def aget(self, session_id: str) -> SessionRecord | None:
        return await self._offload(self.get, session_id)

    async def aput(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        return await self._offload(self.put, record, expected_version=expected_version)

    async def _aselect(self, q: RecordQuery) -> list[SessionRecord]:
        return await self._offload(self._select, q)

    async def adelete(self, session_id: str) -> bool:
        return await self._offload(self.delete, session_id)

    async def aappend_event(self, session_id: str, event: Event) -> None:
        await self._offload(self.append_event, session_id, event)

    async def aevents(self, session_id: str) -> list[Event]:
        return await self._offload(self.events, session_id)

    async def aget_token(self, session_id: str) -> StoredToken | None:
        return await self._offload(self.get_token, session_id)

    async def _aput_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        return await self._offload(self._put_token, session_id, token, skew, fence)

    async def aput_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        # through the public sync method, so a subclass that overrides it is
        # heard by both forms
        return await self._offload(self.put_token, session_id, token, skew=skew, fence=fence)

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None:
        return await self._offload(self.lock_try, name, holder, ttl)

    async def alock_release(self, name: str, holder: str) -> bool:
        return await self._offload(self.lock_release, name, holder)

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool:
        return await self._offload(self.lock_renew, name, holder, ttl)

    async def aclose(self) -> None:
        await self._offload(self.close)


class MemoryStore(MemorySchedule, OffloadedSchedule, OffloadedStore):
    """An in-process store: fast, thread-safe, gone when the process ends.

    ``timeline_limit`` bounds the events kept per session (oldest dropped).
    Queries are ordered by creation time, then id. Lock TTLs run on
    ``clock.monotonic()`` (default: the real clock).
    """

    def __init__(self, *, timeline_limit: int = 200, clock: Clock | None = None) -> None:
        self._records: dict[str, SessionRecord] = {}
        # plain lists trimmed by hand: a deque allocates ~600 bytes even for one event
        self._timelines: dict[str, list[Event]] = {}
        self._lock = threading.Lock()
        self.timeline_limit = check_timeline_limit(timeline_limit)
        self._clock = clock if clock is not None else SystemClock()
        self._tokens: dict[str, StoredToken] = {}
        self._token_fences: dict[str, int] = {}  # kept after delete: fences never go back
        self._locks: dict[str, LockRecord] = {}  # kept after release: fences never go back
        MemorySchedule.__init__(self)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._records)} sessions)"

    def __len__(self) -> int:
        return len(self._records)

    async def _offload(self, fn: Callable[_P, _T], /, *args: _P.args, **kw: _P.kwargs) -> _T:
        return fn(*args, **kw)  # no I/O here: the sync code runs directly

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

    def _select(self, q: RecordQuery) -> list[SessionRecord]:
        with self._lock:
            rows = [r for r in self._records.values() if q.matches(r)]
        rows.sort(key=lambda r: (r.created_at, r.id))
        end = None if q.limit is None else q.offset + q.limit
        return rows[q.offset : end]

    def delete(self, session_id: str) -> bool:
        with self._lock:
            self._timelines.pop(session_id, None)
            self._tokens.pop(session_id, None)
            self.remove_due(session_id)
            return self._records.pop(session_id, None) is not None

    def append_event(self, session_id: str, event: Event) -> None:
        with self._lock:
            tl = self._timelines.get(session_id)
            if tl is None:
                tl = self._timelines[session_id] = []
            tl.append(event)
            if len(tl) > self.timeline_limit:
                del tl[: len(tl) - self.timeline_limit]

    def events(self, session_id: str) -> list[Event]:
        with self._lock:
            return list(self._timelines.get(session_id, ()))

    def close(self) -> None:
        """Nothing to release; present for symmetry with persistent stores."""

    # -- token sets

    def get_token(self, session_id: str) -> StoredToken | None:
        with self._lock:
            return self._tokens.get(session_id)

    def _put_token(
        self, session_id: str, token: TokenSet, skew: float, fence: int | None
    ) -> StoredToken:
        with self._lock:
            if fence is not None:
                highest = self._token_fences.get(session_id)
                if highest is not None and fence < highest:
                    raise FencingError(session_id, fence, highest)
                self._token_fences[session_id] = max(fence, highest or 0)
            current = self._tokens.get(session_id)
            stored = StoredToken(
                token=token,
                skew=skew,
                version=(current.version if current is not None else 0) + 1,
                fence=fence,
                updated_at=self._clock.now(),
            )
            self._tokens[session_id] = stored
            return stored

    # -- locks (records decided by _store_lock, TTLs on the clock's monotonic time)

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        now = self._clock.monotonic()
        with self._lock:
            if (taken := lock_taken(self._locks.get(name), holder, now, ttl)) is None:
                return None
            self._locks[name] = taken
            return taken.fence

    def lock_release(self, name: str, holder: str) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            if (free := lock_released(self._locks.get(name), holder, now)) is None:
                return False
            self._locks[name] = free
            return True

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            if (renewed := lock_renewed(self._locks.get(name), holder, now, ttl)) is None:
                return False
            self._locks[name] = renewed
            return True


# The public names defined here show the module they are imported from.
for _public in (
    CorruptRecordError,
    FencingError,
    MemoryStore,
    SessionStore,
    StoreError,
    StoreUnavailableError,
    StoredToken,
    VersionConflictError,
):
    _public.__module__ = "authpulse"
del _public

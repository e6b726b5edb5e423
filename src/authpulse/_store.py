"""Session stores: where records and timelines live.

``MemoryStore`` is the default. Every store offers the same operations,
synchronously and asynchronously: ``get``, ``put`` with optimistic
concurrency (the version the writer read must still be the stored one),
``query`` by owner / status / kind, ``delete`` (used only by an explicit
purge), and a bounded per-session timeline of events.

Stores also keep each session's token set (``get_token`` / ``put_token``,
guarded by fencing tokens) and named locks with a TTL (``lock``), which is
how one refresh serves every process sharing a persistent store.
:func:`open_store` opens a store from a URL (``memory://``,
``sqlite:///path.db``, ``redis://host:port/db``).
"""

from __future__ import annotations

import math
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote

from ._clock import Clock, SystemClock
from ._errors import AuthpulseError, ConfigurationError, UsageError
from ._events import Event
from ._model import SessionKind, SessionRecord, SessionStatus, check_id
from ._tokens import TokenSet

if TYPE_CHECKING:
    from ._crypto import EncryptionKeys

__all__ = [
    "CorruptRecordError",
    "FencingError",
    "LockBackend",
    "MemoryStore",
    "SessionStore",
    "StoreError",
    "StoreLock",
    "StoreUnavailableError",
    "StoredToken",
    "VersionConflictError",
    "open_store",
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


#: the longest lock name (see check_id for the characters it may hold)
MAX_LOCK_NAME: Final = 200
_POLL_MIN = 0.005
_POLL_MAX = 0.1


def _check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise ConfigurationError("lock ttl must be a finite number of seconds")
    if ttl <= 0:
        raise ConfigurationError("lock ttl must be positive")
    return float(ttl)


def check_token_put(skew: float, fence: int | None) -> tuple[float, int | None]:
    """Validate the ``skew`` and ``fence`` arguments of ``put_token``."""
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not math.isfinite(skew):
        raise ConfigurationError("skew must be a finite number of seconds")
    if fence is not None and (isinstance(fence, bool) or not isinstance(fence, int) or fence < 0):
        raise ConfigurationError("fence must be a non-negative int or None")
    return float(skew), fence


#: The largest ``limit`` or ``offset`` a query takes (SQLite's integers are 64-bit).
MAX_PAGE: Final = 2**63 - 1


def check_page(
    limit: int | None, offset: int, *, min_limit: int = 0, max_limit: int = MAX_PAGE
) -> None:
    """Validate paging arguments, the one rule of every store's ``query``, the
    manager's ``list`` and the dashboard: :class:`ConfigurationError` naming the
    argument and its range."""
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not min_limit <= limit <= max_limit
    ):
        raise ConfigurationError(f"limit must be an integer from {min_limit} to {max_limit}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_PAGE:
        raise ConfigurationError(f"offset must be an integer from 0 to {MAX_PAGE}")


class LockBackend(Protocol):
    """The three atomic operations a store implements for :class:`StoreLock`.

    ``lock_try`` takes the lock for ``holder`` if it is free or its TTL has
    run out and returns the new fence (strictly greater than every fence
    handed out before for ``name``), else ``None``. ``lock_release`` and
    ``lock_renew`` act only if ``holder`` still holds an unexpired lock.
    """

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None: ...

    def lock_release(self, name: str, holder: str) -> bool: ...

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool: ...

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None: ...

    async def alock_release(self, name: str, holder: str) -> bool: ...

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool: ...


class StoreLock:
    """A named lock in a store, with a TTL and a fencing token.

    Mutual exclusion holds between every handle on the same store data
    (threads, processes, hosts). A holder that dies without releasing loses
    the lock when ``ttl`` seconds have passed; call :meth:`renew` to keep it
    longer. :attr:`fence` grows strictly with every acquisition of ``name``,
    whoever acquires it: pass it to ``put_token(..., fence=lock.fence)`` so a
    holder whose lock expired cannot overwrite a newer holder's token.

    ``name`` is 1 to 200 printable characters without whitespace or control
    characters (the rule session ids follow); anything else raises
    :class:`ConfigurationError`.

    One handle belongs to one thread or task at a time; make one handle per
    contender (``store.lock(name, ttl)``). ``acquire`` timeouts are seconds
    of ``clock`` (the store's clock; default: the real clock), which also
    does the waiting between tries, so a :class:`~authpulse.testing.FakeClock`
    runs a wait without waiting; ``None`` waits until the lock is free. Works
    as a context manager, sync (``with``) and async (``async with``).
    """

    def __init__(
        self, backend: LockBackend, name: str, ttl: float, *, clock: Clock | None = None
    ) -> None:
        self._backend = backend
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.name = check_id(name, "lock name", MAX_LOCK_NAME)
        self.ttl = _check_ttl(ttl)
        self._holder: str | None = None
        self._fence: int | None = None

    def __repr__(self) -> str:
        return (
            f"StoreLock(name={self.name!r}, ttl={self.ttl}, held={self.held}, fence={self._fence})"
        )

    @property
    def held(self) -> bool:
        """True while this handle believes it holds the lock (it may have expired
        since: :meth:`renew` tells for sure)."""
        return self._holder is not None

    @property
    def fence(self) -> int:
        """The fencing token of this handle's latest acquisition."""
        if self._fence is None:
            raise UsageError(f"lock {self.name!r} has not been acquired yet: it has no fence")
        return self._fence

    def _start(self) -> str:
        if self._holder is not None:
            raise UsageError(f"lock {self.name!r} is already held by this handle")
        return secrets.token_hex(16)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds (``None``: no limit,
        ``0``: one try). Returns whether it was taken."""
        holder = self._start()
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + max(timeout, 0.0)
        delay = _POLL_MIN
        while True:
            fence = self._backend.lock_try(self.name, holder, self.ttl)
            if fence is not None:
                self._holder, self._fence = holder, fence
                return True
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    return False
                clock.sleep(min(delay, remaining))
            else:
                clock.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def release(self) -> None:
        """Give the lock up (nothing happens if it was lost meanwhile)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            self._backend.lock_release(self.name, holder)

    def renew(self) -> bool:
        """Restart the TTL. False (and no longer held) if the lock was lost."""
        if self._holder is None:
            return False
        ok = self._backend.lock_renew(self.name, self._holder, self.ttl)
        if not ok:
            self._holder = None
        return ok

    # the twin of acquire(timeout): same signature on purpose
    async def aacquire(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Async :meth:`acquire`."""
        holder = self._start()
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + max(timeout, 0.0)
        delay = _POLL_MIN
        while True:
            fence = await self._backend.alock_try(self.name, holder, self.ttl)
            if fence is not None:
                self._holder, self._fence = holder, fence
                return True
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    return False
                await clock.asleep(min(delay, remaining))
            else:
                await clock.asleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    async def arelease(self) -> None:
        """Async :meth:`release`."""
        holder, self._holder = self._holder, None
        if holder is not None:
            await self._backend.alock_release(self.name, holder)

    async def arenew(self) -> bool:
        """Async :meth:`renew`."""
        if self._holder is None:
            return False
        ok = await self._backend.alock_renew(self.name, self._holder, self.ttl)
        if not ok:
            self._holder = None
        return ok

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> StoreLock:
        await self.aacquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.arelease()


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

    # -- async twins

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


class MemoryStore:
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
        self.timeline_limit = timeline_limit
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._tokens: dict[str, StoredToken] = {}
        self._token_fences: dict[str, int] = {}  # kept after delete: fences never go back
        self._held_locks: dict[str, tuple[str, float]] = {}  # name -> (holder, expires at)
        self._lock_fences: dict[str, int] = {}

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
        check_page(limit, offset)
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
            self._tokens.pop(session_id, None)
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

    def put_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        skew, fence = check_token_put(skew, fence)
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

    # -- locks (TTLs on the injected clock's monotonic time)

    def lock(self, name: str, ttl: float) -> StoreLock:
        """A named lock; see :class:`StoreLock`."""
        return StoreLock(self, name, ttl, clock=self._clock)

    def lock_try(self, name: str, holder: str, ttl: float) -> int | None:
        now = self._clock.monotonic()
        with self._lock:
            current = self._held_locks.get(name)
            if current is not None and current[1] > now:
                return None
            fence = self._lock_fences.get(name, 0) + 1
            self._lock_fences[name] = fence
            self._held_locks[name] = (holder, now + ttl)
            return fence

    def lock_release(self, name: str, holder: str) -> bool:
        with self._lock:
            current = self._held_locks.get(name)
            if current is None or current[0] != holder:
                return False
            del self._held_locks[name]
            return True

    def lock_renew(self, name: str, holder: str, ttl: float) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            current = self._held_locks.get(name)
            if current is None or current[0] != holder or current[1] <= now:
                return False
            self._held_locks[name] = (holder, now + ttl)
            return True

    async def alock_try(self, name: str, holder: str, ttl: float) -> int | None:
        return self.lock_try(name, holder, ttl)

    async def alock_release(self, name: str, holder: str) -> bool:
        return self.lock_release(name, holder)

    async def alock_renew(self, name: str, holder: str, ttl: float) -> bool:
        return self.lock_renew(name, holder, ttl)

    # -- async twins: no I/O here, so they run the sync code directly

    async def aget(self, session_id: str) -> SessionRecord | None:
        return self.get(session_id)

    async def aput(self, record: SessionRecord, *, expected_version: int | None) -> SessionRecord:
        return self.put(record, expected_version=expected_version)

    async def aquery(
        self,
        *,
        owner: str | None = None,
        status: Iterable[SessionStatus] | None = None,
        kind: SessionKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[SessionRecord]:
        return self.query(owner=owner, status=status, kind=kind, limit=limit, offset=offset)

    async def adelete(self, session_id: str) -> bool:
        return self.delete(session_id)

    async def aappend_event(self, session_id: str, event: Event) -> None:
        self.append_event(session_id, event)

    async def aevents(self, session_id: str) -> list[Event]:
        return self.events(session_id)

    async def aget_token(self, session_id: str) -> StoredToken | None:
        return self.get_token(session_id)

    async def aput_token(
        self, session_id: str, token: TokenSet, *, skew: float = 0.0, fence: int | None = None
    ) -> StoredToken:
        return self.put_token(session_id, token, skew=skew, fence=fence)

    async def aclose(self) -> None:
        self.close()


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}$")
_URL_HELP = "use memory://, sqlite:///path/to/file.db or redis://host:port/db"


def _url_params(query: str, scheme: str, allowed: frozenset[str]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"{scheme} store URL has a malformed query string") from None
    params = dict(pairs)
    unknown = sorted(set(params) - allowed)
    if unknown:
        names = ", ".join(repr(u[:32]) for u in unknown)
        raise ConfigurationError(
            f"{scheme} store URL has unknown parameter(s) {names}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    return params


def _number(
    params: Mapping[str, str], name: str, scheme: str, kind: type[int] | type[float]
) -> Any:
    try:
        value = kind(params[name])
    except ValueError:
        raise ConfigurationError(
            f"{scheme} store URL parameter {name!r} must be a number"
        ) from None
    return value


def open_store(
    url: str,
    *,
    encryption_keys: EncryptionKeys = None,
    clock: Clock | None = None,
) -> SessionStore:
    """Open the store a URL names.

    - ``memory://`` — :class:`MemoryStore` (token sets are kept as objects in
      the process: ``encryption_keys`` are checked but have nothing to encrypt);
    - ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` —
      :class:`~authpulse.SQLiteStore` (query parameters ``timeout`` and
      ``timeline_limit``);
    - ``redis://[user:password@]host:port/db``, ``rediss://...`` —
      :class:`~authpulse.RedisStore` (needs ``authpulse[redis]``; query
      parameters ``namespace``, ``timeline_limit`` and redis-py's own).

    A URL that cannot be used raises :class:`ConfigurationError` naming the
    scheme, never the rest of the URL (it may hold a password).
    """
    from ._crypto import TokenCipher

    if not isinstance(url, str):
        raise ConfigurationError(f"store URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.match(scheme):
        raise ConfigurationError(f"store URL has no recognisable scheme; {_URL_HELP}")
    scheme = scheme.lower()
    cipher = TokenCipher.coerce(encryption_keys)
    if scheme == "memory":
        if rest:
            raise ConfigurationError("memory store URL takes nothing after 'memory://'")
        return MemoryStore(clock=clock)
    if scheme == "sqlite":
        from ._sqlite_store import SQLiteStore

        path, _, query = rest.partition("?")
        params = _url_params(query, scheme, frozenset({"timeout", "timeline_limit"}))
        if not path.startswith("/"):
            raise ConfigurationError(
                "sqlite store URL must have no host: sqlite:///relative.db or sqlite:////abs.db"
            )
        path = unquote(path[1:])
        if not path or path == ":memory:":
            raise ConfigurationError(
                "sqlite store URL needs a file path (use memory:// for an in-process store)"
            )
        kwargs: dict[str, Any] = {}
        if "timeout" in params:
            kwargs["timeout"] = _number(params, "timeout", scheme, float)
        if "timeline_limit" in params:
            kwargs["timeline_limit"] = _number(params, "timeline_limit", scheme, int)
        return SQLiteStore(path, encryption_keys=cipher, clock=clock, **kwargs)
    if scheme in ("redis", "rediss"):
        from ._redis_store import RedisStore

        return RedisStore(url, encryption_keys=cipher, clock=clock)
    raise ConfigurationError(f"unsupported store URL scheme {scheme!r}; {_URL_HELP}")

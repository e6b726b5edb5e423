"""One behaviour suite for every session store: memory, SQLite and Redis.

The ``backend`` fixture runs each test against the three stores; the
``persistent`` fixture against SQLite and Redis only (encryption, corrupt
rows, raw-storage checks). Redis runs on a throwaway ``redis-server``
(tests/_redis.py). Lock TTLs run on the injected FakeClock for the memory
and SQLite stores; the Redis server keeps its own time, so for Redis the
lock-expiry tests wait a real 0.4 s TTL (``Backend.pass_time``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from _redis import (
    RedisServer,
    redis_server_fixture,  # noqa: F401 - registers the ``redis_server`` fixture
    require_redis_server,
)
from authpulse import (
    Clock,
    ConfigurationError,
    CorruptRecordError,
    DecryptionError,
    Event,
    EventKind,
    FencingError,
    KeyringStore,
    MemoryStore,
    RedisStore,
    SessionKind,
    SessionRecord,
    SessionStatus,
    SessionStore,
    SQLiteStore,
    StoredToken,
    StoreError,
    StoreLock,
    StoreUnavailableError,
    SystemClock,
    TokenCipher,
    TokenSet,
    UnauthenticatedRecordError,
    UsageError,
    VersionConflictError,
    open_store,
)
from authpulse.testing import FakeClock

ACCESS = "at-0123456789-secret-access"
REFRESH = "rt-9876543210-secret-refresh"
ID_TOKEN = "id-5555555555-secret-idtoken"
SECRETS = (ACCESS, REFRESH, ID_TOKEN)
PASSWORD = "hunter2-pw-x9"


# --------------------------------------------------------------------------- helpers


def rec(
    sid: str,
    *,
    owner: str = "alice",
    status: SessionStatus = SessionStatus.ACTIVE,
    kind: SessionKind = SessionKind.USER,
    created: float = 1_000.0,
) -> SessionRecord:
    return SessionRecord(
        id=sid,
        owner=owner,
        kind=kind,
        status=status,
        created_at=created,
        last_activity_at=created,
        labels=("active", "session"),
        phase="start",
        step="0",
    )


def token(n: int = 0, *, now: float = 1_800_000_000.0) -> TokenSet:
    return TokenSet(
        access_token=SecretStr(f"{ACCESS}-{n}"),
        refresh_token=SecretStr(f"{REFRESH}-{n}"),
        id_token=SecretStr(f"{ID_TOKEN}-{n}"),
        scope="read write",
        issued_at=now,
        expires_at=now + 600,
    )


def event(sid: str, n: int) -> Event:
    return Event(kind=EventKind.ACTIVITY, at=1_000.0 + n, session_id=sid, fields={"n": n})


def is_held(lock: StoreLock) -> bool:
    """``lock.held``, read afresh (mypy keeps a narrowed property otherwise)."""
    return lock.held


def same(a: SessionRecord | None, b: SessionRecord | None) -> bool:
    return a is not None and b is not None and a.to_dict() == b.to_dict()


def no_secret(text: str) -> None:
    for secret in (*SECRETS, PASSWORD):
        assert secret not in text, f"a secret leaked into {text[:200]!r}"


@dataclass
class Backend:
    """One kind of store, and how to open more handles on the same data."""

    name: str
    clock: FakeClock
    factory: Callable[..., SessionStore]
    #: a lock TTL that pass_time() can outlast
    short_ttl: float
    #: lock TTLs run on real time (the Redis server's clock), not on ``clock``
    real_time: bool
    path: Path | None = None
    url: str | None = None
    namespace: str | None = None
    opened: list[SessionStore] = field(default_factory=list)
    store: SessionStore = field(init=False)

    def make(self, **kwargs: Any) -> SessionStore:
        """Another handle on the same data (for memory: the same store unless
        ``kwargs`` ask for a different one), as another process would open it."""
        store = self.factory(**kwargs)
        self.opened.append(store)
        return store

    def pass_time(self, seconds: float) -> None:
        if self.real_time:
            time.sleep(seconds)
        else:
            self.clock.advance(seconds)


def _open_backend(
    name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeClock,
    store_clock: Clock | None = None,
) -> Iterator[Backend]:
    """``store_clock`` (default ``clock``) is the clock the stores run on."""
    on = clock if store_clock is None else store_clock
    if name == "memory":
        shared = MemoryStore(clock=on)

        def memory(**kwargs: Any) -> SessionStore:
            return MemoryStore(clock=on, **kwargs) if kwargs else shared

        backend = Backend(name, clock, memory, short_ttl=30.0, real_time=store_clock is not None)
    elif name == "sqlite":
        path = tmp_path / "store.db"

        def sqlite(**kwargs: Any) -> SessionStore:
            return SQLiteStore(path, clock=on, **kwargs)

        backend = Backend(
            name, clock, sqlite, short_ttl=30.0, real_time=store_clock is not None, path=path
        )
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        namespace = "t" + uuid.uuid4().hex[:12]

        def redis_store(**kwargs: Any) -> SessionStore:
            return RedisStore(server.url, namespace=namespace, clock=on, **kwargs)

        backend = Backend(
            name,
            clock,
            redis_store,
            short_ttl=0.4,
            real_time=True,
            url=server.url,
            namespace=namespace,
        )
    yield from serve(backend)


def serve(backend: Backend) -> Iterator[Backend]:
    """Open the backend's first store, yield the backend, close every store it opened."""
    backend.store = backend.make()
    try:
        yield backend
    finally:
        for store in backend.opened:
            store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    yield from _open_backend(request.param, request, tmp_path, clock)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def real_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Backend]:
    """Stores on the real clock, for real threads or tasks contending for a lock
    (on a fake clock a waiter's sleeps would run its whole wait at once)."""
    yield from _open_backend(request.param, request, tmp_path, clock, SystemClock())


@pytest.fixture(params=["sqlite", "redis"])
def persistent(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Backend]:
    yield from _open_backend(request.param, request, tmp_path, clock)


# ------------------------------------------------------------- raw storage access


def raw_redis(b: Backend) -> redis.Redis:
    assert b.url is not None
    return redis.Redis.from_url(b.url)


def raw_set_record_data(b: Backend, sid: str, data: str) -> None:
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            db.execute("UPDATE sessions SET data = ? WHERE id = ?", (data, sid))
            db.commit()
    else:
        with closing(raw_redis(b)) as client:
            client.hset(f"{b.namespace}:s:{sid}", "data", data)


def raw_record_data(b: Backend, sid: str) -> dict[str, Any]:
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            (data,) = db.execute("SELECT data FROM sessions WHERE id = ?", (sid,)).fetchone()
    else:
        with closing(raw_redis(b)) as client:
            data = client.hget(f"{b.namespace}:s:{sid}", "data")
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def raw_set_version(b: Backend, sid: str, version: str) -> None:
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            db.execute("UPDATE sessions SET version = ? WHERE id = ?", (version, sid))
            db.commit()
    else:
        with closing(raw_redis(b)) as client:
            client.hset(f"{b.namespace}:s:{sid}", "version", version)


def raw_add_event(b: Backend, sid: str, data: str) -> None:
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            db.execute("INSERT INTO events (session_id, data) VALUES (?, ?)", (sid, data))
            db.commit()
    else:
        with closing(raw_redis(b)) as client:
            client.rpush(f"{b.namespace}:ev:{sid}", data)


def raw_token_field(b: Backend, sid: str, column: str) -> Any:
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            row = db.execute(f"SELECT {column} FROM tokens WHERE session_id = ?", (sid,))  # noqa: S608
            return row.fetchone()[0]
    with closing(raw_redis(b)) as client:
        return client.hget(f"{b.namespace}:tok:{sid}", column)


def raw_set_token_field(b: Backend, sid: str, column: str, value: bytes | str) -> None:
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            db.execute(f"UPDATE tokens SET {column} = ? WHERE session_id = ?", (value, sid))  # noqa: S608
            db.commit()
    else:
        with closing(raw_redis(b)) as client:
            client.hset(f"{b.namespace}:tok:{sid}", column, value)


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def raw_everything(b: Backend) -> list[tuple[str, bytes]]:
    """Every stored value (and key name), as (where, bytes)."""
    out: list[tuple[str, bytes]] = []
    if b.name == "sqlite":
        assert b.path is not None
        with closing(sqlite3.connect(b.path)) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                cur = db.execute(f"SELECT * FROM {table}")  # noqa: S608
                columns = [d[0] for d in cur.description]
                for row in cur.fetchall():
                    for column, value in zip(columns, row, strict=True):
                        out.append((f"{table}.{column}", _bytes(value)))
        return out
    with closing(raw_redis(b)) as client:
        for key in client.scan_iter(match=f"{b.namespace}:*"):
            name = _bytes(key).decode()
            out.append((f"key {name}", _bytes(key)))
            kind = client.type(key)
            if kind == b"hash":
                for fld, value in client.hgetall(key).items():
                    out.append((f"{name}.{_bytes(fld).decode()}", _bytes(value)))
            elif kind == b"list":
                out.extend((name, _bytes(v)) for v in client.lrange(key, 0, -1))
            elif kind == b"zset":
                out.extend((name, _bytes(m)) for m in client.zrange(key, 0, -1))
            elif kind == b"string":
                out.append((name, _bytes(client.get(key) or b"")))
    return out


# ============================================================== records and CAS


def test_every_store_is_a_session_store(backend: Backend) -> None:
    assert isinstance(backend.store, SessionStore)
    assert backend.name.lower() in repr(backend.store).lower()


def test_put_then_get_round_trips(backend: Backend) -> None:
    store = backend.store
    assert store.get("s1") is None
    stored = store.put(rec("s1"), expected_version=None)
    assert stored.version == 1
    got = store.get("s1")
    assert same(got, stored)
    assert got is not None
    assert got.version == 1


def test_put_is_compare_and_set(backend: Backend) -> None:
    store = backend.store
    first = store.put(rec("s1"), expected_version=None)
    with pytest.raises(VersionConflictError) as exc:
        store.put(rec("s1", owner="mallory"), expected_version=None)
    assert (exc.value.expected, exc.value.actual) == (None, 1)

    second = store.put(replace(first, phase="two"), expected_version=1)
    assert second.version == 2
    with pytest.raises(VersionConflictError) as exc:
        store.put(replace(first, phase="stale"), expected_version=1)
    assert (exc.value.session_id, exc.value.expected, exc.value.actual) == ("s1", 1, 2)
    with pytest.raises(VersionConflictError) as exc:
        store.put(rec("nobody"), expected_version=3)
    assert exc.value.actual is None
    assert same(store.get("s1"), second)
    assert store.get("nobody") is None
    assert isinstance(exc.value, StoreError)


def test_concurrent_writers_lose_no_update(backend: Backend) -> None:
    backend.store.put(rec("shared"), expected_version=None)
    # three threads share one handle, three more open their own (as processes would)
    handles = [backend.store] * 3 + [backend.make() for _ in range(3)]

    def bump(store: SessionStore) -> None:
        for _ in range(10):
            while True:
                current = store.get("shared")
                assert current is not None
                nxt = replace(current, step=str(int(current.step or "0") + 1))
                try:
                    store.put(nxt, expected_version=current.version)
                    break
                except VersionConflictError:
                    continue  # someone else wrote first: read again

    threads = [threading.Thread(target=bump, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = backend.store.get("shared")
    assert final is not None
    assert final.step == "60"
    assert final.version == 61


# ========================================================================= query


def _populate(store: SessionStore) -> None:
    rows = [
        rec("a1", owner="alice", created=1.0),
        rec("b1", owner="bob", created=2.0, kind=SessionKind.SYSTEM),
        rec("a2", owner="alice", created=3.0, status=SessionStatus.PAUSED),
        rec("a3", owner="alice", created=4.0, status=SessionStatus.COMPLETED),
        rec("b2", owner="bob", created=5.0, status=SessionStatus.PAUSED),
        rec("a5", owner="alice", created=6.0, kind=SessionKind.INTEGRATION),
        rec("a4", owner="alice", created=6.0),  # same time as a5: ordered by id
    ]
    for r in rows:
        store.put(r, expected_version=None)


def ids(records: list[SessionRecord]) -> list[str]:
    return [r.id for r in records]


def test_query_filters_order_and_pages(backend: Backend) -> None:
    store = backend.store
    _populate(store)
    assert ids(store.query()) == ["a1", "b1", "a2", "a3", "b2", "a4", "a5"]
    assert ids(store.query(owner="alice")) == ["a1", "a2", "a3", "a4", "a5"]
    assert ids(store.query(owner="carol")) == []
    assert ids(store.query(status=[SessionStatus.PAUSED])) == ["a2", "b2"]
    active_or_paused = [SessionStatus.ACTIVE, SessionStatus.PAUSED]
    assert ids(store.query(status=active_or_paused)) == ["a1", "b1", "a2", "b2", "a4", "a5"]
    assert ids(store.query(status=[])) == []
    assert ids(store.query(kind=SessionKind.SYSTEM)) == ["b1"]
    assert ids(store.query(owner="alice", status=active_or_paused)) == ["a1", "a2", "a4", "a5"]
    assert ids(store.query(owner="alice", kind=SessionKind.USER, status=active_or_paused)) == [
        "a1",
        "a2",
        "a4",
    ]
    # pages: single index (server-side paging) and combined filters (client-side)
    assert ids(store.query(limit=3)) == ["a1", "b1", "a2"]
    assert ids(store.query(limit=3, offset=3)) == ["a3", "b2", "a4"]
    assert ids(store.query(limit=3, offset=6)) == ["a5"]
    assert ids(store.query(offset=10)) == []
    assert ids(store.query(limit=0)) == []
    assert ids(store.query(owner="alice", status=active_or_paused, limit=2, offset=1)) == [
        "a2",
        "a4",
    ]
    pages = [store.query(status=active_or_paused, limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert [i for page in pages for i in ids(page)] == ["a1", "b1", "a2", "b2", "a4", "a5"]


@pytest.mark.parametrize(
    ("limit", "offset", "named"),
    [(None, 2**63, "offset"), (2**63, 0, "limit"), (None, -1, "offset"), (True, 0, "limit")],
)
def test_query_refuses_pages_out_of_range(
    backend: Backend, limit: Any, offset: Any, named: str
) -> None:
    """Offsets SQLite cannot hold (it raised OverflowError) are refused by every store."""
    _populate(backend.store)
    with pytest.raises(ConfigurationError, match=f"^{named} must be an integer from 0 to"):
        backend.store.query(limit=limit, offset=offset)
    assert ids(backend.store.query(offset=2**63 - 1)) == []


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "3"])
def test_every_store_checks_its_timeline_limit(backend: Backend, limit: Any) -> None:
    """The memory store took any value (0 kept no event, a string failed at the
    first append with a TypeError); every store now refuses it when it opens."""
    with pytest.raises(ConfigurationError, match=r"^timeline_limit must be an int >= 1$"):
        backend.make(timeline_limit=limit)


def test_query_takes_status_and_kind_values_as_every_store(backend: Backend) -> None:
    """One rule in every store: a status or kind may be the enum or its value (the
    memory and Redis stores found nothing for ``kind="system"``), and an unknown one
    is a ConfigurationError (SQLite and Redis raised a bare ValueError, memory
    answered an empty list)."""
    store = backend.store
    _populate(store)
    assert ids(store.query(kind="system")) == ["b1"]  # type: ignore[arg-type]
    assert ids(store.query(status=["PAUSED"])) == ["a2", "b2"]  # type: ignore[list-item]
    assert ids(store.query(owner="alice", kind="user", status=["PAUSED"])) == [  # type: ignore[arg-type, list-item]
        "a2"
    ]
    with pytest.raises(ConfigurationError, match=r"^unknown session status 'paused'$"):
        store.query(status=["paused"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match=r"^unknown session kind 'robot'$"):
        store.query(kind="robot")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^unknown session status 7$"):
        store.query(status=[7])  # type: ignore[list-item]


@pytest.mark.anyio
async def test_aquery_takes_the_same_values(backend: Backend) -> None:
    store = backend.store
    try:
        _populate(store)
        assert ids(await store.aquery(kind="system")) == ["b1"]  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match=r"^unknown session status"):
            await store.aquery(status=iter(["nope"]))  # type: ignore[arg-type]
    finally:
        await store.aclose()


def test_query_follows_status_and_owner_changes(backend: Backend) -> None:
    store = backend.store
    first = store.put(rec("s1"), expected_version=None)
    moved = replace(first, owner="bob").with_status(SessionStatus.PAUSED, now=2_000.0)
    store.put(moved, expected_version=1)
    assert ids(store.query(status=[SessionStatus.ACTIVE])) == []
    assert ids(store.query(owner="alice")) == []
    assert ids(store.query(status=[SessionStatus.PAUSED], owner="bob")) == ["s1"]
    assert store.query(owner="bob")[0].version == 2


def test_delete_removes_record_timeline_and_token(backend: Backend) -> None:
    store = backend.store
    store.put(rec("s1"), expected_version=None)
    store.put(rec("s2"), expected_version=None)
    store.append_event("s1", event("s1", 1))
    store.put_token("s1", token())
    assert store.delete("s1") is True
    assert store.get("s1") is None
    assert store.events("s1") == []
    assert store.get_token("s1") is None
    assert ids(store.query()) == ["s2"]
    assert store.delete("s1") is False
    assert store.get("s2") is not None


# ======================================================================== events


def test_events_are_kept_in_order_and_bounded(backend: Backend) -> None:
    store = backend.make(timeline_limit=3)
    for n in range(5):
        store.append_event("s1", event("s1", n))
    store.append_event("s2", event("s2", 99))
    assert [e.fields["n"] for e in store.events("s1")] == [2, 3, 4]
    assert [e.to_dict() for e in store.events("s2")] == [event("s2", 99).to_dict()]
    assert store.events("nobody") == []


# ==================================================================== token sets


def test_token_put_and_get(backend: Backend) -> None:
    store = backend.store
    assert store.get_token("s1") is None
    first = store.put_token("s1", token(1), skew=-2.5)
    assert isinstance(first, StoredToken)
    assert (first.version, first.fence, first.skew) == (1, None, -2.5)
    assert first.updated_at == backend.clock.now()

    backend.clock.advance(10)
    got = store.get_token("s1")
    assert got is not None
    assert got.token.access_token.get_secret_value() == f"{ACCESS}-1"
    assert got.token.refresh_token is not None
    assert got.token.refresh_token.get_secret_value() == f"{REFRESH}-1"
    assert got.token == token(1)
    assert (got.skew, got.version, got.fence) == (-2.5, 1, None)
    assert got.updated_at == first.updated_at

    second = store.put_token("s1", token(2))
    assert second.version == 2
    assert second.updated_at == backend.clock.now()
    again = store.get_token("s1")
    assert again is not None
    assert again.token == token(2)
    assert again.skew == 0.0
    no_secret(repr(again))
    no_secret(str(again))


def test_a_token_set_stored_before_its_record(backend: Backend) -> None:
    # a Session's store_key may hold a token set with no record; a record written later
    # (authpulse login's profile) is a first write, and the token set stays
    store = backend.store
    store.put_token("s1", token(1))
    assert store.get("s1") is None
    assert store.query() == []
    stored = store.put(rec("s1"), expected_version=None)
    assert stored.version == 1
    assert same(store.get("s1"), stored)
    assert [r.id for r in store.query()] == ["s1"]
    got = store.get_token("s1")
    assert got is not None
    assert got.token == token(1)


def test_token_writes_are_fenced(backend: Backend) -> None:
    store = backend.store
    assert store.put_token("s1", token(1), fence=5).fence == 5
    assert store.put_token("s1", token(2), fence=5).version == 2  # same holder again
    with pytest.raises(FencingError) as exc:
        store.put_token("s1", token(3), fence=4)
    assert (exc.value.session_id, exc.value.fence, exc.value.highest) == ("s1", 4, 5)
    assert isinstance(exc.value, StoreError)
    no_secret(str(exc.value))
    current = store.get_token("s1")
    assert current is not None
    assert current.token == token(2)
    assert current.version == 2

    store.put_token("s1", token(4), fence=7)
    store.put_token("s1", token(5))  # an unfenced write does not lower the bar
    with pytest.raises(FencingError):
        store.put_token("s1", token(6), fence=6)
    assert store.put_token("s2", token(7), fence=1).fence == 1  # per session
    latest = store.get_token("s1")
    assert latest is not None
    assert latest.token == token(5)
    assert latest.fence is None


def test_token_arguments_are_checked(backend: Backend) -> None:
    with pytest.raises(ConfigurationError):
        backend.store.put_token("s1", token(), fence=-1)
    with pytest.raises(ConfigurationError):
        backend.store.put_token("s1", token(), skew=float("nan"))
    assert backend.store.get_token("s1") is None


# ========================================================================= locks


def test_lock_excludes_other_handles_until_released(backend: Backend) -> None:
    a = backend.store.lock("refresh:s1", ttl=30)
    b = backend.make().lock("refresh:s1", ttl=30)
    with pytest.raises(UsageError):
        _ = a.fence
    assert a.acquire(timeout=0) is True
    assert a.held
    assert a.fence >= 1
    with pytest.raises(UsageError):
        a.acquire(timeout=0)
    assert b.acquire(timeout=0) is False
    assert b.acquire(timeout=0.05) is False
    assert backend.store.lock("refresh:s2", ttl=30).acquire(timeout=0)  # another name
    a.release()
    assert is_held(a) is False
    assert b.acquire(timeout=0) is True
    assert b.fence > a.fence
    b.release()
    a.release()  # releasing twice is harmless
    no_secret(repr(a))


def test_lock_is_mutually_exclusive_across_threads(real_backend: Backend) -> None:
    backend = real_backend
    inside = 0
    overlaps = 0
    fences: list[int] = []
    guard = threading.Lock()

    def work(store: SessionStore) -> None:
        nonlocal inside, overlaps
        for _ in range(5):
            lock = store.lock("critical", ttl=30)
            assert lock.acquire(timeout=20)
            try:
                with guard:
                    inside += 1
                    overlaps += inside > 1
                fences.append(lock.fence)
                time.sleep(0.001)
                with guard:
                    inside -= 1
            finally:
                lock.release()

    handles = [backend.make() for _ in range(6)]
    threads = [threading.Thread(target=work, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == 0
    assert len(fences) == 30
    assert fences == sorted(fences)
    assert len(set(fences)) == 30


def test_dead_holder_loses_the_lock_after_its_ttl(backend: Backend) -> None:
    ttl = backend.short_ttl
    dead = backend.store.lock("refresh:s1", ttl=ttl)
    assert dead.acquire(timeout=0)
    dead_fence = dead.fence
    zombie = backend.store.lock("zombie", ttl=ttl)  # dies the same way
    assert zombie.acquire(timeout=0)
    backend.store.put_token("s1", token(1), fence=dead_fence)
    heir = backend.make().lock("refresh:s1", ttl=30)
    assert heir.acquire(timeout=0) is False

    backend.pass_time(ttl * 1.25)  # the holder "died": it never releases nor renews
    assert heir.acquire(timeout=2) is True
    assert heir.fence > dead_fence
    backend.store.put_token("s1", token(2), fence=heir.fence)

    assert is_held(dead)  # the old holder still believes it holds the lock...
    dead.release()  # ...but its release must not free the heir's lock
    assert backend.store.lock("refresh:s1", ttl=30).acquire(timeout=0) is False
    assert backend.make().lock("zombie", ttl=30).acquire(timeout=0)
    assert zombie.renew() is False  # nor renew it
    assert is_held(zombie) is False
    with pytest.raises(FencingError):  # the old holder wakes up and tries to write
        backend.store.put_token("s1", token(3), fence=dead_fence)
    current = backend.store.get_token("s1")
    assert current is not None
    assert current.token == token(2)
    heir.release()


def test_a_lock_whose_ttl_ran_out_has_nothing_to_release(backend: Backend) -> None:
    """``lock_release`` acts only for a holder whose lock has not expired, in every
    store (the memory and SQLite stores released an expired lock and said so)."""
    ttl = backend.short_ttl
    store = backend.store
    assert isinstance(store, MemoryStore | SQLiteStore | RedisStore | KeyringStore)
    fence = store.lock_try("gone", "holder-1", ttl)
    assert fence is not None
    assert store.lock_renew("gone", "holder-2", ttl) is False
    assert store.lock_release("gone", "holder-2") is False
    backend.pass_time(ttl * 1.25)
    assert store.lock_renew("gone", "holder-1", ttl) is False
    assert store.lock_release("gone", "holder-1") is False
    again = store.lock_try("gone", "holder-2", ttl)
    assert again is not None
    assert again > fence
    assert store.lock_release("gone", "holder-2") is True
    assert store.lock_release("gone", "holder-2") is False


def test_renew_keeps_the_lock(backend: Backend) -> None:
    ttl = backend.short_ttl
    lock = backend.store.lock("renewed", ttl=ttl)
    other = backend.make().lock("renewed", ttl=ttl)
    assert lock.acquire(timeout=0)
    backend.pass_time(ttl * 0.6)
    assert lock.renew() is True
    backend.pass_time(ttl * 0.6)  # past the first TTL, inside the renewed one
    assert other.acquire(timeout=0) is False
    assert lock.held
    backend.pass_time(ttl * 0.6)
    assert other.acquire(timeout=2) is True
    assert lock.renew() is False
    other.release()
    assert other.renew() is False  # not held any more


def test_lock_context_manager(backend: Backend) -> None:
    with backend.store.lock("ctx", ttl=30) as lock:
        assert isinstance(lock, StoreLock)
        assert lock.held
        assert backend.make().lock("ctx", ttl=30).acquire(timeout=0) is False
    assert is_held(lock) is False
    assert backend.make().lock("ctx", ttl=30).acquire(timeout=0) is True


@pytest.mark.parametrize(
    ("name", "ttl"),
    [
        ("", 1.0),
        ("has space", 1.0),
        ("del\x7f", 1.0),
        ("c1\x9b", 1.0),
        ("\u202eevil", 1.0),
        ("x" * 201, 1.0),
        ("x", 0),
        ("x", -1),
        ("x", float("inf")),
    ],
)
def test_lock_arguments_are_checked(backend: Backend, name: str, ttl: float) -> None:
    with pytest.raises(ConfigurationError):
        backend.store.lock(name, ttl=ttl)


def test_memory_store_locks_default_to_the_real_clock() -> None:
    store = MemoryStore()
    lock = store.lock("x", ttl=60)
    assert lock.acquire(timeout=0)
    assert store.lock("x", ttl=60).acquire(timeout=0) is False
    lock.release()
    assert store.lock("x", ttl=60).acquire(timeout=0)


# ------------------------------------------------------- lock waits on the clock

#: a generous real-time bound: the wait returned rather than slept for real
RETURNED = 5.0


def _polls(clock: FakeClock, since: int) -> list[float]:
    return clock.sleeps[since:]


def test_a_lock_wait_runs_on_the_store_clock(backend: Backend) -> None:
    """Waiting for a held lock sleeps on the store's clock: a fake clock runs the
    whole wait at once, in polls that add up to the timeout."""
    clock = backend.clock
    holder = backend.store.lock("busy", ttl=3600)
    assert holder.acquire(timeout=0)
    waiter = backend.make().lock("busy", ttl=3600)
    began, seen, real = clock.monotonic(), len(clock.sleeps), time.monotonic()
    assert waiter.acquire(timeout=20) is False
    assert time.monotonic() - real < RETURNED
    polls = _polls(clock, seen)
    assert len(polls) > 10
    assert max(polls) <= 0.1
    assert sum(polls) == pytest.approx(20)
    assert clock.monotonic() - began == pytest.approx(20)
    assert not waiter.held
    holder.release()


def test_a_lock_wait_takes_the_lock_once_its_ttl_runs_out_on_the_clock(
    backend: Backend,
) -> None:
    if backend.real_time:
        pytest.skip("lock TTLs run on the Redis server's clock")
    clock = backend.clock
    dead = backend.store.lock("busy", ttl=3)
    assert dead.acquire(timeout=0)  # and never released, as if its process died
    waiter = backend.make().lock("busy", ttl=3)
    began, real = clock.monotonic(), time.monotonic()
    assert waiter.acquire(timeout=20)
    assert time.monotonic() - real < RETURNED
    assert 3 <= clock.monotonic() - began < 3.2
    assert waiter.fence > dead.fence
    waiter.release()


@pytest.mark.anyio
async def test_an_async_lock_wait_runs_on_the_store_clock(backend: Backend) -> None:
    clock = backend.clock
    store, other = backend.store, backend.make()
    try:
        holder = store.lock("abusy", ttl=3600)
        assert await holder.aacquire(timeout=0)
        waiter = other.lock("abusy", ttl=3600)
        began, seen, real = clock.monotonic(), len(clock.sleeps), time.monotonic()
        assert await waiter.aacquire(timeout=20) is False
        assert time.monotonic() - real < RETURNED
        polls = _polls(clock, seen)
        assert len(polls) > 10
        assert max(polls) <= 0.1
        assert sum(polls) == pytest.approx(20)
        assert clock.monotonic() - began == pytest.approx(20)
        await holder.arelease()
        if not backend.real_time:  # Redis runs lock TTLs on the server's clock
            dead = store.lock("adead", ttl=3)
            assert await dead.aacquire(timeout=0)
            late = other.lock("adead", ttl=3)
            began = clock.monotonic()
            assert await late.aacquire(timeout=20)
            assert 3 <= clock.monotonic() - began < 3.2
            await late.arelease()
    finally:
        await store.aclose()
        await other.aclose()


def test_a_lock_handle_without_a_clock_waits_on_the_real_clock() -> None:
    backend = MemoryStore()
    holder = backend.lock("busy", ttl=60)
    assert holder.acquire(timeout=0)
    waiter = StoreLock(backend, "busy", ttl=60)
    real = time.monotonic()
    assert waiter.acquire(timeout=0.05) is False
    assert time.monotonic() - real >= 0.05
    holder.release()


# =================================================================== async twins


@pytest.mark.anyio
async def test_async_twins(backend: Backend) -> None:
    store = backend.store
    try:
        stored = await store.aput(rec("s1"), expected_version=None)
        assert stored.version == 1
        with pytest.raises(VersionConflictError):
            await store.aput(rec("s1"), expected_version=None)
        await store.aput(rec("s2", owner="bob", created=2_000.0), expected_version=None)
        assert same(await store.aget("s1"), stored)
        assert ids(await store.aquery(owner="bob")) == ["s2"]
        assert ids(await store.aquery(status=[SessionStatus.ACTIVE], limit=1, offset=1)) == ["s2"]
        assert ids(await store.aquery(owner="alice", status=[SessionStatus.ACTIVE])) == ["s1"]

        await store.aappend_event("s1", event("s1", 1))
        assert [e.to_dict() for e in await store.aevents("s1")] == [event("s1", 1).to_dict()]

        put = await store.aput_token("s1", token(1), skew=1.5, fence=3)
        assert put.version == 1
        got = await store.aget_token("s1")
        assert got is not None
        assert got.token == token(1)
        assert got.fence == 3
        with pytest.raises(FencingError):
            await store.aput_token("s1", token(2), fence=2)

        lock = store.lock("async", ttl=30)
        assert await lock.aacquire(timeout=0)
        assert await store.lock("async", ttl=30).aacquire(timeout=0.05) is False
        assert await lock.arenew() is True
        await lock.arelease()
        async with store.lock("async", ttl=30) as held:
            assert held.held
            assert held.fence > lock.fence

        assert await store.adelete("s1") is True
        assert await store.aget("s1") is None
        assert await store.aget_token("s1") is None
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_async_lock_is_mutually_exclusive_between_tasks(real_backend: Backend) -> None:
    store = real_backend.store
    inside = 0
    fences: list[int] = []

    async def work() -> None:
        nonlocal inside
        for _ in range(3):
            lock = store.lock("acritical", ttl=30)
            assert await lock.aacquire(timeout=20)
            try:
                inside += 1
                assert inside == 1
                fences.append(lock.fence)
                await asyncio.sleep(0.001)
                inside -= 1
            finally:
                await lock.arelease()

    try:
        await asyncio.gather(*(work() for _ in range(4)))
    finally:
        await store.aclose()
    assert fences == sorted(fences)
    assert len(set(fences)) == 12


# ==================================================================== open_store


def test_open_store_memory(clock: FakeClock) -> None:
    store = open_store("memory://", clock=clock)
    assert isinstance(store, MemoryStore)
    lock = store.lock("x", ttl=5)
    assert lock.acquire(timeout=0)
    clock.advance(6)  # the injected clock drives the TTL
    assert store.lock("x", ttl=5).acquire(timeout=0)
    assert isinstance(
        open_store("MEMORY://", encryption_keys=[TokenCipher.generate_key()]), MemoryStore
    )


def test_open_store_sqlite_relative_and_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db?timeout=0.5&timeline_limit=7")
    try:
        assert isinstance(relative, SQLiteStore)
        assert isinstance(absolute, SQLiteStore)
        assert relative.path == Path("rel.db")
        assert (tmp_path / "rel.db").exists()
        assert absolute.path == tmp_path / "abs.db"
        assert absolute.path.is_absolute()
        assert (absolute.timeout, absolute.timeline_limit) == (0.5, 7)
        relative.put(rec("s1"), expected_version=None)
    finally:
        relative.close()
        absolute.close()
    reopened = open_store("sqlite:///rel.db")
    try:
        assert reopened.get("s1") is not None
    finally:
        reopened.close()


def test_open_store_redis(redis_server: RedisServer, clock: FakeClock) -> None:
    store = open_store(redis_server.url + "?namespace=opened&timeline_limit=2", clock=clock)
    try:
        assert isinstance(store, RedisStore)
        assert (store.namespace, store.timeline_limit) == ("opened", 2)
        assert store.ping()
        store.put(rec("s1"), expected_version=None)
        assert store.get("s1") is not None
        store.delete("s1")
    finally:
        store.close()


def test_open_store_rediss_keeps_the_password_out_of_sight() -> None:
    store = open_store(f"rediss://user:{PASSWORD}@127.0.0.1:1/3")
    try:
        assert isinstance(store, RedisStore)
        assert store.location == "rediss://127.0.0.1:1/3"
        no_secret(repr(store))
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"postgres://admin:{PASSWORD}@db.example/x", "'postgres'"),
        (PASSWORD, "no recognisable scheme"),
        (f"user:{PASSWORD}@host://x", "no recognisable scheme"),
        ("", "no recognisable scheme"),
        (f"redis://:{PASSWORD}@localhost:notaport/0", "redis store URL is malformed"),
        (f"redis://:{PASSWORD}@localhost:6379/zero", "database number"),
        (f"redis://:{PASSWORD}@localhost:6379/0?bogus={PASSWORD}", "unknown parameter 'bogus'"),
        (f"rediss://:{PASSWORD}@localhost/0?socket_timeout=soon", "invalid parameter value"),
        (f"redis://:{PASSWORD}@localhost/0?namespace=has%20space", "namespace"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///", "file path"),
        ("sqlite:///:memory:", "file path"),
        ("sqlite:///x.db?timeout=soon", "'timeout' must be a number"),
        (f"sqlite:///x.db?password={PASSWORD}", "unknown parameter(s) 'password'"),
        (f"memory://{PASSWORD}", "memory"),
    ],
    ids=[
        "unknown-scheme",
        "no-scheme",
        "scheme-with-password",
        "empty",
        "redis-bad-port",
        "redis-bad-db",
        "redis-unknown-param",
        "rediss-bad-param-value",
        "redis-bad-namespace",
        "sqlite-with-host",
        "sqlite-no-path",
        "sqlite-memory",
        "sqlite-bad-timeout",
        "sqlite-unknown-param",
        "memory-with-path",
    ],
)
def test_open_store_rejects_bad_urls_without_echoing_them(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        open_store(url)
    assert fragment in str(exc.value)
    no_secret(str(exc.value))
    no_secret(repr(exc.value))
    assert exc.value.__cause__ is None


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@localhost:6379/0?bogus={PASSWORD}",
        f"redis://:{PASSWORD}@localhost:notaport/0",
        f"redis://:{PASSWORD}@localhost/0?namespace=has%20space",
        f"rediss://:{PASSWORD}@localhost/0?socket_timeout=soon",
        f"redis://:{PASSWORD}@localhost/0?timeline_limit=0",
    ],
    ids=["unknown-param", "bad-port", "bad-namespace", "bad-param-value", "bad-limit"],
)
def test_a_half_built_redis_store_has_a_safe_repr(url: str) -> None:
    """A store whose __init__ failed part-way is in the traceback's locals:
    error reporters that show locals repr it, which must neither raise nor
    show the password."""
    with pytest.raises(ConfigurationError) as exc:
        open_store(url)
    tb = exc.value.__traceback__
    half_built = [
        frame.f_locals["self"]
        for frame, _ in traceback.walk_tb(tb)
        if isinstance(frame.f_locals.get("self"), RedisStore)
    ]
    assert half_built, "the failing RedisStore.__init__ frame is on the traceback"
    for store in half_built:
        text = repr(store)
        assert text.startswith("RedisStore(")
        no_secret(text)
    # what Sentry-like reporters do: format every frame's locals
    captured = traceback.TracebackException.from_exception(exc.value, capture_locals=True)
    shown = [
        value
        for frame in captured.stack
        for name, value in (frame.locals or {}).items()
        if name == "self" and value.startswith("RedisStore(")
    ]
    assert shown
    for value in shown:
        no_secret(value)


def test_a_redis_store_never_initialised_has_a_safe_repr() -> None:
    bare = object.__new__(RedisStore)
    assert repr(bare) == "RedisStore(<not initialised>)"
    partial = object.__new__(RedisStore)
    partial.location = "redis://localhost:6379/0"
    assert repr(partial) == "RedisStore('redis://localhost:6379/0')"


def test_open_store_rejects_bad_keys_and_non_strings() -> None:
    with pytest.raises(ConfigurationError, match="must be a str"):
        open_store(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="key #1 is not a Fernet key"):
        open_store("memory://", encryption_keys=[PASSWORD])


def test_missing_redis_server_skips_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not on PATH"):
        require_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires"):
        require_redis_server()
    assert require_redis_server("/opt/redis-server") == "/opt/redis-server"


# ==================================================================== encryption


def test_cipher_keys_are_checked_and_never_shown() -> None:
    key = TokenCipher.generate_key()
    cipher = TokenCipher(key)  # a lone key is accepted
    assert repr(cipher) == "TokenCipher(1 key)"
    assert key not in repr(TokenCipher([key, TokenCipher.generate_key()]))
    assert cipher.decrypt(cipher.encrypt(b"payload")) == b"payload"
    with pytest.raises(ConfigurationError, match="at least one"):
        TokenCipher([])
    with pytest.raises(ConfigurationError, match="key #2") as exc:
        TokenCipher([key, PASSWORD])
    no_secret(str(exc.value))
    with pytest.raises(ConfigurationError, match="key #1 must be str or bytes"):
        TokenCipher([123])  # type: ignore[list-item]
    with pytest.raises(DecryptionError):
        TokenCipher(TokenCipher.generate_key()).decrypt(cipher.encrypt(b"payload"))


def test_encrypted_tokens_round_trip_and_leave_no_secret_at_rest(persistent: Backend) -> None:
    key = TokenCipher.generate_key()
    store = persistent.make(encryption_keys=[key])
    store.put(rec("s1"), expected_version=None)
    store.append_event("s1", event("s1", 1))
    store.put_token("s1", token(1), skew=3.0, fence=2)
    got = store.get_token("s1")
    assert got is not None
    assert got.token == token(1)
    assert got.skew == 3.0
    assert "encrypted" in repr(store)
    no_secret(repr(store))
    everything = persistent_dump(persistent)
    for where, value in everything:
        for secret in SECRETS:
            assert secret.encode() not in value, f"{secret} found in {where}"
    assert not raw_token_field(persistent, "s1", "blob").startswith(b"{")


def persistent_dump(b: Backend) -> list[tuple[str, bytes]]:
    values = raw_everything(b)
    if b.path is not None:  # also the raw file bytes, write-ahead log included
        for suffix in ("", "-wal"):
            file = Path(f"{b.path}{suffix}")
            if file.exists():
                values.append((file.name, file.read_bytes()))
    return values


def test_plaintext_secrets_live_only_in_the_token_blob(persistent: Backend) -> None:
    store = persistent.store
    store.put(rec("s1"), expected_version=None)
    store.append_event("s1", event("s1", 1))
    store.put_token("s1", token(1), fence=1)
    holders = {
        where
        for where, value in raw_everything(persistent)
        if any(s.encode() in value for s in SECRETS)
    }
    assert holders == {
        "tokens.blob" if persistent.name == "sqlite" else f"{persistent.namespace}:tok:s1.blob"
    }


def test_key_rotation(persistent: Backend) -> None:
    old, new = TokenCipher.generate_key(), TokenCipher.generate_key()
    persistent.make(encryption_keys=[old]).put_token("s1", token(1))
    rotated = persistent.make(encryption_keys=[new, old])
    before = rotated.get_token("s1")
    assert before is not None
    assert before.token == token(1)
    rotated.put_token("s1", token(2))  # written with the new key
    only_new = persistent.make(encryption_keys=TokenCipher([new]))
    after = only_new.get_token("s1")
    assert after is not None
    assert after.token == token(2)
    with pytest.raises(DecryptionError):
        persistent.make(encryption_keys=[old]).get_token("s1")


def test_wrong_or_missing_key_raises_decryption_error(persistent: Backend) -> None:
    persistent.make(encryption_keys=[TokenCipher.generate_key()]).put_token("s1", token(1))
    blob = raw_token_field(persistent, "s1", "blob")
    with pytest.raises(DecryptionError) as exc:
        persistent.make(encryption_keys=[TokenCipher.generate_key()]).get_token("s1")
    assert exc.value.session_id == "s1"
    assert "'s1'" in str(exc.value)
    assert isinstance(exc.value, StoreError)
    assert blob.decode() not in str(exc.value)
    assert blob[:20].decode() not in repr(exc.value)
    assert exc.value.__cause__ is None
    with pytest.raises(DecryptionError, match="without encryption keys"):
        persistent.store.get_token("s1")


def test_an_encrypting_store_refuses_plaintext_tokens(persistent: Backend) -> None:
    """Whoever can write the file or the Redis could plant a plaintext set: with
    keys, only what the keys authenticate is read."""
    persistent.store.put_token("s1", token(1))
    store = persistent.make(encryption_keys=[TokenCipher.generate_key()])
    with pytest.raises(UnauthenticatedRecordError) as exc:
        store.get_token("s1")
    assert isinstance(exc.value, CorruptRecordError)
    assert (exc.value.session_id, exc.value.what) == ("s1", "token set")
    assert "plaintext in a store opened with encryption keys" in str(exc.value)
    assert "'s1'" in str(exc.value)
    no_secret(str(exc.value))
    no_secret(repr(exc.value))
    assert exc.value.__cause__ is None


def test_accept_plaintext_reads_plaintext_tokens_while_migrating(persistent: Backend) -> None:
    persistent.store.put_token("s1", token(1))
    key = TokenCipher.generate_key()
    migrating = TokenCipher([key], accept_plaintext=True)
    assert repr(migrating) == "TokenCipher(1 key, accept_plaintext=True)"
    store = persistent.make(encryption_keys=migrating)
    got = store.get_token("s1")
    assert got is not None
    assert got.token == token(1)
    store.put_token("s1", token(2))  # the next write encrypts
    assert not raw_token_field(persistent, "s1", "blob").startswith(b"{")
    after = persistent.make(encryption_keys=[key]).get_token("s1")
    assert after is not None
    assert after.token == token(2)
    with pytest.raises(ConfigurationError, match="accept_plaintext"):
        TokenCipher([key], accept_plaintext="yes")  # type: ignore[arg-type]


# ==================================================== corrupt rows, raw storage


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "not a JSON object"),
        (lambda d: json.dumps({**d, "status": "ZOMBIE"}), "unknown status 'ZOMBIE'"),
        (lambda d: json.dumps({**d, "kind": 7}), "unknown kind 7"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "owner"}), "'owner'"),
        (lambda d: json.dumps({**d, "created_at": "yesterday"}), "malformed"),
        (lambda d: json.dumps({**d, "labels": "NOT A LABEL"}), "labels"),
        (lambda d: json.dumps({**d, "id": "someone-else"}), "another session"),
    ],
)
def test_corrupt_records_raise_a_typed_error(
    persistent: Backend, mutate: Callable[[dict[str, Any]], str], reason: str
) -> None:
    store = persistent.store
    store.put(rec("bad"), expected_version=None)
    store.put(rec("good", created=5.0), expected_version=None)
    raw_set_record_data(persistent, "bad", mutate(raw_record_data(persistent, "bad")))
    for read in (lambda: store.get("bad"), lambda: store.query()):
        with pytest.raises(CorruptRecordError) as exc:
            read()
        assert exc.value.session_id == "bad"
        assert reason in str(exc.value)
        assert "'bad'" in str(exc.value)
        assert isinstance(exc.value, StoreError)
    assert store.get("good") is not None


def test_corrupt_version_and_events_raise_a_typed_error(persistent: Backend) -> None:
    store = persistent.store
    store.put(rec("s1"), expected_version=None)
    raw_set_version(persistent, "s1", "lots")
    with pytest.raises(CorruptRecordError, match="version"):
        store.get("s1")

    store.append_event("s2", event("s2", 1))
    raw_add_event(persistent, "s2", '{"kind": "exploded", "at": 1}')
    with pytest.raises(CorruptRecordError, match="event kind") as exc:
        store.events("s2")
    assert (exc.value.session_id, exc.value.what) == ("s2", "event")
    raw_add_event(persistent, "s3", "<<binary junk>>")
    with pytest.raises(CorruptRecordError, match="not valid JSON"):
        store.events("s3")


@pytest.mark.parametrize(
    ("blob", "error", "reason"),
    [
        (b"{broken", CorruptRecordError, "not valid JSON"),
        (b'{"format": 99}', CorruptRecordError, "unknown storage format"),
        (
            json.dumps({"format": 1, "refresh_token": REFRESH, "issued_at": 1, "expires_at": 2}),
            CorruptRecordError,
            "invalid field(s): access_token",
        ),
        (
            json.dumps({"format": 1, "access_token": ACCESS, "issued_at": "x", "expires_at": 2}),
            CorruptRecordError,
            "issued_at",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "access_token": ACCESS,
                    "token_type": "MAC",
                    "issued_at": 1,
                    "expires_at": 2,
                }
            ),
            CorruptRecordError,
            "invalid field(s): token_type",
        ),
        (
            TokenCipher(TokenCipher.generate_key()).encrypt(b'{"format": 1}'),
            DecryptionError,
            "it is encrypted and this store was opened without encryption keys",
        ),
        (
            b"gAAAAAnot-really-fernet",
            CorruptRecordError,
            "neither a JSON token set nor an encrypted",
        ),
        (b"\x00\xff\xfe garbage \x80", CorruptRecordError, "neither a JSON token set nor"),
        (b"  {}", CorruptRecordError, "neither a JSON token set nor an encrypted one"),
    ],
    ids=[
        "bad-json",
        "unknown-format",
        "no-access-token",
        "bad-issued-at",
        "mac-token-type",
        "encrypted-no-key",
        "fernet-lookalike",
        "binary-garbage",
        "indented-json",
    ],
)
def test_corrupt_token_blobs_raise_a_typed_error(
    persistent: Backend, blob: bytes | str, error: type[StoreError], reason: str
) -> None:
    persistent.store.put_token("s1", token(1))
    raw_set_token_field(persistent, "s1", "blob", blob.encode() if isinstance(blob, str) else blob)
    with pytest.raises(error) as exc:
        persistent.store.get_token("s1")
    assert reason in str(exc.value)
    assert "'s1'" in str(exc.value)
    no_secret(str(exc.value))
    no_secret(repr(exc.value))


@pytest.mark.parametrize(
    "blob",
    [b"gAAAAAnot-really-fernet", b"\x00\xff\xfe garbage \x80", b"definitely not a token"],
    ids=["fernet-lookalike", "binary", "text"],
)
def test_garbage_in_an_encrypted_store_is_corrupt_not_a_key_problem(
    persistent: Backend, blob: bytes
) -> None:
    key = TokenCipher.generate_key()
    store = persistent.make(encryption_keys=[key])
    store.put_token("s1", token(1))
    raw_set_token_field(persistent, "s1", "blob", blob)
    with pytest.raises(CorruptRecordError) as exc:
        store.get_token("s1")
    assert type(exc.value) is CorruptRecordError  # not a key problem, not plaintext
    assert "is corrupt" in str(exc.value)
    assert "neither a JSON token set nor an encrypted one" in str(exc.value)
    assert "key" not in str(exc.value)
    assert blob.decode("latin-1") not in str(exc.value)


def test_corrupt_token_numbers_raise_a_typed_error(persistent: Backend) -> None:
    persistent.store.put_token("s1", token(1))
    raw_set_token_field(persistent, "s1", "skew", "sideways")
    with pytest.raises(CorruptRecordError, match="not a number"):
        persistent.store.get_token("s1")


def test_paging_arguments_are_checked(persistent: Backend) -> None:
    with pytest.raises(ConfigurationError):
        persistent.store.query(limit=-1)
    with pytest.raises(ConfigurationError):
        persistent.store.query(offset=-5)


def test_closed_store_refuses_work(persistent: Backend) -> None:
    store = persistent.make()
    store.close()
    store.close()  # idempotent
    with pytest.raises(UsageError, match="closed"):
        store.get("s1")
    with pytest.raises(UsageError, match="closed"):
        store.lock("x", ttl=1).acquire(timeout=0)


def test_redis_namespaces_are_isolated(redis_server: RedisServer) -> None:
    one = RedisStore(redis_server.url, namespace="iso-one")
    two = RedisStore(redis_server.url, namespace="iso-two")
    try:
        one.put(rec("s1"), expected_version=None)
        one.put_token("s1", token(), fence=9)
        assert two.get("s1") is None
        assert two.query() == []
        assert two.get_token("s1") is None
        two.put_token("s1", token(), fence=1)  # no fence history shared either
        assert one.lock("l", ttl=30).acquire(timeout=0)
        assert two.lock("l", ttl=30).acquire(timeout=0)
    finally:
        for store in (one, two):
            with closing(raw_redis_url(redis_server.url)) as client:
                client.delete(*client.keys(f"{store.namespace}:*"))
            store.close()


def raw_redis_url(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


# ======================================================================== SQLite


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    with SQLiteStore(path) as store:
        store.put(rec("s1"), expected_version=None)
        store.put_token("s1", token())
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
            assert mode == 0o600, f"{path.name}{suffix} has mode {mode:o}"
        with closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_locked_too_long_is_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, timeout=0.1, clock=clock)
    store.put(rec("s1"), expected_version=None)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        writes: list[Callable[[], object]] = [
            lambda: store.put(rec("s2"), expected_version=None),
            lambda: store.append_event("s1", event("s1", 1)),
            lambda: store.put_token("s1", token()),
            lambda: store.delete("s1"),
            lambda: store.lock("x", ttl=5).acquire(timeout=0),
        ]
        for write in writes:
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="locked") as exc:
                write()
            assert time.monotonic() - started >= 0.09
            assert 0.09 <= _waited(str(exc.value), 0.1) < 20
            assert isinstance(exc.value, StoreError)
        assert store.get("s1") is not None  # WAL: readers are not blocked
        with pytest.raises(StoreUnavailableError):
            asyncio.run(store.aput(rec("s3"), expected_version=None))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.put(rec("s2"), expected_version=None).version == 1
    store.close()


def _waited(message: str, timeout: float) -> float:
    """The wait a "stayed locked" message states, checked against its timeout."""
    match = re.search(r"waited (\d+\.\d+) s \(timeout ([\d.]+) s\)", message)
    assert match is not None, message
    assert float(match[2]) == timeout
    return float(match[1])


def test_a_new_sqlite_file_held_by_another_connection_is_waited_for(tmp_path: Path) -> None:
    # another process's write transaction on the file it has just created: switching
    # to WAL mode then fails at once (SQLite's busy timeout does not cover it)
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE IF NOT EXISTS theirs (x)")
    releaser = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    releaser.start()
    try:
        with SQLiteStore(path, timeout=30.0) as store:  # waits for the commit, then opens
            store.put(rec("s1"), expected_version=None)
            store.put_token("s1", token())
            assert store.get("s1") is not None
            assert store.get_token("s1") is not None
    finally:
        releaser.join()
        other.close()
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # held past the timeout: the error says how long it really waited
    path = tmp_path / "held.db"
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE IF NOT EXISTS theirs (x)")
        with pytest.raises(StoreUnavailableError, match="stayed locked") as exc:
            SQLiteStore(path, timeout=0.2)
        waited = _waited(str(exc.value), 0.2)
        assert 0.2 <= waited < 20  # it waited its timeout, and then it gave up
    finally:
        other.execute("ROLLBACK")
        other.close()
    with SQLiteStore(path, timeout=0.2) as store:  # free again: it opens
        assert store.get("s1") is None


def test_sqlite_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match=r"foreign\.db"):
        SQLiteStore(path)


_CHILD = """
import sys
from dataclasses import replace
from pathlib import Path
from authpulse._stores.sqlite import SQLiteStore
from authpulse._stores.base import VersionConflictError

store = SQLiteStore(sys.argv[1])
counter = Path(sys.argv[2])
for _ in range(10):
    while True:
        r = store.get("shared")
        try:
            store.put(replace(r, step=str(int(r.step) + 1)), expected_version=r.version)
            break
        except VersionConflictError:
            pass
for _ in range(5):
    with store.lock("proc", ttl=30) as lock:
        n, _, fences = counter.read_text().partition(":")
        counter.write_text(f"{int(n) + 1}:{fences}{lock.fence},")
store.close()
"""


@pytest.mark.slow  # three interpreters start: about 2 s
def test_sqlite_is_safe_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    counter = tmp_path / "counter.txt"
    counter.write_text("0:")
    with SQLiteStore(path) as store:
        store.put(rec("shared"), expected_version=None)
    children = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", _CHILD, str(path), str(counter)],
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
    with SQLiteStore(path) as store:
        final = store.get("shared")
    assert final is not None
    assert final.step == "30"
    assert final.version == 31
    n, _, fences = counter.read_text().partition(":")
    assert int(n) == 15  # no lost update under the lock
    numbers = [int(f) for f in fences.rstrip(",").split(",")]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 15


# ========================================================================= Redis


def test_redis_unavailable_then_back(tmp_path: Path, clock: FakeClock) -> None:
    with RedisServer(require_redis_server(), tmp_path) as server:
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        store = RedisStore(server.url, clock=clock)
        secret_url_store = RedisStore(url, clock=clock)
        try:
            store.put(rec("s1"), expected_version=None)
            server.stop()
            calls: list[Callable[[], object]] = [
                lambda: store.get("s1"),
                lambda: store.put(rec("s2"), expected_version=None),
                lambda: store.query(owner="alice", status=[SessionStatus.ACTIVE]),
                lambda: store.events("s1"),
                lambda: store.put_token("s1", token()),
                lambda: store.lock("x", ttl=5).acquire(timeout=0),
                lambda: secret_url_store.get("s1"),
                lambda: asyncio.run(_aget_and_close(RedisStore(server.url), "s1")),
            ]
            for call in calls:
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError, match="unavailable") as exc:
                    call()
                assert time.monotonic() - started < 3
                for text in (str(exc.value), repr(exc.value), str(exc.value.__cause__)):
                    no_secret(text)
            server.start()  # same port, empty (nothing was saved)
            assert store.get("s1") is None
            assert store.put(rec("s1"), expected_version=None).version == 1
        finally:
            store.close()
            secret_url_store.close()


async def _aget_and_close(store: RedisStore, sid: str) -> SessionRecord | None:
    try:
        return await store.aget(sid)
    finally:
        await store.aclose()


def test_redis_operations_are_flows_that_need_no_server() -> None:
    """Each Redis operation is one generator of wire steps (records, timeline, locks),
    driven here by hand: what it sends, and what it makes of the replies."""
    from authpulse._stores.redis_locks import lock_try
    from authpulse._stores.redis_records import put_record
    from authpulse._stores.redis_timeline import append_event, read_events
    from authpulse._stores.redis_wire import LOCK_TRY, PUT, Call, Eval, Keys, Pipe

    keys = Keys("app:")
    flow = append_event(keys, 3, "s1", event("s1", 1))
    step = next(flow)
    assert isinstance(step, Pipe)
    assert step.transaction
    assert [(c.name, c.args[0]) for c in step.calls] == [
        ("rpush", "app:ev:s1"),
        ("ltrim", "app:ev:s1"),
    ]
    assert step.calls[1].args[1:] == (-3, -1)
    with pytest.raises(StopIteration):
        flow.send([1, True])

    record = rec("s1")
    flow_r = put_record(keys, record, None)
    step = next(flow_r)
    assert isinstance(step, Eval)
    assert step.script is PUT
    assert step.keys == ["app:s:s1"]
    with pytest.raises(StopIteration) as done:
        flow_r.send([1, 1])
    assert done.value.value == replace(record, version=1)

    flow_l = lock_try(keys, "refresh", "holder-1", 2.5)
    step = next(flow_l)
    assert isinstance(step, Eval)
    assert step.script is LOCK_TRY
    assert list(step.keys) == ["app:lock:refresh", "app:lockfence:refresh"]
    assert list(step.args) == ["holder-1", 2500]
    with pytest.raises(StopIteration) as taken:
        flow_l.send(0)  # the server says another holder has it
    assert taken.value.value is None

    flow_e = read_events(keys, "s1")
    assert next(flow_e) == Call("lrange", ("app:ev:s1", 0, -1))
    with pytest.raises(StopIteration) as read:
        flow_e.send([])
    assert read.value.value == []

"""One refresh across sessions sharing a store (each Session stands in for a process).

Run against the memory, SQLite and Redis stores; the multi-process tests are
in test_multiprocess.py.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import authpulse
import authpulse.testing
from _redis import RedisServer, SlowProxy, redis_server_fixture  # noqa: F401 - fixture
from _support import make_token
from authpulse import (
    Clock,
    MemoryStore,
    RedisStore,
    RefreshTokenGrant,
    Session,
    SessionStore,
    SQLiteStore,
    StoreUnavailableError,
    SystemClock,
    TokenRetry,
)
from authpulse._sessions.coordination import newest, stored_is_usable
from authpulse._sessions.lock_renewal import renewing
from authpulse.testing import FakeClock, FakeIdP

StoreFactory = Callable[[], SessionStore]


def _factories(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> Iterator[StoreFactory]:
    """A factory of store handles that all see the same data (like processes would)."""
    opened: list[SessionStore] = []
    if name == "memory":
        shared = MemoryStore(clock=clock)

        def make() -> SessionStore:
            return shared

    elif name == "sqlite":
        path = tmp_path / "tokens.db"

        def make() -> SessionStore:
            s = SQLiteStore(path, clock=clock)
            opened.append(s)
            return s

    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        ns = "c" + uuid.uuid4().hex[:10]

        def make() -> SessionStore:
            s = RedisStore(server.url, namespace=ns, clock=clock)
            opened.append(s)
            return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """Store handles on the test's fake clock."""
    yield from _factories(request.param, request, tmp_path, clock)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def real_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Store handles on the real clock, for real threads contending: their lock
    waits must last while a holder works in real time (a fake clock would run
    a waiter's whole wait at once)."""
    yield from _factories(request.param, request, tmp_path, SystemClock())


def peer(idp: FakeIdP, clock: Clock, store: SessionStore, rt: str, **kwargs: Any) -> Session:
    return Session(
        RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=rt),
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        store=store,
        store_key="user-42",
        **kwargs,
    )


def test_a_peer_adopts_the_token_another_refreshed(
    idp: FakeIdP, clock: FakeClock, stores: StoreFactory
) -> None:
    rt = idp.issue_refresh_token()
    a = peer(idp, clock, stores(), rt)
    b = peer(idp, clock, stores(), rt)  # same initial refresh token, like two workers
    events: list[tuple[str, dict[str, Any]]] = []
    b.add_listener(lambda kind, fields: events.append((kind, fields)))
    token = a.token()
    assert idp.hits == 1
    assert b.token() == token  # read from the store: no IdP call, no reuse of rt
    assert idp.hits == 1
    assert ("refreshed", True) in [(k, f.get("adopted")) for k, f in events]
    # a full cycle later both need a new token: still one IdP call, and rotation holds
    clock.advance(3601)
    assert b.token() != token
    assert a.token() == b.token()
    assert idp.hits == 2
    assert idp.reuse_detected == 0
    a.close()
    b.close()


def test_stampede_of_sessions_and_threads_makes_one_token_call(
    real_stores: StoreFactory,
) -> None:
    clock = SystemClock()
    slow = FakeIdP(clock=clock, latency=0.05)
    rt = slow.issue_refresh_token()
    sessions = [peer(slow, clock, real_stores(), rt) for _ in range(4)]
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(s: Session) -> None:
        try:
            t = s.token()
        except BaseException as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(t)

    threads = [threading.Thread(target=work, args=(s,)) for s in sessions for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 32
    assert len(set(results)) == 1
    assert slow.hits == 1
    assert slow.reuse_detected == 0
    for s in sessions:
        s.close()


def test_uses_the_newest_refresh_token_from_the_store(
    idp: FakeIdP, clock: FakeClock, stores: StoreFactory
) -> None:
    rt = idp.issue_refresh_token()
    a = peer(idp, clock, stores(), rt)
    b = peer(idp, clock, stores(), rt)
    a.token()
    b.token()  # adopted
    clock.advance(3601)
    a.token()  # a rotates: the store now holds rt2; b still remembers rt1 in memory
    clock.advance(3601)
    b.token()  # b must refresh with rt2 from the store, not its own rt1
    assert idp.reuse_detected == 0
    assert idp.hits == 3
    a.close()
    b.close()


@pytest.mark.anyio
async def test_async_peers(idp: FakeIdP, clock: FakeClock, stores: StoreFactory) -> None:
    rt = idp.issue_refresh_token()
    sa, sb = stores(), stores()
    a = peer(idp, clock, sa, rt)
    b = peer(idp, clock, sb, rt)
    token = await a.atoken()
    assert await b.atoken() == token
    clock.advance(3601)
    assert await b.atoken() == await a.atoken()
    assert idp.hits == 2
    assert idp.reuse_detected == 0
    await a.aclose()
    await b.aclose()
    await sa.aclose()  # a store's async connections belong to this event loop
    await sb.aclose()


class FlakyStore(MemoryStore):
    """A memory store that can be switched off, as a Redis that went away."""

    down = False

    def lock(self, name: str, ttl: float) -> authpulse.StoreLock:
        if self.down:
            raise StoreUnavailableError("store is down")
        return super().lock(name, ttl)


def test_store_down_falls_back_to_local_single_flight(idp: FakeIdP, clock: FakeClock) -> None:
    store = FlakyStore(clock=clock)
    rt = idp.issue_refresh_token()
    s = peer(idp, clock, store, rt, retry=TokenRetry(attempts=1))
    events: list[str] = []
    s.add_listener(lambda kind, fields: events.append(kind))
    s.token()
    store.down = True
    clock.advance(3601)
    assert idp.validate(s.token())  # never crash the caller because of the store
    assert "store_unavailable" in events
    report = s.health()
    assert any(c.name == "store" for c in report.components)
    store.down = False
    clock.advance(3601)
    assert idp.validate(s.token())
    assert "store_recovered" in events
    assert not any(c.name == "store" for c in s.health().components)
    assert idp.reuse_detected == 0


class RacingStore(MemoryStore):
    """Returns a stale token set on the first read, like a peer writing in between."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.stale: authpulse.StoredToken | None = None

    def get_token(self, session_id: str) -> authpulse.StoredToken | None:
        if self.stale is not None:
            old, self.stale = self.stale, None
            return old
        return super().get_token(session_id)


def test_invalid_grant_rereads_the_store_before_failing(idp: FakeIdP, clock: FakeClock) -> None:
    store = RacingStore(clock)
    rt = idp.issue_refresh_token()
    a = peer(idp, clock, store, rt)
    b = peer(idp, clock, store, rt)
    a.token()
    clock.advance(3601)
    before = store.get_token("user-42")
    a.token()  # a rotates ...
    store.stale = before  # ... but b's first read still sees the pre-rotation set
    clock.advance(1)
    hits = idp.hits
    # b refreshes with the stale refresh token; the IdP refuses it
    idp.fail_next(1, authpulse.testing.Fault.oauth("invalid_grant"))
    token = b.token()
    assert idp.hits == hits + 1  # one refused call, then the store's newer set was adopted
    assert token == a.token()
    assert idp.reuse_detected == 0
    a.close()
    b.close()


def test_invalid_grant_with_nothing_newer_in_the_store_fails(
    idp: FakeIdP, clock: FakeClock
) -> None:
    store = MemoryStore(clock=clock)
    s = peer(idp, clock, store, idp.issue_refresh_token())
    idp.fail_next(1, authpulse.testing.Fault.oauth("invalid_grant"))
    with pytest.raises(authpulse.OAuthError):
        s.token()


def test_pure_decisions(clock: FakeClock) -> None:
    from pydantic import SecretStr

    def ts(issued: float, life: float = 600, access: str = "a") -> authpulse.TokenSet:
        return authpulse.TokenSet(
            access_token=SecretStr(access), issued_at=issued, expires_at=issued + life
        )

    policy = authpulse.RefreshPolicy()
    now = 1000.0
    fresh = authpulse.StoredToken(ts(now), 0.0, 3, None, now)
    assert stored_is_usable(
        fresh, reason="expired", known_version=None, rejected_access=None, now=now, policy=policy
    )
    assert not stored_is_usable(
        fresh, reason="forced", known_version=3, rejected_access=None, now=now, policy=policy
    )
    assert not stored_is_usable(
        fresh,
        reason="rejected",
        known_version=None,
        rejected_access=SecretStr("a"),
        now=now,
        policy=policy,
    )
    stale = authpulse.StoredToken(ts(now - 590), 0.0, 3, None, now)
    assert not stored_is_usable(
        stale, reason="expired", known_version=None, rejected_access=None, now=now, policy=policy
    )
    assert newest(ts(1), ts(2)).issued_at == 2  # type: ignore[union-attr]
    assert newest(None, ts(2)) is not None
    assert newest(None, None) is None


class _AlwaysHigh(random.Random):
    """A jitter draw at the top of the range: this session refreshes early."""

    def random(self) -> float:
        return 0.99


def test_a_stale_refresh_never_readopts_the_set_it_holds(idp: FakeIdP, clock: FakeClock) -> None:
    """Between our jittered refresh time and the unjittered one, the stored set (the
    one we hold) still counts as FRESH: adopting it again would only re-draw the
    jitter, call after call. We refresh instead, once."""
    store = MemoryStore(clock=clock)
    s = peer(
        idp, clock, store, idp.issue_refresh_token(), policy=authpulse.RefreshPolicy(jitter=0.5)
    )
    s._rng = _AlwaysHigh()
    events: list[tuple[str, Any]] = []
    s.add_listener(lambda kind, fields: events.append((kind, fields.get("adopted"))))
    s.token()
    assert s.refresh_at is not None
    clock.advance(s.refresh_at - clock.now() + 1)  # STALE for us, FRESH without jitter
    for _ in range(5):
        s.token()
        s.join_background()
    assert idp.hits == 2
    assert s.generation == 2
    assert ("refreshed", True) not in events
    s.close()


def test_a_stale_refresh_keeps_the_token_while_the_store_is_down(
    idp: FakeIdP, clock: FakeClock
) -> None:
    store = FlakyStore(clock=clock)
    s = peer(idp, clock, store, idp.issue_refresh_token())
    events: list[tuple[str, dict[str, Any]]] = []
    s.add_listener(lambda kind, fields: events.append((kind, fields)))
    token = s.token()
    store.down = True
    clock.advance(590)  # due (600 s tokens), not expired
    assert s.token() == token
    s.join_background()
    # no process-local refresh: peers doing the same would reuse one refresh token
    assert idp.hits == 1
    assert ("store_unavailable", {"error": "StoreUnavailableError"}) in events
    failed = [f for k, f in events if k == "refresh_failed"]
    assert [f["error"] for f in failed] == ["StoreUnavailableError"]
    assert {"store", "refresh"} <= {c.name for c in s.health().components}
    clock.advance(6)  # expired now: refreshing alone is the only way left
    assert idp.validate(s.token())
    assert idp.hits == 2
    s.close()


@pytest.mark.anyio
async def test_async_stale_refresh_keeps_the_token_while_the_store_is_down(
    idp: FakeIdP, clock: FakeClock
) -> None:
    store = FlakyStore(clock=clock)
    s = peer(idp, clock, store, idp.issue_refresh_token())
    token = await s.atoken()
    store.down = True
    clock.advance(590)
    assert await s.atoken() == token
    for task in list(s._tasks or ()):
        await task
    assert idp.hits == 1
    last_error = s.stats().last_error
    assert last_error is not None
    assert last_error.startswith("StoreUnavailableError")
    await s.aclose()


def test_a_waiter_adopts_what_the_lock_holder_stored() -> None:
    """A process waiting for the refresh lock reads the store between tries: once
    the holder has written, it adopts at once instead of queueing for the lock.
    (Real clock: the holder writes from another thread in real time.)"""
    clock = SystemClock()
    idp = FakeIdP(clock=clock)
    store = MemoryStore(clock=clock)
    s = peer(idp, clock, store, idp.issue_refresh_token())
    holder = store.lock("refresh:user-42", ttl=30)
    assert holder.acquire(timeout=0)  # a peer is refreshing
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(s.token()))
    waiter.start()
    fresh = authpulse.TokenSet(
        access_token=SecretStr("at_from_peer"),
        refresh_token=SecretStr("rt_from_peer"),
        issued_at=clock.now(),
        expires_at=clock.now() + 600,
    )
    store.put_token("user-42", fresh, fence=holder.fence)
    waiter.join(timeout=30)
    assert got == ["at_from_peer"]
    assert idp.hits == 0
    assert holder.renew()  # never taken from the holder
    holder.release()
    s.close()


class _FencedOut(MemoryStore):
    """Every fenced write is refused, and the store fails right after."""

    reads = 0

    def get_token(self, session_id: str) -> authpulse.StoredToken | None:
        self.reads += 1
        if self.reads > 1:
            raise StoreUnavailableError("gone")
        return super().get_token(session_id)

    def put_token(
        self,
        session_id: str,
        token: authpulse.TokenSet,
        *,
        skew: float = 0.0,
        fence: int | None = None,
    ) -> authpulse.StoredToken:
        raise authpulse.FencingError(session_id, fence or 0, (fence or 0) + 1)


def test_a_fenced_out_write_keeps_the_new_set_if_the_store_then_fails(
    idp: FakeIdP, clock: FakeClock
) -> None:
    s = peer(idp, clock, _FencedOut(clock=clock), idp.issue_refresh_token())
    assert idp.validate(s.token())  # the IdP rotated: losing this set would lose the grant
    s.close()


@pytest.mark.parametrize("wrong", ["key", "no key"])
def test_an_unreadable_stored_set_fails_the_refresh_without_asking_the_idp(
    idp: FakeIdP, clock: FakeClock, tmp_path: Path, wrong: str
) -> None:
    """A wrong encryption key is a configuration error, not an outage: refreshing
    alone with the source's (long rotated) refresh token would revoke the grant."""
    key = authpulse.TokenCipher.generate_key()
    rt = idp.issue_refresh_token()
    writer_store = SQLiteStore(tmp_path / "t.db", encryption_keys=[key], clock=clock)
    writer = peer(idp, clock, writer_store, rt)
    writer.token()
    clock.advance(601)
    writer.token()  # rotated: rt is spent, the store holds the live refresh token
    keys = [authpulse.TokenCipher.generate_key()] if wrong == "key" else None
    reader_store = SQLiteStore(tmp_path / "t.db", encryption_keys=keys, clock=clock)
    reader = peer(idp, clock, reader_store, rt)
    events: list[str] = []
    reader.add_listener(lambda kind, fields: events.append(kind))
    with pytest.raises(authpulse.DecryptionError):
        reader.token()
    assert idp.hits == 2
    assert idp.reuse_detected == 0
    assert "store_unavailable" not in events
    assert idp.validate(writer.token())  # the grant is intact
    for s, st in ((writer, writer_store), (reader, reader_store)):
        s.close()
        st.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("delay", [1.5, None], ids=["late", "silent"])
def test_a_slow_or_silent_redis_cannot_hold_the_first_token_past_the_deadline(
    redis_server: RedisServer, mode: str, delay: float | None
) -> None:
    """Store calls share the refresh's deadline (3 s here): a Redis answering 1.5 s
    late, or never, took 6 s and 15 s before (each call waited its socket timeout,
    retried twice); now the store counts as unavailable once the deadline is spent
    and the token comes from the IdP process-locally."""
    real = authpulse.SystemClock()  # the store is really slow: its time is real time
    idp = FakeIdP(clock=real)
    with SlowProxy(redis_server.port, delay) as proxy:
        store = RedisStore(proxy.url, namespace="slow" + uuid.uuid4().hex[:8], clock=real)
        session = Session(
            authpulse.ClientCredentials(idp.token_url, "client", "secret"),
            clock=real,
            transport=idp.transport,
            async_transport=idp.async_transport,
            store=store,
            retry=TokenRetry(deadline=3.0),
        )
        events: list[str] = []
        session.add_listener(lambda kind, fields: events.append(kind))
        began = time.monotonic()
        token = session.token() if mode == "sync" else asyncio.run(session.atoken())
        took = time.monotonic() - began
        assert idp.validate(token)
        assert idp.hits == 1
        assert "store_unavailable" in events
        assert took < 3.0 + 1.5  # the deadline, plus room for a loaded machine
        session.close()
        store.close()


# ------------------------------------------------------ lock waits on the clock

#: a generous real-time bound: the wait returned rather than slept for real
RETURNED = 5.0


@pytest.fixture(params=["memory", "sqlite"])
def local_stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """The stores whose lock TTLs run on the injected clock."""
    yield from _factories(request.param, request, tmp_path, clock)


def _waited(clock: FakeClock, since: int, wait: float) -> None:
    polls = clock.sleeps[since:]
    assert len(polls) > 10
    assert max(polls) <= 0.1
    assert sum(polls) == pytest.approx(wait)


def test_a_refresh_waits_for_a_busy_lock_on_the_clock(
    idp: FakeIdP, clock: FakeClock, local_stores: StoreFactory
) -> None:
    """The refresh lock is held by a peer that never lets go: the wait runs on the
    session's clock (a fake one runs it at once), then the refresh goes ahead
    process-locally."""
    holder = local_stores().lock("refresh:user-42", ttl=3600)
    assert holder.acquire(timeout=0)
    s = peer(idp, clock, local_stores(), idp.issue_refresh_token(), lock_ttl=5)
    wait = s.retry.deadline + 5
    began, seen, real = clock.monotonic(), len(clock.sleeps), time.monotonic()
    assert s.token()
    assert time.monotonic() - real < RETURNED
    _waited(clock, seen, wait)
    assert clock.monotonic() - began == pytest.approx(wait)
    assert idp.hits == 1
    assert holder.renew()  # never taken from the holder
    holder.release()
    s.close()


@pytest.mark.anyio
async def test_an_async_refresh_waits_for_a_busy_lock_on_the_clock(
    idp: FakeIdP, clock: FakeClock, local_stores: StoreFactory
) -> None:
    holder = local_stores().lock("refresh:user-42", ttl=3600)
    assert holder.acquire(timeout=0)
    s = peer(idp, clock, local_stores(), idp.issue_refresh_token(), lock_ttl=5)
    wait = s.retry.deadline + 5
    began, seen, real = clock.monotonic(), len(clock.sleeps), time.monotonic()
    assert await s.atoken()
    assert time.monotonic() - real < RETURNED
    _waited(clock, seen, wait)
    assert clock.monotonic() - began == pytest.approx(wait)
    assert idp.hits == 1
    holder.release()
    await s.aclose()


# ------------------------------------------------------- lock renewal threads


@pytest.fixture
def started_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads started from now on."""
    names: list[str] = []
    start = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        names.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", counting)
    return names


def test_a_refresh_on_the_memory_store_starts_no_thread(
    idp: FakeIdP, clock: FakeClock, started_threads: list[str]
) -> None:
    """The in-process store's lock cannot expire under a live holder: no renewal
    thread (nor any other) is started per refresh."""
    s = peer(idp, clock, MemoryStore(clock=clock), idp.issue_refresh_token())
    first = s.token()
    clock.advance(3601)
    assert s.token() != first
    s.force_refresh()
    assert idp.hits == 3
    assert started_threads == []
    s.close()


def test_a_refresh_on_the_memory_store_of_a_manager_starts_no_thread(
    idp: FakeIdP, clock: FakeClock, started_threads: list[str]
) -> None:
    manager = authpulse.SessionManager(clock=clock, transport=idp.transport)
    session = manager.create_session(
        "alice",
        RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
        ),
    )
    assert session.session.token()
    session.session.force_refresh()
    assert idp.hits == 2
    assert started_threads == []
    manager.shutdown()


def test_a_refresh_on_sqlite_renews_its_lock_in_a_thread(
    idp: FakeIdP, clock: FakeClock, tmp_path: Path, started_threads: list[str]
) -> None:
    store = SQLiteStore(tmp_path / "t.db", clock=clock)
    s = peer(idp, clock, store, idp.issue_refresh_token())
    assert s.token()
    assert started_threads.count("authpulse-lock-renew") == 1
    s.close()
    store.close()


def test_a_lock_renewal_follows_the_clock_of_the_store(tmp_path: Path) -> None:
    """A refresh held up past its lock TTL on a fake clock keeps the lock: the
    renewal looks at the store's clock (and never sleeps on it, which would move it)."""
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "t.db", clock=clock)
    lock = store.lock("refresh:k", ttl=30)
    assert lock.acquire(timeout=0)
    renewed = threading.Semaphore(0)
    renew = lock.renew

    def counted() -> bool:
        ok = renew()
        renewed.release()
        return ok

    lock.renew = counted  # type: ignore[method-assign]
    with renewing(lock, 30, clock):
        for _ in range(4):  # 60 s of the clock: twice the TTL
            clock.advance(15)
            assert renewed.acquire(timeout=RETURNED)
            assert store.lock("refresh:k", ttl=30).acquire(timeout=0) is False
    assert clock.sleeps == []
    lock.release()
    store.close()


class _CorruptThenFencedOut(_FencedOut):
    """The stored set is unusable, the fenced write of its replacement is
    refused, and the store fails right after."""

    def get_token(self, session_id: str) -> authpulse.StoredToken | None:
        self.reads += 1
        if self.reads == 1:
            raise authpulse.CorruptRecordError(session_id, "token", "not valid JSON")
        raise StoreUnavailableError("gone")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_replaced_unusable_set_is_reported_even_when_the_write_is_fenced_out(
    clock: FakeClock, mode: str
) -> None:
    """Sync and async refreshes report alike that the unusable record was
    replaced in memory only (``written`` false)."""
    session = Session(
        authpulse.CallableSource(lambda current: make_token(clock.now())),
        clock=clock,
        store=_CorruptThenFencedOut(clock=clock),
        store_key="user-42",
    )
    replaced: list[dict[str, Any]] = []
    session.add_listener(
        lambda kind, fields: replaced.append(fields) if kind == "token_record_replaced" else None
    )
    assert (session.token() if mode == "sync" else await session.atoken()) == "at_test_access_token"
    assert replaced == [
        {"error": "CorruptRecordError", "problem": "not valid JSON", "written": False}
    ]
    await session.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refresh_stops_renewing_its_lock_before_releasing_it(
    idp: FakeIdP, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Sync and async alike: the renewal ends first, so it never renews a lock
    already released (and maybe taken by a peer)."""
    import authpulse._sessions.lock_renewal as lock_renewal

    steps: list[str] = []

    def wrap_stop(stop: Callable[[], None]) -> Callable[[], None]:
        def stopped() -> None:
            steps.append("renewal stopped")
            stop()

        return stopped

    real_start, real_astart = lock_renewal.start_renewal, lock_renewal.astart_renewal

    async def astart(*args: Any) -> Callable[[], None]:
        return wrap_stop(await real_astart(*args))

    monkeypatch.setattr(lock_renewal, "start_renewal", lambda *a: wrap_stop(real_start(*a)))
    monkeypatch.setattr(lock_renewal, "astart_renewal", astart)
    real_release, real_arelease = authpulse.StoreLock.release, authpulse.StoreLock.arelease

    def release(self: authpulse.StoreLock) -> None:
        steps.append("released")
        real_release(self)

    async def arelease(self: authpulse.StoreLock) -> None:
        steps.append("released")
        await real_arelease(self)

    monkeypatch.setattr(authpulse.StoreLock, "release", release)
    monkeypatch.setattr(authpulse.StoreLock, "arelease", arelease)
    store = SQLiteStore(tmp_path / "t.db", clock=clock)
    s = peer(idp, clock, store, idp.issue_refresh_token())
    assert s.token() if mode == "sync" else await s.atoken()
    assert steps == ["renewal stopped", "released"]
    await s.aclose()
    store.close()

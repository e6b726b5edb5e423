"""One refresh across sessions sharing a store (each Session stands in for a process).

Run against the memory, SQLite and Redis stores; the multi-process tests are
in test_multiprocess.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._redis import RedisServer, redis_server_fixture  # noqa: F401 - fixture

import authpulse
import authpulse.testing
from authpulse import (
    MemoryStore,
    RedisStore,
    RefreshTokenGrant,
    Session,
    SessionStore,
    SQLiteStore,
    StoreUnavailableError,
    TokenRetry,
)
from authpulse._coordination import newest, stored_is_usable
from authpulse.testing import FakeClock, FakeIdP

StoreFactory = Callable[[], SessionStore]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """A factory of store handles that all see the same data (like processes would)."""
    opened: list[SessionStore] = []
    if request.param == "memory":
        shared = MemoryStore(clock=clock)

        def make() -> SessionStore:
            return shared

    elif request.param == "sqlite":
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


def peer(idp: FakeIdP, clock: FakeClock, store: SessionStore, rt: str, **kwargs: Any) -> Session:
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
    idp: FakeIdP, clock: FakeClock, stores: StoreFactory
) -> None:
    slow = FakeIdP(clock=clock, latency=0.05)
    rt = slow.issue_refresh_token()
    sessions = [peer(slow, clock, stores(), rt) for _ in range(4)]
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
        fresh, reason="rejected", known_version=None, rejected_access="a", now=now, policy=policy
    )
    stale = authpulse.StoredToken(ts(now - 590), 0.0, 3, None, now)
    assert not stored_is_usable(
        stale, reason="expired", known_version=None, rejected_access=None, now=now, policy=policy
    )
    assert newest(ts(1), ts(2)).issued_at == 2  # type: ignore[union-attr]
    assert newest(None, ts(2)) is not None
    assert newest(None, None) is None

"""Awaited SessionManager methods never make a blocking store call on the loop.

The stores are wrapped in a guard whose sync methods refuse to run (and note
the call) while an event loop runs on the calling thread; their async methods
go straight through. Every awaited manager method, and the awaited refreshes
of a managed session (whose events the manager writes to the store), run
against it on SQLite and on a real Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import authpulse
from _redis import RedisServer, redis_server_fixture  # noqa: F401 - the fixture
from authpulse import (
    EventKind,
    ManagerSettings,
    RedisStore,
    SessionManager,
    SessionStatus,
    SQLiteStore,
    StoreLock,
)
from authpulse.testing import FakeClock, FakeIdP

SYNC_METHODS = frozenset(
    {
        "get",
        "put",
        "query",
        "delete",
        "append_event",
        "events",
        "close",
        "get_token",
        "put_token",
        "lock_try",
        "lock_release",
        "lock_renew",
    }
)


class LoopBlockedError(Exception):
    """A sync store method was called while an event loop ran on this thread."""


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class GuardStore:
    """A store whose sync methods refuse to run on a thread with a running loop."""

    def __init__(self, inner: Any, clock: FakeClock) -> None:
        self._inner = inner
        self._clock = clock
        self.blocked: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in SYNC_METHODS:
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if _loop_running():
                self.blocked.append(name)
                raise LoopBlockedError(f"store.{name}() called on the event loop")
            return attr(*args, **kwargs)

        return guarded

    def lock(self, name: str, ttl: float) -> StoreLock:
        return StoreLock(self, name, ttl, clock=self._clock)


@pytest.fixture(params=["sqlite", "redis"])
def guard(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[GuardStore]:
    inner: Any
    if request.param == "sqlite":
        inner = SQLiteStore(tmp_path / "sessions.db", clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        inner = RedisStore(server.url, namespace="g" + uuid.uuid4().hex[:10], clock=clock)
    yield GuardStore(inner, clock)
    inner.close()


def _grant(idp: FakeIdP) -> authpulse.RefreshTokenGrant:
    return authpulse.RefreshTokenGrant(
        idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
    )


def _manager(store: GuardStore, clock: FakeClock, idp: FakeIdP, **kw: Any) -> SessionManager:
    return SessionManager(
        store,
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        seed=1,
        **kw,
    )


def _status(ms: authpulse.ManagedSession) -> SessionStatus:
    return ms.status  # a call, so the type checker does not narrow across awaits


async def _kinds(store: GuardStore, sid: str) -> list[EventKind]:
    return [e.kind for e in await store.aevents(sid)]


def test_the_guard_refuses_sync_store_calls_on_a_loop(guard: GuardStore) -> None:
    assert guard.get("x") is None  # no loop on this thread: allowed

    async def main() -> None:
        with pytest.raises(LoopBlockedError):
            guard.get("x")
        assert await guard.aget("x") is None
        assert await asyncio.to_thread(guard.get, "x") is None  # a worker thread: allowed
        await guard.aclose()

    asyncio.run(main())
    assert guard.blocked == ["get"]


@pytest.mark.anyio
async def test_every_awaited_manager_method_awaits_the_store(
    guard: GuardStore, clock: FakeClock, idp: FakeIdP
) -> None:
    probed: list[str] = []

    async def probe(ms: authpulse.ManagedSession) -> bool:
        probed.append(ms.id)
        return True

    m = _manager(guard, clock, idp, probe=probe, settings=ManagerSettings(heartbeat_interval=60))
    ms = await m.acreate_session("alice", _grant(idp))
    assert ms.status is SessionStatus.ACTIVE
    assert await m.aget(ms.id, owner="alice") is ms
    assert (await m.arecord_activity(ms.id)).status is SessionStatus.ACTIVE
    assert (await m.aupdate(ms.id, phase="p1")).phase == "p1"
    assert (await m.apause(ms.id, "lunch")).status is SessionStatus.PAUSED
    assert (await m.aresume(ms.id)).status is SessionStatus.ACTIVE
    assert [r.id for r in await m.alist(owner="alice")] == [ms.id]

    assert await ms.session.atoken()  # first token: its events reach the store awaited
    before = ms.session.generation
    await ms.session.aforce_refresh()
    assert ms.session.generation == before + 1

    at = ms.session.refresh_at
    assert at is not None
    clock.advance(at - clock.now() + 1)
    report = await m.atick()  # a token due, a heartbeat due
    assert (report.refreshed, report.heartbeats, report.errors) == (1, 1, 0)
    assert probed == [ms.id]
    assert ms.session.generation == before + 2

    clock.advance(1801)
    report = await m.atick()  # idle: paused
    assert (report.paused, report.errors) == (1, 0)
    assert _status(ms) is SessionStatus.PAUSED
    assert (await m.aresume(ms.id)).status is SessionStatus.ACTIVE

    done = await m.acreate_session("bob", _grant(idp))
    assert (await m.aclose(done.id)).status is SessionStatus.COMPLETED
    gone = await m.acreate_session("carol", _grant(idp))
    assert (await m.acancel(gone.id, "no")).status is SessionStatus.CANCELLED
    assert await m.apurge(0) == 2

    kinds = await _kinds(guard, ms.id)
    for kind in (
        EventKind.SESSION_CREATED,
        EventKind.PAUSED,
        EventKind.RESUMED,
        EventKind.STATE_CHANGED,
        EventKind.TOKEN_REFRESHED,
        EventKind.HEARTBEAT,
    ):
        assert kind in kinds
    assert kinds.count(EventKind.TOKEN_REFRESHED) == 3
    stored = await guard.aget(ms.id)
    assert stored is not None
    assert stored.auth_state == ms.auth_state.value == "fresh"
    await m.ashutdown()
    assert guard.blocked == []


@pytest.mark.anyio
async def test_awaited_recover_and_cancel_stored_await_the_store(
    guard: GuardStore, clock: FakeClock, idp: FakeIdP
) -> None:
    m1 = _manager(guard, clock, idp)
    a = await m1.acreate_session("alice", _grant(idp))
    b = await m1.acreate_session("bob", _grant(idp))
    await m1.apause(a.id)
    await m1.astop()

    m2 = _manager(guard, clock, idp)  # another process: nothing live
    back = await m2.arecover(a.id, _grant(idp))
    assert back.status is SessionStatus.ACTIVE
    assert (await m2.acancel_stored(b.id, "operator")).status is SessionStatus.CANCELLED
    assert EventKind.RECOVERED in await _kinds(guard, a.id)
    assert EventKind.CLOSED in await _kinds(guard, b.id)
    await m2.ashutdown()
    assert guard.blocked == []


@pytest.mark.anyio
async def test_events_of_an_awaited_refresh_are_stored_in_order_before_the_next_call(
    guard: GuardStore, clock: FakeClock, idp: FakeIdP
) -> None:
    m = _manager(guard, clock, idp)
    ms = await m.acreate_session("alice", _grant(idp))
    await ms.session.atoken()
    await m.arecord_activity(ms.id)  # handles the queued refresh events first
    kinds = await _kinds(guard, ms.id)
    assert kinds == [
        EventKind.SESSION_CREATED,
        EventKind.STATE_CHANGED,  # fresh -> refreshing
        EventKind.STATE_CHANGED,  # refreshing -> fresh
        EventKind.TOKEN_REFRESHED,
        EventKind.ACTIVITY,
    ]
    await m.ashutdown()
    assert guard.blocked == []


def test_sync_methods_still_use_the_sync_store_api(
    guard: GuardStore, clock: FakeClock, idp: FakeIdP
) -> None:
    m = _manager(guard, clock, idp)
    ms = m.create_session("alice", _grant(idp))
    assert ms.session.token()
    m.pause(ms.id)
    assert [e.kind for e in m.timeline(ms.id)][-1] is EventKind.PAUSED
    m.shutdown()
    assert guard.blocked == []


def test_awaited_refresh_and_tick_of_a_session_made_before_the_loop(
    guard: GuardStore, clock: FakeClock, idp: FakeIdP
) -> None:
    m = _manager(guard, clock, idp)
    ms = m.create_session("alice", _grant(idp))  # no loop yet: the sync API

    async def main() -> list[EventKind]:
        await ms.session.atoken()  # the manager writes its refresh events, awaited
        at = ms.session.refresh_at
        assert at is not None
        clock.advance(at - clock.now() + 1)
        report = await m.atick()
        assert (report.refreshed, report.errors) == (1, 0)
        kinds = await _kinds(guard, ms.id)
        await m.ashutdown()
        return kinds

    kinds = asyncio.run(main())
    assert guard.blocked == []
    assert kinds.count(EventKind.TOKEN_REFRESHED) == 2
    assert kinds.count(EventKind.STATE_CHANGED) == 4

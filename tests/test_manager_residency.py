"""A manager with a source factory keeps in memory only the sessions in use or
with work due: the others are evicted to the store and hydrated on demand.
Everything runs on a fake clock; ticks are driven by hand."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import authpulse
from _redis import RedisServer, redis_server_fixture  # noqa: F401 - registers the fixture
from authpulse import (
    ConfigurationError,
    EventKind,
    ManagerSettings,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    SQLiteStore,
)
from authpulse._stores.redis import RedisStore
from authpulse.testing import FakeClock, FakeIdP

SETTINGS = ManagerSettings(evict_after=60.0, resident_horizon=60.0, idle_timeout=None)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    if request.param == "memory":
        made: Any = authpulse.MemoryStore(clock=clock)
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "s.db", clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisStore(server.url, namespace="t" + uuid.uuid4().hex[:12], clock=clock)
    try:
        yield made
    finally:
        made.close()


class Factory:
    """One source per stored session: a refresh grant that takes its refresh
    token from the session's token set. Counts the sources it made."""

    def __init__(self, idp: FakeIdP) -> None:
        self.idp = idp
        self.made: list[str] = []

    def __call__(self, record: authpulse.SessionRecord) -> authpulse.RefreshTokenGrant:
        self.made.append(record.id)
        return authpulse.RefreshTokenGrant(
            self.idp.token_url, "client", "secret", refresh_token=None
        )


def manager(
    store: Any, clock: FakeClock, idp: FakeIdP, settings: ManagerSettings = SETTINGS
) -> tuple[SessionManager, Factory]:
    factory = Factory(idp)
    m = SessionManager(
        store,
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        settings=settings,
        sources=factory,
        seed=1,
    )
    return m, factory


def grant(idp: FakeIdP) -> authpulse.RefreshTokenGrant:
    return authpulse.RefreshTokenGrant(
        idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
    )


def live_ids(m: SessionManager) -> set[str]:
    return {ms.id for ms in m.live_sessions()}


def test_a_session_nobody_uses_is_evicted_and_loses_nothing(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, factory = manager(store, clock, idp)
    ms = m.create_session("alice", grant(idp))
    ms.session.token()  # a token set, written to the store by its first refresh
    m.update(ms.id, phase="onboarding", metadata={"custom": {"plan": "pro"}})
    before = (ms.record, ms.session.token_set, ms.auth_state, m.stats())
    assert m.tick().evicted == 0  # used just now: stays
    clock.advance(61)
    report = m.tick()
    assert report.evicted == 1
    assert live_ids(m) == set()
    # its next deadline (the token's refresh) is in the store's schedule
    due = store.peek_due(clock.now() + 86400, 10)
    assert [sid for sid, _ in due] == [ms.id]
    assert due[0][1] == pytest.approx(ms.session.refresh_at)
    assert m.stats() == before[3]  # the aggregates still count it

    back = m.get(ms.id, owner="alice")  # hydrated
    assert back is not ms
    assert factory.made == [ms.id]
    assert (back.record, back.session.token_set, back.auth_state) == before[:3]
    assert back.record.phase == "onboarding"
    assert m.stats() == before[3]  # not counted twice
    assert m.admin_get(ms.id) is back
    assert live_ids(m) == {ms.id}


def test_a_token_given_at_creation_is_written_to_the_store_before_eviction(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, _ = manager(store, clock, idp)
    seed = SessionManager(authpulse.MemoryStore(), clock=clock, transport=idp.transport)
    token = seed.create_session("x", grant(idp)).session
    token.token()
    ts = token.token_set
    assert ts is not None
    ms = m.create_session("alice", grant(idp), token=ts)
    assert store.get_token(ms.id) is None  # not stored yet
    clock.advance(61)
    assert m.tick().evicted == 1
    stored = store.get_token(ms.id)
    assert stored is not None
    assert stored.token == ts
    assert m.admin_get(ms.id).session.token_set == ts
    seed.shutdown()


def test_a_cold_session_is_woken_when_its_refresh_is_due_and_evicted_again(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, factory = manager(store, clock, idp)
    ms = m.create_session("alice", grant(idp))
    ms.session.token()
    old = ms.session.token_set
    clock.advance(61)
    assert m.tick().evicted == 1
    refresh_at = ms.session.refresh_at
    assert refresh_at is not None
    clock.advance(refresh_at + 1 - clock.now())
    report = m.tick()
    assert report.hydrated == 1
    assert report.refreshed == 1
    assert live_ids(m) == {ms.id}
    woken = m._registry.live[ms.id]
    assert woken.session.token_set != old
    stored = store.get_token(ms.id)
    assert stored is not None
    assert stored.token == woken.session.token_set
    clock.advance(1)
    assert m.tick().evicted == 1  # nobody used it: cold again, next refresh in the store
    assert live_ids(m) == set()
    assert [sid for sid, _ in store.peek_due(clock.now() + 86400, 10)] == [ms.id]
    assert factory.made == [ms.id]


def test_idle_tick_reads_the_schedule_once_and_does_nothing(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, _ = manager(store, clock, idp)
    m.create_sessions([("alice", None), ("bob", None)])
    report = m.tick()
    assert report == authpulse.TickReport(clock.now())
    assert live_ids(m) == set()


def test_a_session_in_use_is_not_evicted(store: Any, clock: FakeClock, idp: FakeIdP) -> None:
    m, _ = manager(store, clock, idp)
    ms = m.create_session("alice", grant(idp))
    for _ in range(5):
        clock.advance(40)
        m.record_activity(ms.id)
        assert m.tick().evicted == 0
    clock.advance(40)
    m.get(ms.id, owner="alice")  # a lookup counts as use
    clock.advance(40)
    assert m.tick().evicted == 0
    clock.advance(30)
    assert m.tick().evicted == 1


def test_a_session_with_work_due_within_the_horizon_stays(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    settings = ManagerSettings(evict_after=60.0, resident_horizon=3600.0, idle_timeout=None)
    m, _ = manager(store, clock, idp, settings)
    ms = m.create_session("alice", grant(idp))
    ms.session.token()  # refresh due within the hour (access_ttl 600)
    clock.advance(61)
    assert m.tick().evicted == 0
    assert live_ids(m) == {ms.id}


def test_sessions_with_their_own_hook_or_probe_are_never_evicted(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, _ = manager(store, clock, idp)
    hooked = m.create_session("alice", grant(idp), on_token_update=lambda t: None)
    clock.advance(61)
    m.tick()
    clock.advance(61)
    m.tick()
    assert live_ids(m) == {hooked.id}


def test_create_sessions_stores_them_cold_and_counts_them(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, factory = manager(store, clock, idp)
    seen: list[authpulse.Event] = []
    m.subscribe(seen.append, kinds=[EventKind.SESSION_CREATED])
    ids = m.create_sessions([(f"user{i}", None) for i in range(1500)], labels=["bulk"])
    assert len(ids) == len(set(ids)) == 1500
    assert live_ids(m) == set()
    assert factory.made == []
    assert m.stats().total == 1500
    assert len(seen) == 1500
    rec = m.record(ids[7])
    assert rec.owner == "user7"
    assert rec.status is SessionStatus.ACTIVE
    assert "bulk" in rec.labels
    assert [e.kind for e in m.timeline(ids[7])] == [EventKind.SESSION_CREATED]
    ms = m.get(ids[7], owner="user7")
    assert ms.record == rec
    assert m.stats().total == 1500


def test_create_sessions_schedules_the_first_refresh(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, _ = manager(store, clock, idp)
    seed = SessionManager(authpulse.MemoryStore(), clock=clock, transport=idp.transport)
    s = seed.create_session("x", grant(idp)).session
    s.token()
    ts = s.token_set
    assert ts is not None
    [sid] = m.create_sessions([("alice", ts)])
    [(found, at)] = store.peek_due(clock.now() + 86400, 10)
    assert found == sid
    assert clock.now() < at <= ts.expires_at
    clock.advance(at - clock.now())
    assert m.tick().hydrated == 1  # woken at the earliest its refresh may be due
    refresh_at = m._registry.live[sid].session.refresh_at
    assert refresh_at is not None
    clock.advance(max(refresh_at - clock.now(), 0.0) + 1)
    assert m.tick().refreshed == 1
    stored = store.get_token(sid)
    assert stored is not None
    assert stored.token != ts
    seed.shutdown()


def test_ended_sessions_are_not_woken_and_lookups_of_unknown_ids_fail(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, _ = manager(store, clock, idp)
    [sid] = m.create_sessions([("alice", None)])
    m.close(sid)
    assert live_ids(m) == {sid}
    clock.advance(61)
    assert m.tick().evicted == 1
    assert store.peek_due(clock.now() + 10 * 86400, 10) == []  # nothing more due
    with pytest.raises(SessionNotFoundError):
        m.admin_get("nope")


def test_recover_and_purge_with_the_factory(store: Any, clock: FakeClock, idp: FakeIdP) -> None:
    m, _ = manager(store, clock, idp)
    [sid] = m.create_sessions([("alice", None)])
    m.pause(sid)
    clock.advance(61)
    m.tick()
    assert live_ids(m) == set()
    ms = m.recover(sid)  # no source needed: the factory gives it
    assert ms.status is SessionStatus.ACTIVE
    m.close(sid)
    assert m.purge(0) == 1
    assert live_ids(m) == set()
    assert sid not in m._residency.cold  # type: ignore[union-attr]


def test_a_use_during_eviction_keeps_the_session(clock: FakeClock, idp: FakeIdP) -> None:
    """A request that lands while the eviction writes the schedule wins."""
    holder: list[Any] = []

    class Racing(authpulse.MemoryStore):
        def put_due(self, session_id: str, due_at: float) -> None:
            super().put_due(session_id, due_at)
            ms = holder[0]
            ms.manager._on_request(ms, True, 0.01)  # the request of another thread

    store = Racing(clock=clock)
    m, _ = manager(store, clock, idp)
    ms = m.create_session("alice", grant(idp))
    ms.session.token()
    holder.append(ms)
    clock.advance(61)
    assert m.tick().evicted == 0
    assert m._registry.live[ms.id] is ms


def test_evictions_and_lookups_from_threads_lose_nothing(clock: FakeClock, idp: FakeIdP) -> None:
    store = authpulse.MemoryStore(clock=clock)
    m, _ = manager(store, clock, idp)
    ids = m.create_sessions([(f"u{i}", None) for i in range(50)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def lookups() -> None:
        try:
            while not stop.is_set():
                for sid in ids:
                    assert m.admin_get(sid).id == sid
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=lookups) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(30):
            clock.advance(61)
            assert m.tick().errors == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    res = m._residency
    assert res is not None
    assert not (live_ids(m) & res.cold)
    assert live_ids(m) | res.cold == set(ids)
    assert m.stats().total == 50
    for sid in ids:
        assert m.record(sid).status is SessionStatus.ACTIVE


def test_the_awaited_faces(tmp_path: Path, clock: FakeClock, idp: FakeIdP) -> None:
    async def main() -> tuple[Any, ...]:
        store = SQLiteStore(tmp_path / "a.db", clock=clock)
        m, _ = manager(store, clock, idp)
        ids = await m.acreate_sessions([("alice", None)])
        ms = await m.aget(ids[0], owner="alice")
        clock.advance(61)
        evicted = (await m.atick()).evicted
        live = live_ids(m)
        await m.ashutdown()
        return ms.id, evicted, live

    sid, evicted, live = asyncio.run(main())
    assert (evicted, live) == (1, set())
    assert sid


def test_the_factory_needs_a_store_with_a_schedule(clock: FakeClock, idp: FakeIdP) -> None:
    class Bare:
        pass

    with pytest.raises(ConfigurationError, match="schedule"):
        SessionManager(Bare(), sources=Factory(idp))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="callable"):
        SessionManager(authpulse.MemoryStore(), sources="nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="sources"):
        SessionManager(authpulse.MemoryStore()).create_sessions([("a", None)])


def test_without_a_factory_nothing_is_evicted(clock: FakeClock, idp: FakeIdP) -> None:
    m = SessionManager(authpulse.MemoryStore(), clock=clock, transport=idp.transport)
    ms = m.create_session("alice", grant(idp))
    clock.advance(10 * 86400)
    m.tick()
    assert m._registry.live[ms.id] is ms


def test_cleanup_counts_the_cold_sessions_as_this_managers(
    store: Any, clock: FakeClock, idp: FakeIdP
) -> None:
    m, _ = manager(store, clock, idp)
    SessionManager(store, clock=clock).create_session("bob", grant(idp))  # not ours
    ids = m.create_sessions([("alice", None), ("carol", None)])
    clock.advance(100)
    assert m.cleanup(50) == 2
    assert {m.record(sid).status for sid in ids} == {SessionStatus.TIMEOUT}
    assert [r.status for r in m.list(owner="bob")] == [SessionStatus.ACTIVE]


def test_the_memory_schedule_compacts_replaced_entries() -> None:
    store = authpulse.MemoryStore()
    for i in range(5000):
        store.put_due("a", float(i))
    assert len(store._heap) < 2000
    assert store.pop_due(1e9, 10) == [("a", 4999.0)]

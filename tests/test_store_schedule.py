"""The stores' schedule (an index of sessions by due time) and the batch creation
of sessions, on the memory store, SQLite and a throwaway Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from _redis import RedisServer, redis_server_fixture  # noqa: F401 - registers the fixture
from authpulse import (
    ConfigurationError,
    EventKind,
    MemoryStore,
    SessionKind,
    SessionRecord,
    SessionStatus,
    SQLiteStore,
    TokenSet,
    VersionConflictError,
)
from authpulse._runtime.events import Event, labels_for
from authpulse._stores.redis import RedisStore
from authpulse._stores.schedule import NewSession, ScheduleStore
from authpulse.testing import FakeClock


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    if request.param == "memory":
        made: Any = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "s.db", clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisStore(server.url, namespace="t" + uuid.uuid4().hex[:12], clock=clock)
    try:
        yield made
    finally:
        made.close()


def new(sid: str, at: float = 100.0, *, token: bool = True, due: float | None = 50.0) -> NewSession:
    record = SessionRecord(
        id=sid,
        owner="alice",
        kind=SessionKind.USER,
        status=SessionStatus.ACTIVE,
        created_at=at,
        last_activity_at=at,
    )
    event = Event(
        kind=EventKind.SESSION_CREATED,
        at=at,
        session_id=sid,
        owner="alice",
        labels=labels_for(EventKind.SESSION_CREATED),
        fields={"session_kind": "user"},
    )
    tok = TokenSet(
        access_token=SecretStr(f"at-{sid}"),
        refresh_token=SecretStr(f"rt-{sid}"),
        issued_at=at,
        expires_at=at + 600,
    )
    return NewSession(record, tok if token else None, due, event)


def test_every_store_has_the_schedule(store: Any) -> None:
    assert isinstance(store, ScheduleStore)


def test_due_entries_come_earliest_first_one_per_session(store: Any) -> None:
    store.put_due("a", 5.0)
    store.put_due("b", 3.0)
    store.put_due("a", 7.0)  # replaces a's entry
    store.put_due_many([("c", 100.0), ("d", 4.0)])
    assert store.peek_due(10.0, 10) == [("b", 3.0), ("d", 4.0), ("a", 7.0)]
    assert store.peek_due(10.0, 10) == [("b", 3.0), ("d", 4.0), ("a", 7.0)]  # peek keeps
    assert store.pop_due(10.0, 2) == [("b", 3.0), ("d", 4.0)]
    assert store.pop_due(10.0, 10) == [("a", 7.0)]
    assert store.pop_due(10.0, 10) == []
    assert store.peek_due(1000.0, 10) == [("c", 100.0)]
    assert store.remove_due("c") is True
    assert store.remove_due("c") is False
    assert store.peek_due(1000.0, 10) == []


def test_an_entry_moved_earlier_or_later_is_found_at_its_new_time(store: Any) -> None:
    store.put_due("a", 50.0)
    store.put_due("a", 5.0)
    assert store.peek_due(10.0, 10) == [("a", 5.0)]
    store.put_due("a", 500.0)
    assert store.peek_due(10.0, 10) == []
    assert store.pop_due(500.0, 10) == [("a", 500.0)]


def test_schedule_arguments_are_checked(store: Any) -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        store.peek_due(1.0, 0)
    with pytest.raises(ConfigurationError, match="limit"):
        store.pop_due(1.0, True)
    with pytest.raises(ConfigurationError, match="due time"):
        store.put_due("a", float("nan"))


def test_create_many_stores_records_tokens_events_and_due_times(store: Any) -> None:
    batch = [new("s1"), new("s2", token=False, due=None)]
    assert store.create_many(batch) is None
    assert store.get("s1") == replace(batch[0].record, version=1)
    assert store.get("s2") == replace(batch[1].record, version=1)
    got = store.get_token("s1")
    assert got is not None
    assert got.version == 1
    assert got.token.refresh_token is not None
    assert got.token.refresh_token.get_secret_value() == "rt-s1"
    assert store.get_token("s2") is None
    assert [e.kind for e in store.events("s1")] == [EventKind.SESSION_CREATED]
    assert store.peek_due(1000.0, 10) == [("s1", 50.0)]
    assert [r.id for r in store.query(owner="alice")] == ["s1", "s2"]
    # a record written by the batch takes ordinary optimistic writes afterwards
    store.put(batch[0].record, expected_version=1)


def test_create_many_refuses_a_batch_naming_a_stored_session(store: Any) -> None:
    store.create_many([new("s1")])
    with pytest.raises(VersionConflictError) as err:
        store.create_many([new("s3"), new("s1")])
    assert err.value.session_id == "s1"
    assert store.get("s1").version == 1
    if not isinstance(store, MemoryStore):  # one transaction / checked before writing
        assert store.get("s3") is None


def test_delete_drops_the_schedule_entry(store: Any) -> None:
    store.create_many([new("s1")])
    assert store.delete("s1") is True
    assert store.peek_due(1000.0, 10) == []


def test_async_twins(store: Any) -> None:
    async def main() -> list[Any]:
        await store.acreate_many([new("s1", due=None)])
        await store.aput_due("s1", 9.0)
        await store.aput_due_many([("s2", 8.0)])
        peeked = await store.apeek_due(10.0, 10)
        popped = await store.apop_due(10.0, 1)
        removed = await store.aremove_due("s1")
        await store.aclose()
        return [peeked, popped, removed]

    assert asyncio.run(main()) == [[("s2", 8.0), ("s1", 9.0)], [("s2", 8.0)], True]


def test_an_older_sqlite_file_gains_the_schedule(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path, clock=clock).close()
    with sqlite3.connect(path) as db:  # what a file of schema version 1 looks like
        db.execute("DROP TABLE schedule")
        db.execute("PRAGMA user_version=1")
    db.close()
    with SQLiteStore(path, clock=clock) as store:
        store.put_due("a", 1.0)
        assert store.pop_due(2.0, 5) == [("a", 1.0)]

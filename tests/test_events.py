from __future__ import annotations

import enum
import json
import logging
import os
import pickle
import stat
import sys
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from authpulse import (
    AuthpulseError,
    ConfigurationError,
    Event,
    EventBus,
    EventKind,
    JournalError,
    JsonlJournal,
    UsageError,
    read_journal,
)
from authpulse._runtime.events import Label, labels_for


def ev(kind: EventKind = EventKind.ACTIVITY, at: float = 1000.0, **kw: object) -> Event:
    return Event(kind, at, **kw)  # type: ignore[arg-type]


# -- Event -------------------------------------------------------------------


def test_event_round_trips_through_dict_and_json() -> None:
    e = Event(
        EventKind.REFRESH_FAILED,
        1700000000.5,
        session_id="s-1",
        owner="user-7",
        labels=labels_for(EventKind.REFRESH_FAILED),
        fields={"error_class": "network", "attempt": 3, "retry_in": 2.5, "final": False, "x": None},
    )
    d = e.to_dict()
    assert d == {
        "kind": "refresh_failed",
        "at": 1700000000.5,
        "session_id": "s-1",
        "owner": "user-7",
        "labels": ["session", "error"],
        "fields": {
            "error_class": "network",
            "attempt": 3,
            "retry_in": 2.5,
            "final": False,
            "x": None,
        },
    }
    line = e.to_json()
    assert "\n" not in line
    assert json.loads(line) == d
    assert Event.from_dict(json.loads(line)) == e


def test_event_is_frozen_and_fields_read_only() -> None:
    source = {"n": 1}
    e = ev(fields=source)
    source["n"] = 2
    assert e.fields["n"] == 1  # copied
    with pytest.raises(TypeError):
        e.fields["n"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        e.at = 5.0  # type: ignore[misc]
    assert hash(e) == hash(ev(fields={"n": 1}))


def test_event_normalises_scalar_subclasses() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    e = ev(fields={"c": Color.RED, "lvl": Level.HIGH}, labels=(Label.SESSION,), at=5)
    assert type(e.fields["c"]) is str
    assert type(e.fields["lvl"]) is int
    assert type(e.labels[0]) is str
    assert type(e.at) is float
    assert e.to_json() == (
        '{"kind":"activity","at":5.0,"session_id":null,"owner":null,'
        '"labels":["session"],"fields":{"c":"red","lvl":3}}'
    )


@pytest.mark.parametrize(
    "name",
    [
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "password",
        "secret",
        "authorization",
        "Authorization",
        "Refresh-Token",
        "csrf_token",
        "db_password",
        "api_key",
        "cookie",
    ],
)
def test_secret_field_names_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="looks like a secret") as info:
        ev(fields={name: "value-that-must-not-leak"})
    assert "value-that-must-not-leak" not in str(info.value)


@pytest.mark.parametrize(
    "name", ["token_type", "token_age", "token_generation", "refresh_count", "tokens_issued"]
)
def test_harmless_names_that_mention_tokens_are_allowed(name: str) -> None:
    assert ev(fields={name: 1}).fields[name] == 1


@pytest.mark.parametrize(
    "value",
    [
        {"nested": 1},
        [1, 2],
        (1,),
        b"bytes",
        SecretStr("hunter2-secret"),
        float("nan"),
        float("inf"),
        object(),
    ],
    ids=lambda v: type(v).__name__,
)
def test_non_scalar_values_refused(value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        ev(fields={"detail": value})
    assert "detail" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "activity"},  # a str, not an EventKind
        {"at": float("nan")},
        {"at": True},
        {"at": "1000"},
        {"session_id": 42},
        {"owner": b"me"},
        {"labels": "session"},
        {"labels": ("session", "")},
        {"labels": (1,)},
        {"fields": [("a", 1)]},
        {"fields": {1: "int key"}},
        {"fields": {"": 1}},
    ],
)
def test_malformed_events_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"kind": EventKind.ACTIVITY, "at": 1.0, **kwargs}
    with pytest.raises(ConfigurationError):
        Event(**args)  # type: ignore[arg-type]


def test_labels_for_follows_the_documents() -> None:
    assert labels_for(EventKind.SESSION_CREATED) == ("session", "active")
    assert labels_for(EventKind.ERROR) == ("session", "error")
    assert labels_for(EventKind.REFRESH_FAILED) == ("session", "error")
    assert labels_for(EventKind.CLOSED) == ("session", "completed")
    for kind in EventKind:
        labels = labels_for(kind)
        assert labels[0] == Label.SESSION
        assert labels[1] in {Label.ACTIVE, Label.ERROR, Label.COMPLETED}


def test_event_kinds_are_lowercase_strings() -> None:
    required = {
        "session_created",
        "activity",
        "state_changed",
        "status_changed",
        "token_refreshed",
        "refresh_failed",
        "retry_scheduled",
        "paused",
        "resumed",
        "closed",
        "error",
        "heartbeat",
        "recovered",
        "purged",
    }
    assert required <= {k.value for k in EventKind}
    assert all(k.value == k.name.lower() for k in EventKind)


# -- EventBus ----------------------------------------------------------------


def test_subscribe_and_unsubscribe() -> None:
    bus = EventBus()
    got: list[Event] = []
    unsubscribe = bus.subscribe(got.append)
    assert bus.subscriber_count == 1
    first = ev(at=1.0)
    bus.publish(first)
    unsubscribe()
    unsubscribe()  # idempotent
    assert bus.subscriber_count == 0
    bus.publish(ev(at=2.0))
    assert got == [first]
    assert bus.published == 2


def test_same_callback_twice_is_two_subscriptions() -> None:
    bus = EventBus()
    got: list[Event] = []
    first = bus.subscribe(got.append)
    bus.subscribe(got.append)
    bus.publish(ev())
    assert len(got) == 2
    first()
    bus.publish(ev())
    assert len(got) == 3


def test_kinds_filter() -> None:
    bus = EventBus()
    errors: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(errors.append, kinds=[EventKind.ERROR, EventKind.REFRESH_FAILED])
    bus.subscribe(everything.append)
    for kind in (
        EventKind.ACTIVITY,
        EventKind.ERROR,
        EventKind.HEARTBEAT,
        EventKind.REFRESH_FAILED,
    ):
        bus.publish(ev(kind))
    assert [e.kind for e in errors] == [EventKind.ERROR, EventKind.REFRESH_FAILED]
    assert len(everything) == 4


@pytest.mark.parametrize("kinds", [[], ["activity"]])
def test_bad_kinds_refused(kinds: list[object]) -> None:
    bus = EventBus()
    with pytest.raises(ConfigurationError):
        bus.subscribe(print, kinds=kinds)  # type: ignore[arg-type]
    assert bus.subscriber_count == 0


def test_failing_subscriber_is_isolated_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    before: list[Event] = []
    after: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(before.append)
    bus.subscribe(broken)
    bus.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="authpulse.events"):
        bus.publish(ev(EventKind.HEARTBEAT, session_id="s-1"))
        bus.publish(ev(EventKind.HEARTBEAT, session_id="s-1"))
    assert len(before) == len(after) == 2
    assert bus.errors == 2
    records = [r for r in caplog.records if r.name == "authpulse.events"]
    assert len(records) == 2
    assert "broken" in records[0].getMessage()
    assert "heartbeat" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


def test_subscriber_may_publish_and_unsubscribe_during_delivery() -> None:
    bus = EventBus()
    seen: list[EventKind] = []

    def once(event: Event) -> None:
        seen.append(event.kind)
        unsubscribe()
        if event.kind is EventKind.ACTIVITY:
            bus.publish(ev(EventKind.HEARTBEAT))  # re-entrant publish: no deadlock

    unsubscribe = bus.subscribe(once)
    bus.publish(ev(EventKind.ACTIVITY))
    bus.publish(ev(EventKind.ERROR))
    assert seen == [EventKind.ACTIVITY]
    assert [e.kind for e in bus.recent(10)] == [
        EventKind.ACTIVITY,
        EventKind.HEARTBEAT,
        EventKind.ERROR,
    ]


def test_recent_ring_is_bounded_and_filterable() -> None:
    bus = EventBus(history=5)
    for i in range(12):
        bus.publish(ev(at=float(i), session_id="a" if i % 2 else "b"))
    assert [e.at for e in bus.recent(100)] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [e.at for e in bus.recent(2)] == [10.0, 11.0]
    assert bus.recent(0) == []
    assert [e.at for e in bus.recent(100, session_id="a")] == [7.0, 9.0, 11.0]
    assert [e.at for e in bus.recent(1, session_id="b")] == [10.0]
    assert bus.recent(5, session_id="zzz") == []
    assert bus.published == 12
    with pytest.raises(ConfigurationError):
        bus.recent(-1)


def test_history_zero_keeps_nothing_but_still_delivers() -> None:
    bus = EventBus(history=0)
    got: list[Event] = []
    bus.subscribe(got.append)
    bus.publish(ev())
    assert bus.recent(10) == []
    assert len(got) == 1


def test_publishing_from_many_threads() -> None:
    bus = EventBus(history=100)
    threads_n, per_thread = 8, 500
    lock = threading.Lock()
    counts: dict[str, int] = {}

    def count(event: Event) -> None:
        assert event.session_id is not None
        with lock:
            counts[event.session_id] = counts.get(event.session_id, 0) + 1

    bus.subscribe(count)
    start = threading.Barrier(threads_n)

    def worker(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            bus.publish(ev(at=float(i), session_id=f"s{n}"))

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force frequent thread switches
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert bus.published == threads_n * per_thread
    assert counts == {f"s{n}": per_thread for n in range(threads_n)}
    assert len(bus.recent(1000)) == 100
    assert bus.errors == 0


# -- journal -----------------------------------------------------------------


def sample_events() -> list[Event]:
    return [
        Event(
            EventKind.SESSION_CREATED,
            10.0,
            session_id="s-1",
            owner="u",
            labels=labels_for(EventKind.SESSION_CREATED),
            fields={"kind": "user", "user_agent": "cli/1.0 \u2603"},
        ),
        Event(EventKind.STATE_CHANGED, 11.0, session_id="s-1", fields={"from": "fresh"}),
        Event(EventKind.CLOSED, 12.5, labels=("session", "completed"), fields={"line\nbreak": 1}),
    ]


def test_journal_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = sample_events()
    with JsonlJournal(path) as journal:
        for e in events[:2]:
            journal.write(e)
        journal(events[2])  # usable directly as a subscriber
        assert journal.written == 3
        # line-buffered: already on disk before close
        assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    assert journal.closed
    assert read_journal(path) == events
    assert path.read_bytes().isascii()


def test_journal_appends_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first, second, third = sample_events()
    with JsonlJournal(path) as journal:
        journal.write(first)
    with JsonlJournal(str(path)) as journal:
        journal.write(second)
        journal.write(third)
    assert read_journal(path) == [first, second, third]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_new_journal_is_private(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    JsonlJournal(path).close()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_journal_as_bus_subscriber_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bus = EventBus()
    with JsonlJournal(path) as journal:
        bus.subscribe(journal)

        def worker(n: int) -> None:
            for i in range(200):
                bus.publish(ev(at=float(i), session_id=f"s{n}", fields={"i": i}))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    events = read_journal(path)
    assert len(events) == 800
    for n in range(4):
        mine = [e.fields["i"] for e in events if e.session_id == f"s{n}"]
        assert mine == list(range(200))  # every line intact and in per-thread order
    assert bus.errors == 0


def test_write_after_close_is_a_usage_error(tmp_path: Path) -> None:
    journal = JsonlJournal(tmp_path / "j.jsonl")
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(UsageError):
        journal.write(ev())
    assert "closed" in repr(journal)


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        (b'{"kind":"activity","at":1', "not valid JSON"),  # cut short by a crash
        (b"[1, 2]", "not a JSON object"),
        (b'{"kind":"nonsense","at":1}', "not a valid event"),
        (b'{"kind":"activity","at":1,"fields":{"access_token":"x"}}', "not a valid event"),
        (b'{"kind":"activity","at":1,"fields":{"a":[1]}}', "not a valid event"),
        (b'{"kind":"activity","at":NaN}', "not a valid event"),
        (b'{"kind":"activity","at":1,"extra":2}', "not a valid event"),
        (b'{"kind":"activity","at":"1"}', "not a valid event"),
        (b'{"kind":"activity","at":1,"labels":"session"}', "not a valid event"),
        (b'{"kind":"activity","at":1,"fields":[]}', "not a valid event"),
        (b'{"kind":"activity","at":1,"owner":5}', "not a valid event"),
        (b"\xff\xfe not utf-8", "not valid JSON"),
    ],
)
def test_corrupt_journal_names_the_line(tmp_path: Path, bad_line: bytes, why: str) -> None:
    path = tmp_path / "events.jsonl"
    good = sample_events()[0].to_json().encode()
    path.write_bytes(good + b"\n\n" + good + b"\n" + bad_line + b"\n" + good + b"\n")
    with pytest.raises(JournalError) as info:
        read_journal(path)
    err = info.value
    assert isinstance(err, AuthpulseError)
    assert err.line == 4  # blank line 2 is counted, and skipped
    assert err.path == str(path)
    assert f"line 4: {why}" in str(err)
    assert '"x"' not in str(err)  # content is never quoted


def test_missing_journal_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError) as info:
        read_journal(tmp_path / "missing.jsonl")
    assert info.value.line is None
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_empty_journal_reads_as_no_events(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    assert read_journal(path) == []


def test_journal_error_pickles() -> None:
    err = JournalError("j: line 3: not valid JSON", path="j", line=3)
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert (str(copy), copy.path, copy.line) == (str(err), "j", 3)

"""Stateful (hypothesis) tests of ``SessionManager``.

``ManagerRules`` drives one manager on a fake clock through random creates,
activity, updates, pauses, resumes, closes, cancels, recoveries, purges,
cleanups, token calls and clock jumps with maintenance ticks, keeping a model
of what must exist. Every operation that is illegal in the current state must
raise the documented typed error and leave the store untouched. After every
step the invariants are checked: terminal statuses never change, every status
change left exactly one ``status_changed`` event in the timeline, sessions
disappear only through purge, stats agree with the records, ``ended_at`` is
set iff the status is terminal, activity never goes back, ended sessions'
auth state is CLOSED.

``DeadlineRules`` checks the worker's deadline heap with small timeouts:
after a tick every session is exactly where the idle / max-lifetime / stale
rules say it must be, however the clock jumped since the last tick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from authpulse import (
    AuthpulseError,
    AuthState,
    ClientCredentials,
    ConfigurationError,
    ErrorClass,
    EventKind,
    InvalidStatusChangeError,
    ManagedSession,
    ManagerSettings,
    MemoryStore,
    PermissionDenied,
    SessionClosedError,
    SessionKind,
    SessionManager,
    SessionNotFoundError,
    SessionRecord,
    SessionStatus,
    TickReport,
    TokenEndpointError,
    UsageError,
)
from authpulse._core.model import validate_labels
from authpulse.testing import FakeClock, FakeIdP

ACTIVE, PAUSED, TIMEOUT = SessionStatus.ACTIVE, SessionStatus.PAUSED, SessionStatus.TIMEOUT
OWNERS = ("alice", "bob", "carol")
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
VALID_LABELS = ("vip", "beta", "team:a", "x/y", "session")
MISSING = "no-such-session"

#: the timelines must hold every event of a run (the default store keeps 200 per session)
TIMELINE_LIMIT = 100_000

owners = st.sampled_from(OWNERS)
#: the ``owner=`` argument: None (no owner check) half the time, else any owner
owner_args = st.sampled_from([None, None, None, *OWNERS])
#: clock jumps from seconds to days (10 minutes: inside a 600 s token's refresh window)
seconds_to_days = st.one_of(
    st.floats(0, MINUTE),
    st.floats(MINUTE, 10 * MINUTE),
    st.floats(10 * MINUTE, 2 * HOUR),
    st.floats(2 * HOUR, 3 * DAY),
)
close_statuses = st.sampled_from(
    [s for s in SessionStatus if s.terminal]
    + ["completed", "Failed", "timeout", "cancelled", "paused", "DONE"]
)
close_errors = st.none() | st.sampled_from(
    [
        "upstream gone",
        "",
        "x" * 600,
        RuntimeError("boom with a secret inside"),
        TokenEndpointError("down", error_class=ErrorClass.SERVER),
    ]
)
texts = st.none() | st.sampled_from(["draft", "review", ""]) | st.just("p" * 300)
label_args = (
    st.none()
    | st.lists(st.sampled_from(VALID_LABELS), max_size=3)
    | st.sampled_from([["Not Valid"], "single"])
)
metadata_args = st.none() | st.sampled_from(
    [{"device": "phone"}, {"custom": {"plan": "pro"}}, {"colour": "red"}]
)


def error_text(error: str | BaseException) -> str:
    """The message ``close(error=...)`` stores: never an exception's text unless ours."""
    if isinstance(error, AuthpulseError):
        return f"{type(error).__name__}: {error}"[:500]
    if isinstance(error, BaseException):
        return type(error).__name__
    return error[:500]


@dataclass
class Expected:
    """What the model says one stored session must look like."""

    owner: str
    kind: SessionKind
    status: SessionStatus
    created_at: float
    last_activity_at: float
    ended_at: float | None = None
    paused_reason: str | None = None
    error: str | None = None
    phase: str | None = None
    step: str | None = None
    #: every status change, in order, as (from, to)
    changes: list[tuple[str, str]] = field(default_factory=list)

    def move(
        self,
        to: SessionStatus,
        now: float,
        *,
        error: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.changes.append((self.status.value, to.value))
        self.status = to
        self.ended_at = now if to.terminal else None
        self.paused_reason = reason if to is PAUSED else None
        if error is not None:
            self.error = error
        if to is ACTIVE:
            self.last_activity_at = now

    def fields(self) -> tuple[object, ...]:
        return (
            self.owner,
            self.kind,
            self.status,
            self.created_at,
            self.last_activity_at,
            self.ended_at,
            self.paused_reason,
            self.error,
            self.phase,
            self.step,
        )


def record_fields(r: SessionRecord) -> tuple[object, ...]:
    return (
        r.owner,
        r.kind,
        r.status,
        r.created_at,
        r.last_activity_at,
        r.ended_at,
        r.paused_reason,
        r.error.message if r.error is not None else None,
        r.phase,
        r.step,
    )


def lifecycle_rule(
    e: Expected, now: float, s: ManagerSettings
) -> tuple[SessionStatus, str | None] | None:
    """Where a tick at ``now`` must move the session (status, error message), if anywhere.

    Checked in the documented order: max lifetime, then staleness (both TIMEOUT,
    PAUSED sessions included), then idleness (ACTIVE -> PAUSED). "At least the
    timeout ago" counts.
    """
    if e.status.terminal:
        return None
    if s.max_lifetime is not None and now >= e.created_at + s.max_lifetime:
        return TIMEOUT, "maximum lifetime reached"
    if s.stale_timeout is not None and now >= e.last_activity_at + s.stale_timeout:
        return TIMEOUT, "no activity"
    if (
        s.idle_timeout is not None
        and e.status is ACTIVE
        and now >= e.last_activity_at + s.idle_timeout
    ):
        return PAUSED, None
    return None


def apply_tick(
    model: dict[str, Expected], report: TickReport, now: float, s: ManagerSettings
) -> None:
    """Move the model as a tick at ``now`` must, and check the report's counts."""
    paused = timed_out = 0
    for e in model.values():
        outcome = lifecycle_rule(e, now, s)
        if outcome is None:
            continue
        to, error = outcome
        if to is PAUSED:
            paused += 1
            e.move(PAUSED, now, reason="idle")
        else:
            timed_out += 1
            e.move(TIMEOUT, now, error=error)
    assert report.errors == 0, report
    assert report.at == now
    assert (report.paused, report.timed_out) == (paused, timed_out), report


class _ManagerMachine(RuleBasedStateMachine):
    """Shared set-up, teardown and checks."""

    store: MemoryStore
    manager: SessionManager
    settings_: ManagerSettings

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.idp = FakeIdP(clock=self.clock, access_ttl=600)
        self.model: dict[str, Expected] = {}
        self.handles: dict[str, ManagedSession] = {}
        self.purged_handles: list[ManagedSession] = []
        self.started = False

    def start(self, seed: int, manager_settings: ManagerSettings | None = None) -> None:
        self.store = MemoryStore(timeline_limit=TIMELINE_LIMIT)
        self.manager = SessionManager(
            self.store,
            clock=self.clock,
            transport=self.idp.transport,
            settings=manager_settings,
            seed=seed,
        )
        self.settings_ = self.manager.settings
        self.started = True

    def teardown(self) -> None:
        if self.started:
            self.manager.shutdown()

    def source(self) -> ClientCredentials:
        return ClientCredentials(self.idp.token_url, "client", "secret")

    def records(self) -> list[SessionRecord]:
        return self.manager.list(limit=10**6)

    def tick(self) -> None:
        now = self.clock.now()
        report = self.manager.tick()  # never raises
        apply_tick(self.model, report, now, self.settings_)
        assert self.manager.tick_errors == 0

    def check_records_match_model(self) -> None:
        records = self.records()
        assert [r.id for r in records] == sorted(
            self.model, key=lambda sid: (self.model[sid].created_at, sid)
        )
        for r in records:
            assert record_fields(r) == self.model[r.id].fields(), r.id
            assert (r.ended_at is not None) == r.status.terminal, r


class ManagerRules(_ManagerMachine):
    """Random lifecycle operations against a model of what must exist."""

    sessions: Bundle[str] = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        # what the invariants remember between steps (per live id)
        self.ended: dict[str, SessionStatus] = {}
        self.activity: dict[str, float] = {}

    @initialize(
        target=sessions,
        seed=st.integers(0, 2**32),
        first=st.lists(st.tuples(owners, st.sampled_from(SessionKind)), max_size=3),
    )
    def init_manager(self, seed: int, first: list[tuple[str, SessionKind]]) -> MultipleResults[str]:
        self.start(seed)
        return multiple(*(self.add(owner, kind) for owner, kind in first))

    # -- helpers -----------------------------------------------------------------------

    def snapshot(self) -> tuple[object, ...]:
        records = tuple(self.records())
        timelines = tuple(len(self.manager.timeline(r.id)) for r in records)
        return records, timelines, self.manager.stats()

    def expect_error(self, error: type[AuthpulseError], call: Callable[[], object]) -> None:
        """``call`` must raise exactly ``error`` and change nothing."""
        before = self.snapshot()
        with pytest.raises(AuthpulseError) as info:
            call()
        assert type(info.value) is error, (
            f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
        )
        assert self.snapshot() == before, "a refused operation changed the store"

    def lookup_error(self, sid: str, owner: str | None) -> type[AuthpulseError] | None:
        e = self.model.get(sid)
        if e is None:
            return SessionNotFoundError
        if owner is not None and owner != e.owner:
            return PermissionDenied
        return None

    def add(
        self,
        owner: str,
        kind: SessionKind | str,
        session_id: str | None = None,
        labels: tuple[str, ...] = (),
    ) -> str:
        now = self.clock.now()
        ms = self.manager.create_session(
            owner, self.source(), kind=kind, labels=labels, session_id=session_id
        )
        assert ms.status is ACTIVE
        assert ms.auth_state is AuthState.FRESH
        assert set(ms.record.labels) == {"session", "active", *labels}
        if session_id is not None:
            assert ms.id == session_id
        self.model[ms.id] = Expected(owner, SessionKind(kind), ACTIVE, now, now)
        self.handles[ms.id] = ms
        return ms.id

    # -- create / get ------------------------------------------------------------------

    @rule(
        target=sessions,
        owner=owners,
        kind=st.sampled_from([*SessionKind, "system"]),
        session_id=st.none() | st.sampled_from(["s1", "s2"]),
        labels=st.lists(st.sampled_from(VALID_LABELS), max_size=2).map(tuple),
    )
    def create(
        self,
        owner: str,
        kind: SessionKind | str,
        session_id: str | None,
        labels: tuple[str, ...],
    ) -> str | MultipleResults[str]:
        if session_id is not None and session_id in self.model:  # purged ids may be reused
            self.expect_error(
                ConfigurationError,
                lambda: self.manager.create_session(owner, self.source(), session_id=session_id),
            )
            return multiple()
        return self.add(owner, kind, session_id, labels)

    @rule(
        bad=st.sampled_from(
            [
                {"owner": ""},
                {"owner": "x" * 257},
                {"kind": "robot"},
                {"labels": ["Not Valid"]},
                {"labels": "single"},
                {"metadata": {"colour": "red"}},
                {"session_id": "s" * 129},
            ]
        )
    )
    def create_refused(self, bad: dict[str, object]) -> None:
        kwargs = {"owner": "alice", **bad}
        self.expect_error(
            ConfigurationError,
            lambda: self.manager.create_session(source=self.source(), **kwargs),  # type: ignore[arg-type]
        )

    @rule(sid=sessions, owner=owners)
    def get(self, sid: str, owner: str) -> None:
        error = self.lookup_error(sid, owner)
        if error is not None:
            self.expect_error(error, lambda: self.manager.get(sid, owner=owner))
        else:
            assert self.manager.get(sid, owner=owner) is self.handles[sid]

    @rule(
        op=st.sampled_from(
            [
                *("activity", "update", "pause", "resume", "close", "cancel", "recover"),
                *("get", "admin_get", "record", "timeline", "health", "export"),
                *("list_limit", "list_offset", "list_status", "list_kind", "stats_kind"),
            ]
        )
    )
    def refused_lookup(self, op: str) -> None:
        m = self.manager
        not_found: dict[str, Callable[[], object]] = {
            "activity": lambda: m.record_activity(MISSING),
            "update": lambda: m.update(MISSING, phase="x"),
            "pause": lambda: m.pause(MISSING),
            "resume": lambda: m.resume(MISSING),
            "close": lambda: m.close(MISSING, "FAILED", error="x"),
            "cancel": lambda: m.cancel(MISSING, "x"),
            "recover": lambda: m.recover(MISSING, self.source()),
            "get": lambda: m.get(MISSING, owner="alice"),
            "admin_get": lambda: m.admin_get(MISSING),
            "record": lambda: m.record(MISSING),
            "timeline": lambda: m.timeline(MISSING),
            "health": lambda: m.health(MISSING),
            "export": lambda: m.export(MISSING),
        }
        bad_query: dict[str, Callable[[], object]] = {
            "list_limit": lambda: m.list(limit=-1),
            "list_offset": lambda: m.list(offset=-3),
            "list_status": lambda: m.list(status="sleeping"),
            "list_kind": lambda: m.list(kind="robot"),
            "stats_kind": lambda: m.stats(kind="robot"),
        }
        if op in not_found:
            self.expect_error(SessionNotFoundError, not_found[op])
        else:
            self.expect_error(ConfigurationError, bad_query[op])

    # -- lifecycle ---------------------------------------------------------------------

    @rule(sid=sessions, owner=owner_args)
    def record_activity(self, sid: str, owner: str | None) -> None:
        error = self.lookup_error(sid, owner)
        if error is None and self.model[sid].status.terminal:
            error = SessionClosedError

        def call() -> SessionRecord:
            return self.manager.record_activity(sid, owner=owner)

        if error is not None:
            self.expect_error(error, call)
            return
        now = self.clock.now()
        assert call().last_activity_at == now
        self.model[sid].last_activity_at = now

    @rule(
        sid=sessions,
        owner=owner_args,
        phase=texts,
        step=texts,
        labels=label_args,
        metadata=metadata_args,
    )
    def update(
        self,
        sid: str,
        owner: str | None,
        phase: str | None,
        step: str | None,
        labels: list[str] | str | None,
        metadata: dict[str, object] | None,
    ) -> None:
        error = self.lookup_error(sid, owner)
        if error is None and self.model[sid].status.terminal:
            error = SessionClosedError
        if error is None and (
            any(t is not None and len(t) > 256 for t in (phase, step))
            or isinstance(labels, str)
            or (labels is not None and "Not Valid" in labels)
            or (metadata is not None and "colour" in metadata)
        ):
            error = ConfigurationError

        def call() -> SessionRecord:
            return self.manager.update(
                sid, owner=owner, phase=phase, step=step, labels=labels, metadata=metadata
            )

        if error is not None:
            self.expect_error(error, call)
            return
        now = self.clock.now()
        rec = call()
        e = self.model[sid]
        e.last_activity_at = now
        e.phase = phase if phase is not None else e.phase
        e.step = step if step is not None else e.step
        if labels is not None:
            assert rec.labels == validate_labels(labels)
        if metadata == {"device": "phone"}:
            assert rec.metadata.device == "phone"

    @rule(sid=sessions, owner=owner_args, reason=st.none() | st.just("user asked"))
    def pause(self, sid: str, owner: str | None, reason: str | None) -> None:
        error = self.lookup_error(sid, owner)
        if error is None and self.model[sid].status is not ACTIVE:
            error = InvalidStatusChangeError
        if error is not None:
            self.expect_error(error, lambda: self.manager.pause(sid, reason, owner=owner))
            return
        assert self.manager.pause(sid, reason, owner=owner).status is PAUSED
        self.model[sid].move(PAUSED, self.clock.now(), reason=reason or "paused")

    @rule(sid=sessions, owner=owner_args)
    def resume(self, sid: str, owner: str | None) -> None:
        error = self.lookup_error(sid, owner)
        if error is None and self.model[sid].status is not PAUSED:
            error = InvalidStatusChangeError
        if error is not None:
            self.expect_error(error, lambda: self.manager.resume(sid, owner=owner))
            return
        assert self.manager.resume(sid, owner=owner).status is ACTIVE
        self.model[sid].move(ACTIVE, self.clock.now())

    @rule(sid=sessions, status=close_statuses, error=close_errors, owner=owner_args)
    def close(
        self,
        sid: str,
        status: SessionStatus | str,
        error: str | BaseException | None,
        owner: str | None,
    ) -> None:
        try:
            wanted: SessionStatus | None = SessionStatus(status.upper())
        except ValueError:
            wanted = None
        expected = (
            ConfigurationError
            if wanted is None or not wanted.terminal
            else self.lookup_error(sid, owner)
        )
        if expected is None and self.model[sid].status.terminal:
            expected = InvalidStatusChangeError

        def call() -> SessionRecord:
            return self.manager.close(sid, status, error=error, owner=owner)

        if expected is not None:
            self.expect_error(expected, call)
            return
        assert wanted is not None
        assert call().status is wanted
        self.model[sid].move(
            wanted, self.clock.now(), error=None if error is None else error_text(error)
        )

    @rule(sid=sessions, owner=owner_args, reason=st.none() | st.sampled_from(["", "not needed"]))
    def cancel(self, sid: str, owner: str | None, reason: str | None) -> None:
        error = self.lookup_error(sid, owner)
        if error is None and self.model[sid].status.terminal:
            error = InvalidStatusChangeError
        if error is not None:
            self.expect_error(error, lambda: self.manager.cancel(sid, reason, owner=owner))
            return
        assert self.manager.cancel(sid, reason, owner=owner).status is SessionStatus.CANCELLED
        self.model[sid].move(SessionStatus.CANCELLED, self.clock.now(), error=reason or None)

    @rule(sid=sessions, with_source=st.booleans())
    def recover(self, sid: str, with_source: bool) -> None:
        e = self.model.get(sid)
        source = self.source() if with_source else None
        if e is None or e.status.terminal:
            error = SessionNotFoundError if e is None else SessionClosedError
            self.expect_error(error, lambda: self.manager.recover(sid, source))
            return
        now = self.clock.now()
        assert self.manager.recover(sid, source) is self.handles[sid]  # still loaded
        if e.status is PAUSED:
            e.move(ACTIVE, now)
        e.last_activity_at = now

    # -- retention ---------------------------------------------------------------------

    @rule(older_than=st.sampled_from([-1.0, 0.0]) | st.floats(0, HOUR) | seconds_to_days)
    def purge(self, older_than: float) -> None:
        if older_than < 0:
            self.expect_error(ConfigurationError, lambda: self.manager.purge(older_than))
            return
        now = self.clock.now()
        gone = [
            sid
            for sid, e in self.model.items()
            if e.ended_at is not None and e.ended_at <= now - older_than
        ]
        assert self.manager.purge(older_than) == len(gone)
        for sid in gone:
            del self.model[sid]
            self.ended.pop(sid, None)
            self.activity.pop(sid, None)
            self.purged_handles.append(self.handles.pop(sid))
            with pytest.raises(SessionNotFoundError):
                self.manager.record(sid)

    @rule(max_age=st.sampled_from([0.0, -5.0]) | st.floats(1, 3 * DAY))
    def cleanup(self, max_age: float) -> None:
        if max_age <= 0:
            self.expect_error(ConfigurationError, lambda: self.manager.cleanup(max_age))
            return
        now = self.clock.now()
        old = [
            e
            for e in self.model.values()
            if not e.status.terminal and e.created_at <= now - max_age
        ]
        assert self.manager.cleanup(max_age) == len(old)
        for e in old:
            e.move(TIMEOUT, now)

    # -- tokens and time ---------------------------------------------------------------

    @rule(sid=sessions)
    def token(self, sid: str) -> None:
        ms = self.handles.get(sid)
        if ms is None:  # purged; its handle is somewhere in purged_handles
            ms = next(h for h in reversed(self.purged_handles) if h.id == sid)
        if sid in self.model and not self.model[sid].status.terminal:
            assert ms.session.token()
            ms.session.join_background()  # a stale token refreshes on a thread
        else:
            self.expect_error(UsageError, ms.session.token)

    @rule(seconds=seconds_to_days)
    def advance_and_tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.tick()

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def records_match_model(self) -> None:
        self.check_records_match_model()

    @invariant()
    def terminal_is_forever_and_activity_never_goes_back(self) -> None:
        for r in self.records():
            if r.id in self.ended:
                assert r.status is self.ended[r.id], r
            elif r.status.terminal:
                self.ended[r.id] = r.status
            assert r.last_activity_at >= self.activity.get(r.id, r.last_activity_at), r
            self.activity[r.id] = r.last_activity_at

    @invariant()
    def one_status_changed_event_per_change(self) -> None:
        for sid, e in self.model.items():
            changes = [
                (ev.fields["from"], ev.fields["to"])
                for ev in self.manager.timeline(sid)
                if ev.kind is EventKind.STATUS_CHANGED
            ]
            assert changes == e.changes, sid

    @invariant()
    def stats_agree_with_records(self) -> None:
        records = self.records()
        counts = Counter(r.status.value for r in records)
        stats = self.manager.stats()
        assert stats.total == len(records)
        assert stats.by_status == {s.value: counts[s.value] for s in SessionStatus}
        assert (stats.active, stats.paused) == (counts["ACTIVE"], counts["PAUSED"])
        for owner in OWNERS:
            assert self.manager.stats(owner=owner).total == sum(r.owner == owner for r in records)
        for kind in SessionKind:
            assert self.manager.stats(kind=kind).total == sum(r.kind is kind for r in records)

    @invariant()
    def ended_sessions_are_closed_for_auth(self) -> None:
        for ms in [*self.handles.values(), *self.purged_handles]:
            assert (ms.auth_state is AuthState.CLOSED) == ms.status.terminal, ms
            assert ms.session.closed == ms.status.terminal, ms


ManagerRules.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestManagerRules = ManagerRules.TestCase


class DeadlineRules(_ManagerMachine):
    """The worker's deadline heap: a tick applies every rule that is due, and only those."""

    sessions: Bundle[str] = Bundle("sessions")

    @initialize(
        seed=st.integers(0, 2**32),
        idle=st.sampled_from([None, 30.0, 60.0]),
        lifetime=st.sampled_from([None, 200.0, 500.0]),
        stale=st.sampled_from([None, 100.0, 300.0]),
    )
    def init_manager(
        self, seed: int, idle: float | None, lifetime: float | None, stale: float | None
    ) -> None:
        self.start(
            seed, ManagerSettings(idle_timeout=idle, max_lifetime=lifetime, stale_timeout=stale)
        )

    @rule(target=sessions, owner=owners)
    def create(self, owner: str) -> str:
        now = self.clock.now()
        ms = self.manager.create_session(owner, self.source())
        self.model[ms.id] = Expected(owner, SessionKind.USER, ACTIVE, now, now)
        self.handles[ms.id] = ms
        return ms.id

    @rule(sid=sessions)
    def activity(self, sid: str) -> None:
        e = self.model[sid]
        if e.status.terminal:
            with pytest.raises(SessionClosedError):
                self.manager.record_activity(sid)
            return
        self.manager.record_activity(sid)  # a PAUSED session stays PAUSED
        e.last_activity_at = self.clock.now()

    @rule(sid=sessions)
    def resume_if_paused(self, sid: str) -> None:
        if self.model[sid].status is PAUSED:
            self.manager.resume(sid)
            self.model[sid].move(ACTIVE, self.clock.now())

    @rule(seconds=st.floats(0, 400) | st.sampled_from([30.0, 60.0, 100.0, 200.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)  # no tick: several deadlines may pass before the next

    @rule()
    def tick_now(self) -> None:
        self.tick()
        assert self.manager.due_count() == 0  # everything due was handled or rescheduled

    @invariant()
    def statuses_match_model(self) -> None:
        self.check_records_match_model()


DeadlineRules.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestDeadlineRules = DeadlineRules.TestCase

from __future__ import annotations

import dataclasses
import itertools
import pickle
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from authpulse import (
    AuthEvent,
    AuthpulseError,
    AuthState,
    ConfigurationError,
    Guards,
    IllegalTransition,
    StateMachine,
    Transition,
    UsageError,
)
from authpulse._core.state import STATE_LIMITS, TRANSITIONS, Target, mermaid, next_state

ROOT = Path(__file__).resolve().parent.parent
VALID = Guards(token_valid=True)
INVALID = Guards(token_valid=False)
ALL_PAIRS = [(s, e) for s in AuthState for e in AuthEvent]


def expected(target: Target, guards: Guards) -> AuthState:
    """An independent reading of a table entry: the first true guard, else the last."""
    if isinstance(target, AuthState):
        return target
    for name, state in target:
        if name is None or getattr(guards, name):
            return state
    raise AssertionError("a guarded entry must end with an otherwise choice")


def machine_in(state: AuthState, now: float = 100.0) -> StateMachine:
    return StateMachine(now=now, initial=state)


# -- the table itself ------------------------------------------------------


def test_table_values_are_states_or_well_formed_choices() -> None:
    guard_names = {f.name for f in dataclasses.fields(Guards)}
    for key, target in TRANSITIONS.items():
        if isinstance(target, AuthState):
            continue
        assert len(target) >= 2, key
        *guarded, last = target
        assert last[0] is None, f"{key}: the last choice must be 'otherwise'"
        for name, state in guarded:
            assert name in guard_names, f"{key}: unknown guard {name!r}"
            assert isinstance(state, AuthState)


def test_closed_is_terminal_in_the_table() -> None:
    assert not [key for key in TRANSITIONS if key[0] is AuthState.CLOSED]
    assert [s for s in AuthState if s.terminal] == [AuthState.CLOSED]


def reachable(start: AuthState) -> set[AuthState]:
    """Every state some sequence of events (under any guards) leads to from ``start``."""
    seen = {start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for (src, _), target in TRANSITIONS.items():
            if src is not state:
                continue
            for guards in (VALID, INVALID):
                dst = expected(target, guards)
                if dst not in seen:
                    seen.add(dst)
                    frontier.append(dst)
    return seen


def test_every_live_state_can_close_and_is_reachable_from_fresh() -> None:
    for state in AuthState:
        if not state.terminal:
            assert TRANSITIONS[state, AuthEvent.CLOSE] is AuthState.CLOSED
    assert reachable(AuthState.FRESH) == set(AuthState)


def test_every_live_state_can_reach_fresh_again() -> None:
    # no dead ends: from anywhere but closed, some path leads back to fresh
    for start in AuthState:
        if not start.terminal:
            assert AuthState.FRESH in reachable(start), start
    assert reachable(AuthState.CLOSED) == {AuthState.CLOSED}


def test_single_flight_second_refresh_is_illegal() -> None:
    assert (AuthState.REFRESHING, AuthEvent.REFRESH_STARTED) not in TRANSITIONS
    sm = machine_in(AuthState.FRESH)
    sm.fire(AuthEvent.REFRESH_STARTED, now=101.0)
    with pytest.raises(IllegalTransition):
        sm.fire(AuthEvent.REFRESH_STARTED, now=102.0)
    assert sm.state is AuthState.REFRESHING


def test_limits_only_on_recoverable_states() -> None:
    assert STATE_LIMITS[AuthState.REFRESHING] == 60.0
    for state in STATE_LIMITS:
        assert (state, AuthEvent.RECOVER) in TRANSITIONS


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[AuthState.CLOSED, AuthEvent.LOGIN_COMPLETED] = AuthState.FRESH  # type: ignore[index]
    with pytest.raises(TypeError):
        STATE_LIMITS[AuthState.FRESH] = 1.0  # type: ignore[index]


def test_state_values_match_health_names() -> None:
    # compute_health's state penalties are keyed by these strings
    assert AuthState.DEGRADED.value == "degraded"
    assert AuthState.FALLBACK.value == "fallback"
    assert AuthState.LOGIN_REQUIRED.value == "login_required"
    assert AuthState.CLOSED.value == "closed"
    assert all(s.value == s.name.lower() for s in AuthState)
    assert all(e.value == e.name.lower() for e in AuthEvent)


# -- driving every pair ----------------------------------------------------


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda x: str(x))
@pytest.mark.parametrize("guards", [VALID, INVALID], ids=["valid", "invalid"])
def test_every_pair_follows_the_table(state: AuthState, event: AuthEvent, guards: Guards) -> None:
    sm = machine_in(state, now=100.0)
    if (state, event) in TRANSITIONS:
        want = expected(TRANSITIONS[state, event], guards)
        assert sm.can_fire(event) is True
        t = sm.fire(event, now=130.0, guards=guards)
        assert t == Transition(state, want, event, 130.0)
        assert sm.state is want
        assert sm.history == (t,)
        assert sm.transition_count == 1
        assert sm.entered_at == (130.0 if want is not state else 100.0)
    else:
        assert sm.can_fire(event) is False
        with pytest.raises(IllegalTransition) as info:
            sm.fire(event, now=130.0, guards=guards)
        assert info.value.state is state
        assert info.value.event is event
        assert sm.state is state
        assert sm.entered_at == 100.0
        assert sm.history == ()
        assert sm.transition_count == 0


@pytest.mark.parametrize("event", list(AuthEvent))
def test_closed_stays_closed(event: AuthEvent) -> None:
    sm = machine_in(AuthState.FRESH)
    sm.fire(AuthEvent.CLOSE, now=100.0)
    assert sm.closed
    with pytest.raises(IllegalTransition):
        sm.fire(event, now=200.0, guards=VALID)
    assert sm.state is AuthState.CLOSED
    assert sm.recover(10_000.0, guards=VALID) is None


def test_illegal_transition_error() -> None:
    exc = IllegalTransition(AuthState.CLOSED, AuthEvent.LOGIN_COMPLETED)
    assert isinstance(exc, AuthpulseError)
    assert str(exc) == "event 'login_completed' is not allowed in auth state 'closed'"
    copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    assert (copy.state, copy.event, str(copy)) == (exc.state, exc.event, str(exc))


# -- guards ----------------------------------------------------------------


@pytest.mark.parametrize("event", [AuthEvent.REFRESH_FAILED, AuthEvent.RECOVER])
def test_guard_choices_while_refreshing(event: AuthEvent) -> None:
    assert next_state(AuthState.REFRESHING, event, VALID) is AuthState.DEGRADED
    assert next_state(AuthState.REFRESHING, event, INVALID) is AuthState.EXPIRED


def test_guarded_transition_without_guards_is_a_usage_error() -> None:
    sm = machine_in(AuthState.REFRESHING)
    with pytest.raises(UsageError, match="token_valid"):
        sm.fire(AuthEvent.REFRESH_FAILED, now=101.0)
    assert sm.state is AuthState.REFRESHING
    assert sm.history == ()


def test_unguarded_transition_ignores_guards() -> None:
    assert next_state(AuthState.FRESH, AuthEvent.REFRESH_STARTED) is AuthState.REFRESHING
    assert next_state(AuthState.FRESH, AuthEvent.REFRESH_STARTED, INVALID) is AuthState.REFRESHING


def test_guards_are_required_keyword_booleans() -> None:
    with pytest.raises(TypeError):
        Guards(True)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        VALID.token_valid = False  # type: ignore[misc]


# -- a realistic path --------------------------------------------------------


def test_refresh_failure_degrades_then_expires_then_falls_back_then_recovers() -> None:
    sm = StateMachine(now=0.0)
    steps: list[tuple[AuthEvent, float, Guards | None, AuthState]] = [
        (AuthEvent.REFRESH_STARTED, 3000.0, None, AuthState.REFRESHING),
        (AuthEvent.REFRESH_FAILED, 3002.0, VALID, AuthState.DEGRADED),
        (AuthEvent.REFRESH_STARTED, 3060.0, None, AuthState.REFRESHING),
        (AuthEvent.REFRESH_FAILED, 3061.0, VALID, AuthState.DEGRADED),
        (AuthEvent.TOKEN_EXPIRED, 3600.0, None, AuthState.EXPIRED),
        (AuthEvent.FALLBACK_USED, 3601.0, None, AuthState.FALLBACK),
        (AuthEvent.PRIMARY_RECOVERED, 4000.0, None, AuthState.FRESH),
    ]
    for event, now, guards, want in steps:
        assert sm.fire(event, now=now, guards=guards).to_state is want
    assert [t.event for t in sm.history] == [s[0] for s in steps]
    assert sm.entered_at == 4000.0


def test_transition_record() -> None:
    t = Transition(AuthState.FRESH, AuthState.REFRESHING, AuthEvent.REFRESH_STARTED, 5.0)
    assert t.changed
    assert t.to_dict() == {
        "from": "fresh",
        "to": "refreshing",
        "event": "refresh_started",
        "at": 5.0,
    }
    loop = Transition(AuthState.EXPIRED, AuthState.EXPIRED, AuthEvent.TOKEN_EXPIRED, 6.0)
    assert not loop.changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.at = 7.0  # type: ignore[misc]


# -- stuck states ------------------------------------------------------------


def refreshing_since(entered: float) -> StateMachine:
    sm = StateMachine(now=entered - 1.0)
    sm.fire(AuthEvent.REFRESH_STARTED, now=entered)
    return sm


def test_stuck_only_after_the_limit_is_exceeded() -> None:
    # documented edge: held for exactly the limit is not stuck; a moment longer is
    sm = refreshing_since(1000.0)
    assert sm.stuck_after == 1060.0
    assert not sm.is_stuck(1059.0)
    assert not sm.is_stuck(1060.0)
    assert sm.stuck_for(1060.0) == 0.0
    assert sm.health_state(1060.0) == "refreshing"
    assert sm.is_stuck(1060.001)
    assert sm.stuck_for(1075.0) == 15.0
    assert sm.health_state(1075.0) == "stuck"
    assert sm.held_for(1075.0) == 75.0


def test_states_without_a_limit_are_never_stuck() -> None:
    sm = StateMachine(now=0.0, initial=AuthState.DEGRADED)
    assert sm.stuck_after is None
    assert not sm.is_stuck(1e9)
    assert sm.stuck_for(1e9) == 0.0
    assert sm.recover(1e9, guards=VALID) is None
    assert sm.health_state(1e9) == "degraded"


def test_self_loop_does_not_restart_the_stuck_timer() -> None:
    sm = refreshing_since(1000.0)
    t = sm.fire(AuthEvent.TOKEN_EXPIRED, now=1050.0)
    assert not t.changed
    assert sm.entered_at == 1000.0
    assert sm.is_stuck(1061.0)


def test_clock_stepping_back_counts_as_no_time() -> None:
    sm = refreshing_since(1000.0)
    assert sm.held_for(900.0) == 0.0
    assert not sm.is_stuck(900.0)


@pytest.mark.parametrize(("guards", "want"), [(VALID, "degraded"), (INVALID, "expired")])
def test_recover_from_stuck_refresh(guards: Guards, want: str) -> None:
    sm = refreshing_since(1000.0)
    assert sm.recover(1060.0, guards=guards) is None  # at the limit: not stuck yet
    assert sm.state is AuthState.REFRESHING
    t = sm.recover(1061.0, guards=guards)
    assert t == Transition(AuthState.REFRESHING, AuthState(want), AuthEvent.RECOVER, 1061.0)
    assert sm.state.value == want
    assert not sm.is_stuck(5000.0)
    # the abandoned refresh may still succeed late: that brings the session back
    assert sm.fire(AuthEvent.REFRESH_SUCCEEDED, now=1070.0).to_state is AuthState.FRESH
    # ... but a late failure is not an event of these states
    assert sm.can_fire(AuthEvent.REFRESH_FAILED) is False


def test_recover_needs_guards() -> None:
    sm = refreshing_since(1000.0)
    with pytest.raises(UsageError):
        sm.recover(2000.0)
    assert sm.state is AuthState.REFRESHING


def test_custom_limits() -> None:
    sm = StateMachine(now=0.0, limits={AuthState.REFRESHING: 5})
    sm.fire(AuthEvent.REFRESH_STARTED, now=10.0)
    assert sm.limits == {AuthState.REFRESHING: 5.0}
    assert sm.is_stuck(15.5)
    no_limits = StateMachine(now=0.0, limits={})
    no_limits.fire(AuthEvent.REFRESH_STARTED, now=10.0)
    assert not no_limits.is_stuck(1e9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limits": {AuthState.DEGRADED: 10.0}},  # no RECOVER leaves degraded
        {"limits": {AuthState.REFRESHING: 0.0}},
        {"limits": {AuthState.REFRESHING: float("nan")}},
        {"limits": {"nonsense": 1.0}},
        {"history": 0},
    ],
)
def test_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        StateMachine(now=0.0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [float("nan"), float("inf"), True, "1"])
def test_bad_time(now: object) -> None:
    with pytest.raises(ConfigurationError):
        StateMachine(now=now)  # type: ignore[arg-type]
    sm = StateMachine(now=0.0)
    with pytest.raises(ConfigurationError):
        sm.fire(AuthEvent.REFRESH_STARTED, now=now)  # type: ignore[arg-type]
    assert sm.state is AuthState.FRESH


def test_history_is_bounded_but_count_is_not() -> None:
    sm = StateMachine(now=0.0, history=3)
    fired = []
    for i in range(10):
        fired.append(sm.fire(AuthEvent.REFRESH_STARTED, now=float(2 * i)))
        fired.append(sm.fire(AuthEvent.REFRESH_SUCCEEDED, now=float(2 * i + 1)))
    assert sm.history == tuple(fired[-3:])
    assert sm.transition_count == 20
    assert "fresh" in repr(sm)


# -- documentation -----------------------------------------------------------


def test_mermaid_has_every_edge() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2\n")
    for (state, event), target in TRANSITIONS.items():
        for guards in (VALID, INVALID):
            dst = expected(target, guards)
            edge = next(
                line for line in text.splitlines() if line.startswith(f"    {state} --> {dst} : ")
            )
            assert event.value in edge
    assert "closed --> [*]" in text
    assert "note right of refreshing : stuck after 60 s" in text
    # nothing Mermaid's state-diagram grammar cannot take in a label
    assert ";" not in text
    assert all(line.count(":") <= 1 for line in text.splitlines())


def test_module_main_prints_the_diagram() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "authpulse._core.state"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == mermaid()


def test_committed_docs_match_the_table() -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "gen_state_docs.py"))
    render: Callable[[], str] = script["render"]
    main: Callable[[list[str]], int] = script["main"]
    text = render()
    assert mermaid() in text
    committed = (ROOT / "docs" / "state-machine.md").read_text(encoding="utf-8")
    assert committed == text, "docs/state-machine.md is stale: run scripts/gen_state_docs.py"
    assert main(["--check"]) == 0


# -- property-based: random events and clock jumps -----------------------------


class AuthStateRules(RuleBasedStateMachine):
    HISTORY = 8

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000.0
        self.sm = StateMachine(now=self.now, history=self.HISTORY)
        self.fired: list[Transition] = []
        self.was_closed = False

    def _jump(self, jump: float) -> None:
        self.now += jump

    @rule(
        event=st.sampled_from(AuthEvent),
        valid=st.booleans(),
        jump=st.floats(min_value=-30.0, max_value=200.0, allow_nan=False),
    )
    def fire(self, event: AuthEvent, valid: bool, jump: float) -> None:
        self._jump(jump)
        before, entered, count = self.sm.state, self.sm.entered_at, self.sm.transition_count
        guards = Guards(token_valid=valid)
        if (before, event) in TRANSITIONS:
            t = self.sm.fire(event, now=self.now, guards=guards)
            assert t == Transition(
                before, expected(TRANSITIONS[before, event], guards), event, self.now
            )
            self.fired.append(t)
            assert self.sm.entered_at == (self.now if t.changed else entered)
        else:
            with pytest.raises(IllegalTransition):
                self.sm.fire(event, now=self.now, guards=guards)
            assert (self.sm.state, self.sm.entered_at) == (before, entered)
            assert self.sm.transition_count == count

    @rule(valid=st.booleans(), jump=st.floats(min_value=0.0, max_value=120.0))
    def recover(self, valid: bool, jump: float) -> None:
        self._jump(jump)
        before = self.sm.state
        stuck = self.sm.is_stuck(self.now)
        t = self.sm.recover(self.now, guards=Guards(token_valid=valid))
        if stuck:
            assert t is not None
            assert t.event is AuthEvent.RECOVER
            assert t.from_state is before
            assert not self.sm.is_stuck(self.now)
            self.fired.append(t)
        else:
            assert t is None
            assert self.sm.state is before

    @invariant()
    def state_is_a_member(self) -> None:
        assert isinstance(self.sm.state, AuthState)
        assert self.sm.state in set(AuthState)

    @invariant()
    def closed_stays_closed(self) -> None:
        if self.was_closed:
            assert self.sm.state is AuthState.CLOSED
        self.was_closed = self.sm.closed

    @invariant()
    def every_transition_recorded(self) -> None:
        assert self.sm.transition_count == len(self.fired)
        assert list(self.sm.history) == self.fired[-self.HISTORY :]
        if self.fired:
            assert self.fired[-1].to_state is self.sm.state

    @invariant()
    def history_is_a_chain_of_legal_steps(self) -> None:
        hist = self.sm.history
        for t in hist:
            assert (t.from_state, t.event) in TRANSITIONS
            assert t.to_state in {
                expected(TRANSITIONS[t.from_state, t.event], g) for g in (VALID, INVALID)
            }
        for a, b in itertools.pairwise(hist):
            assert a.to_state is b.from_state

    @invariant()
    def timing_is_consistent(self) -> None:
        assert self.sm.held_for(self.now) >= 0.0
        limit = self.sm.limits.get(self.sm.state)
        if limit is None:
            assert not self.sm.is_stuck(self.now)
        else:
            assert self.sm.is_stuck(self.now) == (self.now - self.sm.entered_at > limit)
            assert self.sm.health_state(self.now) == (
                "stuck" if self.sm.is_stuck(self.now) else self.sm.state.value
            )


AuthStateRules.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestAuthStateRules = AuthStateRules.TestCase

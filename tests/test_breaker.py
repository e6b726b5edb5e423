"""Circuit breaker: the opening rule, the sliding window, half-open probes, threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authpulse import (
    AuthpulseError,
    BreakerPolicy,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    ErrorClass,
    Permit,
)
from authpulse._core.breaker import _BreakerCore, _Outcome, _Window, should_open
from authpulse._runtime.backend import httpx
from authpulse._runtime.breakers import upstream_key
from authpulse.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def breaker(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    return CircuitBreaker("https://api.test:443", BreakerPolicy(**policy), clock)


def record(b: CircuitBreaker, *outcomes: bool | ErrorClass) -> None:
    """``True`` succeeds, ``False`` fails (server error), an ErrorClass fails with it."""
    for outcome in outcomes:
        permit = b.before_call()
        if outcome is True:
            permit.success()
        elif outcome is False:
            permit.failure(ErrorClass.SERVER)
        else:
            permit.failure(outcome)


def trip(b: CircuitBreaker) -> None:
    record(b, *[False] * b.policy.minimum_calls)
    assert b.state is OPEN


# ---------------------------------------------------------------------------- policy


class TestPolicy:
    def test_defaults(self) -> None:
        p = BreakerPolicy()
        assert (p.window, p.failure_rate, p.minimum_calls, p.open_for, p.half_open_probes) == (
            60.0,
            0.5,
            10,
            30.0,
            1,
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"window": 0},
            {"window": -1},
            {"window": float("inf")},
            {"window": float("nan")},
            {"window": True},
            {"open_for": 0},
            {"failure_rate": 0},
            {"failure_rate": 1.01},
            {"failure_rate": float("nan")},
            {"minimum_calls": 0},
            {"minimum_calls": 2.5},
            {"minimum_calls": True},
            {"half_open_probes": 0},
            {"half_open_probes": "1"},
        ],
    )
    def test_invalid(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            BreakerPolicy(**kwargs)

    def test_frozen(self) -> None:
        with pytest.raises(AttributeError):
            BreakerPolicy().window = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------- opening


class TestOpening:
    def test_opens_at_the_rate_once_minimum_calls_are_reached(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=4, failure_rate=0.5)
        record(b, True, False, True)
        assert b.state is CLOSED  # 3 calls: below the minimum
        record(b, False)  # 4 calls, 2 failures: 50 %
        assert b.state is OPEN
        snap = b.snapshot()
        assert (snap.calls, snap.failures, snap.opens) == (4, 2, 1)
        assert snap.failure_share == 0.5
        assert snap.retry_after == 30.0

    def test_does_not_open_below_minimum_calls(self, clock: FakeClock) -> None:
        b = breaker(clock)  # minimum 10
        record(b, *[False] * 9)
        assert b.state is CLOSED
        assert b.snapshot().failures == 9
        record(b, False)
        assert b.state is OPEN

    def test_does_not_open_below_the_rate(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=10, failure_rate=0.5)
        record(b, *[True] * 6, *[False] * 4)
        assert b.state is CLOSED
        record(b, *[True] * 100)
        assert b.state is CLOSED

    def test_open_refuses_with_retry_after(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2, open_for=30)
        trip(b)
        clock.advance(12)
        with pytest.raises(CircuitOpenError) as info:
            b.before_call()
        err = info.value
        assert isinstance(err, AuthpulseError)
        assert err.retry_after == 18.0
        assert err.upstream == "https://api.test:443"
        assert err.error_class is ErrorClass.SERVER
        assert err.state is OPEN
        assert "https://api.test:443" in str(err)
        assert b.snapshot().rejected == 1

    @pytest.mark.parametrize("error_class", [ErrorClass.AUTH, ErrorClass.CLIENT])
    def test_auth_and_client_errors_are_neutral(
        self, clock: FakeClock, error_class: ErrorClass
    ) -> None:
        b = breaker(clock, minimum_calls=2)
        record(b, *[error_class] * 50)
        assert b.state is CLOSED
        snap = b.snapshot()
        assert (snap.calls, snap.failures) == (0, 0)
        # neutral outcomes do not dilute real failures either
        record(b, False, True)
        assert b.state is OPEN

    @pytest.mark.parametrize(
        "error_class", [None, ErrorClass.NETWORK, ErrorClass.SERVER, ErrorClass.THROTTLED]
    )
    def test_transient_errors_count(self, clock: FakeClock, error_class: ErrorClass | None) -> None:
        b = breaker(clock, minimum_calls=2)
        for _ in range(2):
            b.before_call().failure(error_class)
        assert b.state is OPEN

    def test_a_permit_reports_once(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2)
        permit = b.before_call()
        permit.failure()
        permit.failure()
        permit.success()
        assert b.snapshot().calls == 1
        assert "done=True" in repr(permit)

    def test_cancel_records_nothing(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=1)
        b.before_call().cancel()
        b.before_call().neutral()
        assert b.snapshot().calls == 0
        assert b.state is CLOSED

    def test_explicit_now(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2, open_for=10)
        for _ in range(2):
            b.before_call(now=100.0).failure(now=100.0)
        with pytest.raises(CircuitOpenError):
            b.before_call(now=109.0)
        assert b.before_call(now=110.0).probe


@given(
    outcomes=st.lists(st.booleans(), max_size=60),
    minimum=st.integers(1, 20),
    rate=st.floats(0.05, 1.0),
)
def test_opens_exactly_when_the_rule_first_holds(
    outcomes: list[bool], minimum: int, rate: float
) -> None:
    """Without time passing, the breaker opens at the first prefix meeting the rule."""
    b = CircuitBreaker("x", BreakerPolicy(minimum_calls=minimum, failure_rate=rate), FakeClock())
    expected_open_at = next(
        (
            i
            for i in range(1, len(outcomes) + 1)
            if should_open(i, outcomes[:i].count(False), b.policy)
        ),
        None,
    )
    for i, ok in enumerate(outcomes, start=1):
        record(b, ok)
        assert (b.state is OPEN) == (expected_open_at is not None and i >= expected_open_at)
        if b.state is OPEN:
            break


# ---------------------------------------------------------------------------- window


class TestWindow:
    def test_old_failures_are_forgotten(self, clock: FakeClock) -> None:
        b = breaker(clock, window=60, minimum_calls=10)
        record(b, *[False] * 9)
        clock.advance(30)
        assert b.snapshot().failures == 9  # still inside the window
        clock.advance(31)  # 61 s later: gone
        assert b.snapshot().calls == 0
        record(b, False)
        assert b.state is CLOSED  # 1 failure, not 10

    def test_window_slides_bucket_by_bucket(self, clock: FakeClock) -> None:
        b = breaker(clock, window=10, minimum_calls=100)
        for _ in range(10):
            record(b, False)
            clock.advance(1)
        # failures at t = 0..9, now t = 10: the one at t = 0 has left
        assert b.snapshot().failures == 9
        clock.advance(5)
        assert b.snapshot().failures == 4
        clock.advance(100)
        assert b.snapshot().failures == 0

    def test_failures_spread_over_the_window_open_it(self, clock: FakeClock) -> None:
        b = breaker(clock, window=60, minimum_calls=10)
        for _ in range(10):
            record(b, False)
            clock.advance(5)
        assert b.state is OPEN

    def test_long_windows_use_wider_buckets(self) -> None:
        w = _Window(3600.0)
        w.add(0.0, failure=True)
        assert w.totals(3596.0) == (1, 1)
        assert w.totals(3600.0) == (0, 0)

    def test_short_windows(self) -> None:
        w = _Window(0.5)
        w.add(0.0, failure=False)
        assert w.totals(0.4) == (1, 0)
        assert w.totals(0.5) == (0, 0)

    def test_a_clock_going_backwards_counts_in_the_newest_bucket(self) -> None:
        w = _Window(10.0)
        w.add(5.0, failure=True)
        w.add(3.0, failure=True)
        assert w.totals(5.0) == (2, 2)
        assert w.totals(15.5) == (0, 0)


@settings(max_examples=200)
@given(
    window=st.floats(0.5, 5000.0),
    steps=st.lists(st.tuples(st.floats(0.0, 400.0), st.booleans()), max_size=40),
)
def test_window_counts_recent_outcomes(window: float, steps: list[tuple[float, bool]]) -> None:
    """An outcome is counted while younger than window - width, forgotten at window."""
    w = _Window(window)
    width = window / min(max(-(-window // 1), 1), 1000)
    now = 0.0
    seen: list[tuple[float, bool]] = []
    for gap, failure in steps:
        now += gap
        w.add(now, failure=failure)
        seen.append((now, failure))
        calls, failures = w.totals(now)
        must = [f for t, f in seen if now - t < window - width - 1e-9]
        may = [f for t, f in seen if now - t < window + 1e-9]
        assert len(must) <= calls <= len(may)
        assert must.count(True) <= failures <= may.count(True)


# ---------------------------------------------------------------------------- half-open


class TestHalfOpen:
    def test_moves_to_half_open_after_open_for(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2, open_for=30)
        trip(b)
        clock.advance(29.5)
        assert b.state is OPEN
        assert b.snapshot().retry_after == 0.5
        clock.advance(0.5)
        assert b.state is HALF_OPEN

    def test_successful_probe_closes_and_resets_the_window(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2, open_for=30)
        trip(b)
        clock.advance(30)
        permit = b.before_call()
        assert permit.probe
        permit.success()
        assert b.state is CLOSED
        assert b.snapshot().calls == 0
        assert not b.before_call().probe

    def test_failed_probe_reopens_for_a_fresh_period(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2, open_for=30)
        trip(b)
        clock.advance(30)
        b.before_call().failure(ErrorClass.NETWORK)
        assert b.state is OPEN
        with pytest.raises(CircuitOpenError) as info:
            b.before_call()
        assert info.value.retry_after == 30.0
        assert b.snapshot().opens == 2

    def test_probes_beyond_the_limit_are_refused(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2, half_open_probes=2)
        trip(b)
        clock.advance(30)
        first, second = b.before_call(), b.before_call()
        assert first.probe
        assert second.probe
        with pytest.raises(CircuitOpenError) as info:
            b.before_call()
        assert info.value.state is HALF_OPEN
        assert info.value.retry_after == 1.0
        assert "half-open" in str(info.value)
        assert b.snapshot().probes_in_flight == 2
        first.success()
        assert b.state is CLOSED
        second.failure()  # a late probe of the old half-open period is ignored
        assert b.state is CLOSED

    def test_neutral_probe_gives_its_slot_back(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2)
        trip(b)
        clock.advance(30)
        b.before_call().failure(ErrorClass.AUTH)
        assert b.state is HALF_OPEN
        b.before_call().cancel()
        b.before_call().success()
        assert b.state is CLOSED

    def test_stale_permits_from_before_a_change_are_ignored(self, clock: FakeClock) -> None:
        b = breaker(clock, minimum_calls=2)
        old = b.before_call()
        trip(b)
        clock.advance(30)
        old.success()  # admitted while closed; says nothing about the half-open upstream
        assert b.state is HALF_OPEN

    @pytest.mark.parametrize("probes", [1, 3])
    def test_racing_threads_get_exactly_n_probes(self, clock: FakeClock, probes: int) -> None:
        b = breaker(clock, minimum_calls=2, half_open_probes=probes)
        trip(b)
        clock.advance(30)
        threads = 24
        barrier = threading.Barrier(threads)
        permits: list[Permit] = []
        refused: list[CircuitOpenError] = []
        lock = threading.Lock()

        def worker() -> None:
            barrier.wait()
            try:
                p = b.before_call()
            except CircuitOpenError as exc:
                with lock:
                    refused.append(exc)
            else:
                with lock:
                    permits.append(p)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert len(permits) == probes
        assert all(p.probe for p in permits)
        assert len(refused) == threads - probes
        assert b.snapshot().rejected == threads - probes


# ---------------------------------------------------------------------------- concurrency


def test_no_lock_is_held_across_the_call(clock: FakeClock) -> None:
    """A call in progress in one thread does not block before_call in another."""
    b = breaker(clock)
    in_call = threading.Event()
    release = threading.Event()
    other_done = threading.Event()

    def slow_call() -> None:
        permit = b.before_call()
        in_call.set()
        release.wait()
        permit.success()

    def other_call() -> None:
        b.before_call().success()
        b.snapshot()
        assert b.state is CLOSED
        other_done.set()

    slow = threading.Thread(target=slow_call)
    slow.start()
    assert in_call.wait(timeout=10)
    other = threading.Thread(target=other_call)
    other.start()
    # a safety net, not a timing assertion: the other call must finish while the slow one waits
    assert other_done.wait(timeout=10)
    assert slow.is_alive()
    release.set()
    slow.join()
    other.join()
    assert b.snapshot().calls == 2


def test_callbacks_run_outside_the_lock(clock: FakeClock) -> None:
    """A state-change callback may use the breaker (it would deadlock under the lock)."""
    seen: list[tuple[BreakerState, int]] = []

    def hook(name: str, old: BreakerState, new: BreakerState) -> None:
        seen.append((b.state, b.snapshot().opens))

    b = CircuitBreaker("x", BreakerPolicy(minimum_calls=1), clock, on_state_change=hook)
    record(b, False)
    assert seen == [(OPEN, 1)]


# ---------------------------------------------------------------------------- callbacks


def test_state_change_callbacks(clock: FakeClock) -> None:
    changes: list[tuple[str, BreakerState, BreakerState]] = []
    b = CircuitBreaker(
        "idp",
        BreakerPolicy(minimum_calls=2, open_for=10),
        clock,
        on_state_change=lambda *a: changes.append(a),
    )
    trip(b)
    clock.advance(10)
    b.before_call().failure()
    clock.advance(10)
    b.before_call().success()
    assert changes == [
        ("idp", CLOSED, OPEN),
        ("idp", OPEN, HALF_OPEN),
        ("idp", HALF_OPEN, OPEN),
        ("idp", OPEN, HALF_OPEN),
        ("idp", HALF_OPEN, CLOSED),
    ]


def test_a_failing_callback_is_logged_not_raised(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("hook bug")

    b = CircuitBreaker("x", BreakerPolicy(minimum_calls=1), clock, on_state_change=hook)
    record(b, False)
    assert b.state is OPEN
    assert "on_state_change hook failed" in caplog.text


def test_repr_and_defaults() -> None:
    b = CircuitBreaker("x")
    assert b.policy == BreakerPolicy()
    assert repr(b) == "CircuitBreaker('x', state=closed)"
    assert b.state is CLOSED


# ---------------------------------------------------------------------------- registry


class TestRegistry:
    def test_one_breaker_per_origin(self, clock: FakeClock) -> None:
        reg = BreakerRegistry(BreakerPolicy(minimum_calls=1), clock)
        a = reg.get("https://api.example.com:443")
        assert reg.get("https://api.example.com") is a
        assert reg.get(httpx.URL("https://api.example.com/v1/users?q=1")) is a
        assert reg.get("http://api.example.com") is not a
        assert reg.get("idp") is reg.get("idp")
        assert a.name == "https://api.example.com:443"
        assert len(reg) == 3
        record(a, False)
        assert reg.states() == {
            "https://api.example.com:443": OPEN,
            "http://api.example.com:80": CLOSED,
            "idp": CLOSED,
        }
        assert reg.snapshots()["https://api.example.com:443"].failures == 1
        assert "3 breakers" in repr(reg)

    def test_breakers_share_policy_clock_and_hook(self, clock: FakeClock) -> None:
        changes: list[str] = []
        reg = BreakerRegistry(
            BreakerPolicy(minimum_calls=1), clock, on_state_change=lambda n, o, s: changes.append(n)
        )
        record(reg.get("https://a.test"), False)
        record(reg.get("https://b.test"), True)
        assert changes == ["https://a.test:443"]
        assert reg.get("https://a.test").clock is clock

    def test_thread_safe_creation(self, clock: FakeClock) -> None:
        reg = BreakerRegistry(clock=clock)
        barrier = threading.Barrier(16)
        got: list[CircuitBreaker] = []

        def worker() -> None:
            barrier.wait()
            got.append(reg.get("https://api.test"))

        pool = [threading.Thread(target=worker) for _ in range(16)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert len({id(b) for b in got}) == 1

    def test_upstream_key(self) -> None:
        assert upstream_key("https://api.test/x") == "https://api.test:443"
        assert upstream_key("http://[::1]:8080/") == "http://[::1]:8080"
        assert BreakerRegistry.key("https://") == "https://"
        assert BreakerRegistry.key("https://[zz]") == "https://[zz]"


def test_the_state_machine_is_driven_by_now_alone() -> None:
    """The core (``_core/breaker.py``) needs no clock and no lock: given ``now``,
    it admits, records and reports each transition it made."""
    core = _BreakerCore(BreakerPolicy(minimum_calls=2, failure_rate=0.5, open_for=10.0))
    out: list[tuple[BreakerState, BreakerState]] = []
    for t in (1.0, 2.0):
        admitted = core.admit(t, out)
        assert isinstance(admitted, tuple)
        core.record(*admitted, _Outcome.FAILURE, t, out)
    assert out == [(CLOSED, OPEN)]
    assert core.admit(5.0, out) == 7.0  # refused: seconds until a probe
    admitted = core.admit(12.0, out)
    assert isinstance(admitted, tuple)
    assert admitted[1]  # a half-open probe
    core.record(*admitted, _Outcome.SUCCESS, 12.0, out)
    assert out == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert (core.opens, core.rejected) == (1, 1)

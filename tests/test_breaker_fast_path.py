"""The lock-free success path of a circuit breaker keeps every decision of the locked one."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from _support import CountingLock
from authpulse import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpenError, ErrorClass
from authpulse._core.breaker import _MAX_PENDING, _BreakerCore, _Outcome
from authpulse.testing import FakeClock

CLOSED, OPEN = BreakerState.CLOSED, BreakerState.OPEN


def _reference_step(core: _BreakerCore, now: float, outcome: _Outcome) -> None:
    """One call on the core, every step as the locked path takes it."""
    out: list[Any] = []
    admitted = core.admit(now, out)
    if isinstance(admitted, float):
        return
    generation, probe = admitted
    core.record(generation, probe, outcome, now, out)


_OUTCOMES = st.sampled_from(
    [_Outcome.SUCCESS, _Outcome.SUCCESS, _Outcome.SUCCESS, _Outcome.FAILURE, _Outcome.NEUTRAL]
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0, 20), _OUTCOMES), max_size=80),
    minimum=st.integers(1, 8),
    rate=st.floats(0.05, 1.0),
    window=st.floats(1, 30),
)
def test_the_fast_path_decides_as_the_locked_path(
    steps: list[tuple[float, _Outcome]], minimum: int, rate: float, window: float
) -> None:
    policy = BreakerPolicy(window=window, minimum_calls=minimum, failure_rate=rate, open_for=15)
    clock = FakeClock()
    breaker = CircuitBreaker("x", policy, clock)
    reference = _BreakerCore(policy)
    for dt, outcome in steps:
        clock.advance(dt)
        now = clock.monotonic()
        _reference_step(reference, now, outcome)
        try:
            permit = breaker.before_call()
        except CircuitOpenError:
            assert reference.state is not CLOSED
        else:
            if outcome is _Outcome.SUCCESS:
                permit.success()
            elif outcome is _Outcome.FAILURE:
                permit.failure(ErrorClass.SERVER)
            else:
                permit.neutral()
        snap = breaker.snapshot()
        out: list[Any] = []
        reference.tick(now, out)
        assert snap.state is reference.state
        assert (snap.calls, snap.failures) == reference.window.totals(now)
        assert (snap.opens, snap.rejected) == (reference.opens, reference.rejected)


def test_a_closed_breaker_takes_no_lock_on_success() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy(minimum_calls=5), FakeClock())
    lock = breaker._lock = CountingLock()  # type: ignore[assignment]
    for _ in range(100):
        breaker.before_call().success()
    assert lock.taken == 0
    assert breaker.snapshot().calls == 100  # the snapshot settles the queued successes
    assert lock.taken == 1


def test_a_failure_in_the_window_takes_the_locked_path() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy(minimum_calls=3, failure_rate=0.3), FakeClock())
    lock = breaker._lock = CountingLock()  # type: ignore[assignment]
    breaker.before_call().failure(ErrorClass.SERVER)
    taken = lock.taken
    breaker.before_call().success()
    assert lock.taken == taken + 1
    breaker.before_call().success()  # 3 calls, 1 failure: 0.33 >= 0.3 opens
    assert breaker.state is OPEN


def test_the_queue_of_successes_stays_short() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy(), FakeClock())
    for _ in range(3 * _MAX_PENDING):
        breaker.before_call().success()
        assert len(breaker._core.pending) < _MAX_PENDING
    assert breaker.snapshot().calls == 3 * _MAX_PENDING


def test_old_queued_successes_leave_the_window_on_time() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", BreakerPolicy(window=10, minimum_calls=2), clock)
    breaker.before_call().success()
    clock.advance(30)  # the success is queued, then forgotten by the window
    breaker.before_call().failure(ErrorClass.SERVER)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.state) == (1, 1, CLOSED)


def test_a_success_queued_during_a_failure_is_decided_in_its_place() -> None:
    """A success queued while a failure is recorded under the lock is settled after it:
    the breaker opens at that success, as the rule says (2 calls, 1 failure, rate 0.5)."""
    breaker = CircuitBreaker("x", BreakerPolicy(minimum_calls=2, failure_rate=0.5), FakeClock())
    fail = breaker.before_call()
    succeed = breaker.before_call()
    queued = threading.Event()
    done = threading.Event()
    core = breaker._core

    class Spy(deque[tuple[int, float]]):
        def append(self, item: tuple[int, float]) -> None:
            super().append(item)
            queued.set()

    def success() -> None:
        succeed.success()
        done.set()

    with breaker._lock:  # the failure, recorded by hand the way the shell does under the lock
        out: list[Any] = []
        core.settle(out)
        # the success reads an empty window, queues itself, sees the lock held and waits
        core.pending = Spy()
        thread = threading.Thread(target=success)
        thread.start()
        assert queued.wait(timeout=10)  # a safety net, not a timing assertion
        core._record(fail._generation, False, _Outcome.FAILURE, 0.0, out)
        fail._done = True
        assert core.state is CLOSED  # 1 call: under minimum_calls
    thread.join(timeout=10)
    assert done.is_set()
    # settled by the success itself, not by a later step: the next call is refused
    assert not core.pending
    assert core.state is OPEN

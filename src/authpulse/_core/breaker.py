"""Circuit-breaker decisions: the policy, the sliding window and the state machine.

Pure: nothing here reads a clock or takes a lock. Every method is given
``now`` (monotonic seconds) and returns, in ``out``, the state changes it
made; the locked shell with the clock and the callback is
:class:`~authpulse.CircuitBreaker` (``_runtime/breakers.py``).

Failures are counted in time buckets (one per second for windows up to
1000 s) with running totals, so recording an outcome is O(1) amortised
whatever the traffic.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from .errors import ConfigurationError, ErrorClass

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "BreakerTransition",
    "counts_as_failure",
    "should_open",
]

#: most buckets a window is cut into (longer windows get wider buckets)
_MAX_BUCKETS = 1000
#: most successes counted without the lock before they are settled into the window
_MAX_PENDING = 256


class BreakerState(enum.StrEnum):
    """Where a circuit breaker is."""

    CLOSED = "closed"  #: calls flow; outcomes are counted
    OPEN = "open"  #: calls are refused until ``open_for`` has passed
    HALF_OPEN = "half_open"  #: a few probe calls decide between closed and open


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) and value > 0
    ):
        raise ConfigurationError(f"BreakerPolicy.{name} must be a positive number")


def _count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"BreakerPolicy.{name} must be an integer of at least 1")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a circuit breaker opens and how it recovers.

    The breaker opens when, within the last ``window`` seconds, at least
    ``minimum_calls`` calls were counted and the share of failures among
    them is at least ``failure_rate``. It stays open ``open_for`` seconds,
    then lets ``half_open_probes`` calls through: the first probe to
    succeed closes it, the first to fail opens it again.
    """

    window: float = 60.0
    failure_rate: float = 0.5
    minimum_calls: int = 10
    open_for: float = 30.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        _positive("window", self.window)
        _positive("open_for", self.open_for)
        rate = self.failure_rate
        if isinstance(rate, bool) or not (
            isinstance(rate, int | float) and math.isfinite(rate) and 0 < rate <= 1
        ):
            raise ConfigurationError("BreakerPolicy.failure_rate must be in (0, 1]")
        _count("minimum_calls", self.minimum_calls)
        _count("half_open_probes", self.half_open_probes)


class _Window:
    """Calls and failures over a sliding time window, in ring-buffer buckets.

    Pure: every method takes ``now``. An outcome recorded at ``t`` is
    counted until at least ``t + window - width`` and forgotten by
    ``t + window`` (``width`` is one bucket, 1 s for windows up to 1000 s).
    """

    __slots__ = ("_calls", "_failures", "_head", "_n", "_width", "calls", "failures")

    def __init__(self, window: float) -> None:
        self._n = min(max(math.ceil(window), 1), _MAX_BUCKETS)
        self._width = window / self._n
        self._calls = [0] * self._n
        self._failures = [0] * self._n
        self._head: int | None = None  # absolute number of the newest bucket
        self.calls = 0
        self.failures = 0

    def _advance(self, now: float) -> int:
        bucket = math.floor(now / self._width)
        head = self._head
        if head is None or bucket - head >= self._n:
            if self.calls:
                self.reset()
            head = bucket
        elif bucket > head:
            for b in range(head + 1, bucket + 1):
                i = b % self._n
                self.calls -= self._calls[i]
                self.failures -= self._failures[i]
                self._calls[i] = self._failures[i] = 0
            head = bucket
        # (a clock that went backwards counts into the newest bucket)
        self._head = head
        return head % self._n

    def add(self, now: float, *, failure: bool) -> None:
        i = self._advance(now)
        self._calls[i] += 1
        self.calls += 1
        if failure:
            self._failures[i] += 1
            self.failures += 1

    def totals(self, now: float) -> tuple[int, int]:
        self._advance(now)
        return self.calls, self.failures

    def reset(self) -> None:
        self._calls = [0] * self._n
        self._failures = [0] * self._n
        self.calls = self.failures = 0


class _Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # the upstream answered, but says nothing about its health
    CANCEL = "cancel"  # the call did not happen or its result is unknown


BreakerTransition = tuple[BreakerState, BreakerState]


def counts_as_failure(error_class: ErrorClass | None) -> bool:
    """Whether an outcome of this class counts against the upstream.

    Auth and client errors (401, 403, other 4xx) are the caller's problem,
    not the upstream's: they are neutral.
    """
    return error_class not in (ErrorClass.AUTH, ErrorClass.CLIENT)


def should_open(calls: int, failures: int, policy: BreakerPolicy) -> bool:
    """The opening rule: enough calls, and a failure share at or over the rate."""
    return calls >= policy.minimum_calls and failures >= policy.failure_rate * calls


class _BreakerCore:
    """The breaker's state machine. Pure: no clock, no lock, no callbacks.

    Every method but :meth:`admit_closed` and :meth:`record_fast` runs
    under the shell's lock. Those two are the success path of a CLOSED
    breaker whose window holds no failure: admitting changes nothing, and
    a success cannot open the breaker (with no failure the share is 0), so
    it is only queued, with its generation and time, in ``pending`` (a
    deque: appends are atomic). Every locked method first settles the
    queue into the window in order (:meth:`settle`), so the window, and
    each opening decision, are exactly those of recording every outcome
    under the lock. A success queued while a failure was being recorded
    is settled at once by the shell (:attr:`unsettled`).
    """

    __slots__ = (
        "generation",
        "opened_at",
        "opens",
        "pending",
        "policy",
        "probes",
        "rejected",
        "state",
        "window",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = BreakerState.CLOSED
        self.window = _Window(policy.window)
        self.opened_at = 0.0
        self.probes = 0  # half-open probes handed out and not yet answered
        self.generation = 0  # bumped on every state change; stale permits are ignored
        self.opens = 0
        self.rejected = 0
        self.pending: deque[tuple[int, float]] = deque()

    def admit_closed(self) -> int | None:
        """The generation of a call admitted by a CLOSED breaker, which counts
        and changes nothing (no lock needed); ``None``: ask :meth:`admit`."""
        # the generation is read first: if the state changes in between, the
        # permit carries the old generation and its outcome is ignored, as for
        # any call admitted just before a state change
        generation = self.generation
        return generation if self.state is BreakerState.CLOSED else None

    def record_fast(self, generation: int, probe: bool, now: float) -> bool:
        """Queue a success that cannot change the state (no lock needed);
        ``False``: record it with :meth:`record`. After ``True`` the shell
        settles under the lock if :attr:`unsettled`."""
        if (
            probe
            or generation != self.generation
            or self.state is not BreakerState.CLOSED
            or self.window.failures
        ):
            return False
        self.pending.append((generation, now))
        return True

    @property
    def unsettled(self) -> bool:
        """Whether the queued successes must be settled now: a failure is in the
        window (one may have been recorded while a success was queued), or the
        queue is long."""
        return bool(self.window.failures) or len(self.pending) >= _MAX_PENDING

    def settle(self, out: list[BreakerTransition]) -> None:
        """Record the queued successes, in order, as :meth:`record` would have."""
        pending, window = self.pending, self.window
        while pending:
            generation, t = pending.popleft()
            if generation == self.generation and not window.failures:
                window.add(t, failure=False)  # no failure: the share is 0, nothing opens
            else:
                self._record(generation, False, _Outcome.SUCCESS, t, out)

    def _move(self, new: BreakerState, now: float, out: list[BreakerTransition]) -> None:
        out.append((self.state, new))
        self.state = new
        self.generation += 1
        self.probes = 0
        if new is BreakerState.OPEN:
            self.opened_at = now
            self.opens += 1
        elif new is BreakerState.CLOSED:
            self.window.reset()

    def tick(self, now: float, out: list[BreakerTransition]) -> None:
        """Apply the passage of time: open -> half-open after ``open_for``."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.policy.open_for:
            self._move(BreakerState.HALF_OPEN, now, out)

    def retry_after(self, now: float) -> float:
        if self.state is BreakerState.OPEN:
            return float(max(self.opened_at + self.policy.open_for - now, 0.0))
        if self.state is BreakerState.HALF_OPEN:
            return float(min(1.0, self.policy.open_for))  # the probes' answer is not known yet
        return 0.0

    def admit(self, now: float, out: list[BreakerTransition]) -> tuple[int, bool] | float:
        """``(generation, is_probe)`` for an admitted call, else seconds to wait."""
        self.settle(out)
        self.tick(now, out)
        if self.state is BreakerState.CLOSED:
            return (self.generation, False)
        if self.state is BreakerState.HALF_OPEN and self.probes < self.policy.half_open_probes:
            self.probes += 1
            return (self.generation, True)
        self.rejected += 1
        return self.retry_after(now)

    def record(
        self,
        generation: int,
        probe: bool,
        outcome: _Outcome,
        now: float,
        out: list[BreakerTransition],
    ) -> None:
        """Record the outcome of a call admitted in ``generation``."""
        self.settle(out)
        self._record(generation, probe, outcome, now, out)

    def totals(self, now: float, out: list[BreakerTransition]) -> tuple[int, int]:
        """Calls and failures in the window at ``now``, the queued successes included."""
        self.settle(out)
        return self.window.totals(now)

    def _record(
        self,
        generation: int,
        probe: bool,
        outcome: _Outcome,
        now: float,
        out: list[BreakerTransition],
    ) -> None:
        if generation != self.generation:
            return  # admitted before a state change: it tells nothing about the new state
        if probe:  # half-open (a probe's generation ends when the state changes)
            if outcome is _Outcome.SUCCESS:
                self._move(BreakerState.CLOSED, now, out)
            elif outcome is _Outcome.FAILURE:
                self._move(BreakerState.OPEN, now, out)
            else:
                self.probes -= 1  # the slot goes to the next caller
            return
        if outcome in (_Outcome.NEUTRAL, _Outcome.CANCEL):
            return
        self.window.add(now, failure=outcome is _Outcome.FAILURE)
        if should_open(self.window.calls, self.window.failures, self.policy):
            self._move(BreakerState.OPEN, now, out)


# The public names defined here show the module they are imported from.
for _public in (
    BreakerPolicy,
    BreakerState,
):
    _public.__module__ = "authpulse"
del _public

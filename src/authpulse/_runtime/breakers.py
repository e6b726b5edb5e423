"""Circuit breakers: a pure core (counts and transitions) and a thin, locked shell.

The core, :class:`_BreakerCore`, never reads a clock and never takes a
lock: every method is given ``now`` (monotonic seconds) and returns the
state changes it made. :class:`CircuitBreaker` adds the injected clock, a
lock around the core (held only for the bookkeeping, never across the
protected call) and the state-change callback, run after the lock is
released.

Failures are counted in time buckets (one per second for windows up to
1000 s) with running totals, so recording an outcome is O(1) amortised
whatever the traffic.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._core.errors import AuthpulseError, ConfigurationError, ErrorClass
from .backend import INVALID_URL_ERRORS, as_url, httpx, origin_of
from .clock import Clock, SystemClock

__all__ = [
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Permit",
    "StateChangeHook",
    "upstream_key",
]

_log = logging.getLogger("authpulse.breaker")

#: most buckets a window is cut into (longer windows get wider buckets)
_MAX_BUCKETS = 1000


class BreakerState(enum.StrEnum):
    """Where a circuit breaker is."""

    CLOSED = "closed"  #: calls flow; outcomes are counted
    OPEN = "open"  #: calls are refused until ``open_for`` has passed
    HALF_OPEN = "half_open"  #: a few probe calls decide between closed and open


#: ``on_state_change(name, old, new)``
StateChangeHook = Callable[[str, BreakerState, BreakerState], None]


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


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A consistent copy of a breaker's statistics at one instant.

    ``calls`` and ``failures`` cover the current window (neutral outcomes
    such as 401 or 404 are in neither); ``opens`` and ``rejected`` count
    since the breaker was created; ``retry_after`` is how long an open
    breaker keeps refusing (0 otherwise).
    """

    name: str
    state: BreakerState
    calls: int
    failures: int
    failure_share: float
    opens: int
    rejected: int
    probes_in_flight: int
    retry_after: float


class CircuitOpenError(AuthpulseError):
    """A call was refused because the upstream's circuit breaker is open.

    ``retry_after`` is the number of seconds until the breaker lets a probe
    through (an estimate while half-open probes are in flight); ``upstream``
    names the breaker (an origin such as ``https://api.example.com:443``).
    """

    error_class = ErrorClass.SERVER

    def __init__(self, upstream: str, retry_after: float, state: BreakerState) -> None:
        self.upstream = upstream
        self.retry_after = retry_after
        self.state = state
        if state is BreakerState.OPEN:
            text = f"circuit breaker for {upstream} is open; retry in {retry_after:.1f} s"
        else:
            text = f"circuit breaker for {upstream} is half-open and its probes are in flight"
        super().__init__(text)


# ---------------------------------------------------------------------------- pure core


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


Transition = tuple[BreakerState, BreakerState]


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
    """The breaker's state machine. Pure: no clock, no lock, no callbacks."""

    __slots__ = (
        "generation",
        "opened_at",
        "opens",
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

    def _move(self, new: BreakerState, now: float, out: list[Transition]) -> None:
        out.append((self.state, new))
        self.state = new
        self.generation += 1
        self.probes = 0
        if new is BreakerState.OPEN:
            self.opened_at = now
            self.opens += 1
        elif new is BreakerState.CLOSED:
            self.window.reset()

    def tick(self, now: float, out: list[Transition]) -> None:
        """Apply the passage of time: open -> half-open after ``open_for``."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.policy.open_for:
            self._move(BreakerState.HALF_OPEN, now, out)

    def retry_after(self, now: float) -> float:
        if self.state is BreakerState.OPEN:
            return float(max(self.opened_at + self.policy.open_for - now, 0.0))
        if self.state is BreakerState.HALF_OPEN:
            return float(min(1.0, self.policy.open_for))  # the probes' answer is not known yet
        return 0.0

    def admit(self, now: float, out: list[Transition]) -> tuple[int, bool] | float:
        """``(generation, is_probe)`` for an admitted call, else seconds to wait."""
        self.tick(now, out)
        if self.state is BreakerState.CLOSED:
            return (self.generation, False)
        if self.state is BreakerState.HALF_OPEN and self.probes < self.policy.half_open_probes:
            self.probes += 1
            return (self.generation, True)
        self.rejected += 1
        return self.retry_after(now)

    def record(
        self, generation: int, probe: bool, outcome: _Outcome, now: float, out: list[Transition]
    ) -> None:
        """Record the outcome of a call admitted in ``generation``."""
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


# ---------------------------------------------------------------------------- shell


class Permit:
    """Leave to make one call through a breaker; report how it went, once.

    Call :meth:`success`, :meth:`failure` (auth and client error classes
    are recorded as neutral), :meth:`neutral` or :meth:`cancel` (the call
    did not happen). Later reports are ignored.
    """

    __slots__ = ("_breaker", "_done", "_generation", "probe")

    def __init__(self, breaker: CircuitBreaker, generation: int, probe: bool) -> None:
        self._breaker = breaker
        self._generation = generation
        self._done = False
        #: True for a half-open probe
        self.probe = probe

    def __repr__(self) -> str:
        return f"Permit(breaker={self._breaker.name!r}, probe={self.probe}, done={self._done})"

    def _report(self, outcome: _Outcome, now: float | None) -> None:
        if self._done:
            return
        self._done = True
        self._breaker._record(self._generation, self.probe, outcome, now)

    def success(self, now: float | None = None) -> None:
        """The call succeeded."""
        self._report(_Outcome.SUCCESS, now)

    def failure(self, error_class: ErrorClass | None = None, now: float | None = None) -> None:
        """The call failed; ``AUTH`` and ``CLIENT`` failures are recorded as neutral."""
        self._report(_Outcome.FAILURE if counts_as_failure(error_class) else _Outcome.NEUTRAL, now)

    def neutral(self, now: float | None = None) -> None:
        """The upstream answered, but the answer says nothing about its health."""
        self._report(_Outcome.NEUTRAL, now)

    def cancel(self, now: float | None = None) -> None:
        """The call did not happen (or its result is unknown): give the permit back."""
        self._report(_Outcome.CANCEL, now)


class CircuitBreaker:
    """A circuit breaker for one upstream (see :class:`BreakerPolicy`).

    Thread-safe; usable from threads and coroutines alike (the lock is held
    for a few counter updates, never across the protected call).
    ``on_state_change(name, old, new)`` runs after each transition, outside
    the lock; an exception it raises is logged, not propagated.
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        clock: Clock | None = None,
        *,
        on_state_change: StateChangeHook | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self.clock: Clock = clock or SystemClock()
        self.on_state_change = on_state_change
        self._core = _BreakerCore(self.policy)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._core.state.value})"

    def _notify(self, transitions: list[Transition]) -> None:
        for old, new in transitions:
            _log.log(
                logging.WARNING if new is BreakerState.OPEN else logging.INFO,
                "circuit breaker %s: %s -> %s",
                self.name,
                old.value,
                new.value,
                extra={
                    "authpulse_event": "breaker_state",
                    "authpulse_upstream": self.name,
                    "authpulse_from": old.value,
                    "authpulse_to": new.value,
                },
            )
        hook = self.on_state_change
        if hook is None:
            return
        for old, new in transitions:
            try:
                hook(self.name, old, new)
            except Exception:
                _log.exception(
                    "on_state_change hook failed for breaker %s",
                    self.name,
                    extra={
                        "authpulse_event": "hook_failed",
                        "authpulse_hook": "on_state_change",
                        "authpulse_upstream": self.name,
                    },
                )

    def before_call(self, now: float | None = None) -> Permit:
        """A permit for one call, or :class:`CircuitOpenError` if the breaker refuses."""
        out: list[Transition] = []
        with self._lock:
            t = self.clock.monotonic() if now is None else now
            admitted = self._core.admit(t, out)
            state = self._core.state
        self._notify(out)
        if isinstance(admitted, float):
            raise CircuitOpenError(self.name, admitted, state)
        generation, probe = admitted
        return Permit(self, generation, probe)

    def _record(self, generation: int, probe: bool, outcome: _Outcome, now: float | None) -> None:
        out: list[Transition] = []
        with self._lock:
            t = self.clock.monotonic() if now is None else now
            self._core.record(generation, probe, outcome, t, out)
        self._notify(out)

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose time is up reads half-open)."""
        out: list[Transition] = []
        with self._lock:
            self._core.tick(self.clock.monotonic(), out)
            state = self._core.state
        self._notify(out)
        return state

    def snapshot(self) -> BreakerSnapshot:
        """The breaker's statistics, taken under the lock."""
        out: list[Transition] = []
        with self._lock:
            now = self.clock.monotonic()
            core = self._core
            core.tick(now, out)
            calls, failures = core.window.totals(now)
            snap = BreakerSnapshot(
                name=self.name,
                state=core.state,
                calls=calls,
                failures=failures,
                failure_share=failures / calls if calls else 0.0,
                opens=core.opens,
                rejected=core.rejected,
                probes_in_flight=core.probes,
                retry_after=core.retry_after(now) if core.state is BreakerState.OPEN else 0.0,
            )
        self._notify(out)
        return snap


def upstream_key(url: httpx.URL | str) -> str:
    """The breaker/budget key of a URL: its origin, port explicit (``https://h:443``)."""
    scheme, host, port = origin_of(url)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


_V = TypeVar("_V")


class _UpstreamRegistry(Generic[_V]):
    """One value per upstream, created on first use by ``make(key)``. Thread-safe.

    Keys are origins (``https://api.example.com:443``); a URL, or an origin
    without its default port, finds the same value. Any other string
    (``"idp"``) is used as given. The base of :class:`BreakerRegistry` and
    :class:`~authpulse.BudgetRegistry`.
    """

    def __init__(self) -> None:
        self._items: dict[str, _V] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def _make(self, key: str) -> _V:  # pragma: no cover - every registry overrides
        raise NotImplementedError

    @staticmethod
    def key(upstream: httpx.URL | str) -> str:
        """The registry key of ``upstream`` (see the class documentation)."""
        if isinstance(upstream, str) and "://" not in upstream:
            return upstream
        try:
            url = as_url(upstream)
        except INVALID_URL_ERRORS:
            return str(upstream)
        return upstream_key(url) if url.host else str(upstream)

    def get(self, upstream: httpx.URL | str) -> _V:
        """The value of ``upstream``, created on demand."""
        value = self._items.get(upstream) if isinstance(upstream, str) else None
        if value is not None:  # already a key: skip parsing it again
            return value
        key = self.key(upstream)
        value = self._items.get(key)
        if value is not None:
            return value
        with self._lock:
            value = self._items.get(key)
            if value is None:
                value = self._items[key] = self._make(key)
        return value

    def _snapshot(self) -> dict[str, _V]:
        with self._lock:
            return dict(self._items)


class BreakerRegistry(_UpstreamRegistry[CircuitBreaker]):
    """One :class:`CircuitBreaker` per upstream, created on first use. Thread-safe.

    Keys are origins (``https://api.example.com:443``); a URL, or an origin
    without its default port, finds the same breaker. Any other string
    (``"idp"``) is used as given.
    """

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        clock: Clock | None = None,
        *,
        on_state_change: StateChangeHook | None = None,
    ) -> None:
        super().__init__()
        self.policy = policy or BreakerPolicy()
        self.clock: Clock = clock or SystemClock()
        self.on_state_change = on_state_change

    def __repr__(self) -> str:
        return f"BreakerRegistry({len(self)} breakers)"

    def _make(self, key: str) -> CircuitBreaker:
        return CircuitBreaker(key, self.policy, self.clock, on_state_change=self.on_state_change)

    def _all(self) -> list[CircuitBreaker]:
        return list(self._snapshot().values())

    def states(self) -> dict[str, BreakerState]:
        """The state of every breaker, by key."""
        return {b.name: b.state for b in self._all()}

    def snapshots(self) -> dict[str, BreakerSnapshot]:
        """A snapshot of every breaker, by key."""
        return {b.name: b.snapshot() for b in self._all()}


# The public names defined here show the module they are imported from.
for _public in (
    BreakerPolicy,
    BreakerRegistry,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Permit,
):
    _public.__module__ = "authpulse"
del _public

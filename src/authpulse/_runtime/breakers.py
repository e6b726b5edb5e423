"""Circuit breakers: a thin, locked shell around the pure state machine.

The decisions, :class:`~authpulse._core.breaker._BreakerCore` (``_core/breaker.py``),
never read a clock and never take a lock: every method is given ``now``
(monotonic seconds) and returns the state changes it made.
:class:`CircuitBreaker` adds the injected clock, a lock around the core
(held only for the bookkeeping, never across the protected call) and the
state-change callback, run after the lock is released. The success path of
a CLOSED breaker with no failure in its window takes no lock (the core says
when, and settles what it queued under the lock before any other step). :class:`BreakerRegistry`
holds one breaker per upstream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .._core.breaker import (
    BreakerPolicy,
    BreakerState,
    _BreakerCore,
    _Outcome,
    counts_as_failure,
)
from .._core.breaker import BreakerTransition as Transition
from .._core.errors import AuthpulseError, ErrorClass
from .clock import Clock, SystemClock
from .upstreams import _UpstreamRegistry, upstream_key

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

StateChangeHook = Callable[[str, BreakerState, BreakerState], None]


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
        if not self._done:  # _report() inlined: the success path of every request
            self._done = True
            self._breaker._record(self._generation, self.probe, _Outcome.SUCCESS, now)

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
        generation = self._core.admit_closed()
        if generation is not None:  # CLOSED: nothing to count, no lock
            return Permit(self, generation, False)
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
        core = self._core
        if outcome is _Outcome.SUCCESS:
            t = self.clock.monotonic() if now is None else now
            if core.record_fast(generation, probe, t):  # queued, no lock
                # a failure recorded meanwhile (the lock held, or one in the window):
                # settle now, so that the opening rule sees this success in its place
                if not (self._lock.locked() or core.unsettled):
                    return
                settled: list[Transition] = []
                with self._lock:
                    core.settle(settled)
                self._notify(settled)
                return
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
            self._core.settle(out)
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
            calls, failures = core.totals(now, out)
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
    BreakerRegistry,
    BreakerSnapshot,
    CircuitBreaker,
    CircuitOpenError,
    Permit,
):
    _public.__module__ = "authpulse"
del _public

"""The session auth-state machine: a transition table, guards, and a clock-free driver.

The machine is data. :data:`TRANSITIONS` maps ``(state, event)`` to the next
state; a pair that is not in the table is illegal and raises
:class:`IllegalTransition`. Where the next state depends on a fact about the
session (is the current token still valid?), the table maps to a tuple of
``(guard, state)`` choices instead of a state: the first choice whose guard
is true in the :class:`Guards` passed to :meth:`StateMachine.fire` wins, and
the last choice has the guard ``None``, meaning "otherwise". ``CLOSED`` is
terminal: no event leaves it.

Time is always given, never read: every method that needs the time takes
``now`` (seconds, from whichever clock the shell uses for this machine). A
state held *longer* than its limit in :data:`STATE_LIMITS` is "stuck";
:meth:`StateMachine.recover` fires :attr:`AuthEvent.RECOVER` to leave it.

``docs/state-machine.md`` is generated from this table by
``scripts/gen_state_docs.py``; ``python -m authpulse._core.state`` prints the
Mermaid diagram.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias

from .errors import AuthpulseError, ConfigurationError, LoginRequiredError, UsageError
from .signals import SessionEvent, SessionEventKind

__all__ = [
    "STATE_LIMITS",
    "TRANSITIONS",
    "AuthEvent",
    "AuthState",
    "Choice",
    "Guards",
    "IllegalTransition",
    "StateMachine",
    "Target",
    "Transition",
    "auth_event_for",
    "mermaid",
    "next_state",
]


class AuthState(StrEnum):
    """Where a session's authentication stands."""

    FRESH = "fresh"  #: a valid token from the primary source
    REFRESHING = "refreshing"  #: exactly one refresh is in flight
    DEGRADED = "degraded"  #: refresh is failing; the current token is still valid
    EXPIRED = "expired"  #: no valid token; refresh attempts continue
    FALLBACK = "fallback"  #: a token from a fallback source is in use
    LOGIN_REQUIRED = "login_required"  #: every source failed; a new login is needed
    CLOSED = "closed"  #: the session is closed (terminal)

    @property
    def terminal(self) -> bool:
        """True for ``CLOSED``, the state no event leaves."""
        return self is AuthState.CLOSED


class AuthEvent(StrEnum):
    """What drives the machine. Shells fire these; the table decides."""

    REFRESH_STARTED = "refresh_started"  #: a refresh (through the source chain) begins
    REFRESH_SUCCEEDED = "refresh_succeeded"  #: the primary source produced a new token
    REFRESH_FAILED = "refresh_failed"  #: the refresh produced no token (guard: token_valid)
    TOKEN_EXPIRED = "token_expired"  #: the clock passed the token's expiry
    FALLBACK_USED = "fallback_used"  #: a fallback source produced a token
    PRIMARY_RECOVERED = "primary_recovered"  #: the primary source works again
    LOGIN_NEEDED = "login_needed"  #: no source can produce a token without a new login
    LOGIN_COMPLETED = "login_completed"  #: a new login produced a fresh token set
    CLOSE = "close"  #: the session is closed
    RECOVER = "recover"  #: leave a stuck state (guard: token_valid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Guards:
    """The facts a guarded transition depends on, computed by the caller at ``now``.

    Guard names in :data:`TRANSITIONS` are the names of these fields.
    """

    #: the current access token exists and has not expired
    token_valid: bool


#: One guarded choice: (name of a :class:`Guards` field, or ``None`` for
#: "otherwise"; the state it leads to).
Choice: TypeAlias = tuple[str | None, AuthState]
#: What the table maps to: a state, or guarded choices ending with ``None``.
Target: TypeAlias = AuthState | tuple[Choice, ...]

_S = AuthState
_E = AuthEvent

#: a failed or abandoned refresh: degraded while the token is valid, else expired
_BY_TOKEN: Final[tuple[Choice, ...]] = (("token_valid", _S.DEGRADED), (None, _S.EXPIRED))

#: The transition table. Pairs not listed are illegal.
TRANSITIONS: Final[Mapping[tuple[AuthState, AuthEvent], Target]] = MappingProxyType(
    {
        # fresh: a valid token from the primary source
        (_S.FRESH, _E.REFRESH_STARTED): _S.REFRESHING,
        (_S.FRESH, _E.TOKEN_EXPIRED): _S.EXPIRED,
        (_S.FRESH, _E.LOGIN_NEEDED): _S.LOGIN_REQUIRED,
        (_S.FRESH, _E.LOGIN_COMPLETED): _S.FRESH,
        (_S.FRESH, _E.CLOSE): _S.CLOSED,
        # refreshing: one refresh in flight; a second REFRESH_STARTED is illegal
        (_S.REFRESHING, _E.REFRESH_SUCCEEDED): _S.FRESH,
        (_S.REFRESHING, _E.REFRESH_FAILED): _BY_TOKEN,
        (_S.REFRESHING, _E.TOKEN_EXPIRED): _S.REFRESHING,
        (_S.REFRESHING, _E.FALLBACK_USED): _S.FALLBACK,
        (_S.REFRESHING, _E.LOGIN_NEEDED): _S.LOGIN_REQUIRED,
        (_S.REFRESHING, _E.LOGIN_COMPLETED): _S.FRESH,
        (_S.REFRESHING, _E.RECOVER): _BY_TOKEN,
        (_S.REFRESHING, _E.CLOSE): _S.CLOSED,
        # degraded: refresh failing, token still valid
        (_S.DEGRADED, _E.REFRESH_STARTED): _S.REFRESHING,
        # a refresh given up as stuck that finished after all
        (_S.DEGRADED, _E.REFRESH_SUCCEEDED): _S.FRESH,
        (_S.DEGRADED, _E.TOKEN_EXPIRED): _S.EXPIRED,
        (_S.DEGRADED, _E.FALLBACK_USED): _S.FALLBACK,
        (_S.DEGRADED, _E.LOGIN_NEEDED): _S.LOGIN_REQUIRED,
        (_S.DEGRADED, _E.LOGIN_COMPLETED): _S.FRESH,
        (_S.DEGRADED, _E.CLOSE): _S.CLOSED,
        # expired: no valid token; refresh attempts continue
        (_S.EXPIRED, _E.REFRESH_STARTED): _S.REFRESHING,
        (_S.EXPIRED, _E.REFRESH_SUCCEEDED): _S.FRESH,  # late success after recovery
        (_S.EXPIRED, _E.TOKEN_EXPIRED): _S.EXPIRED,
        (_S.EXPIRED, _E.FALLBACK_USED): _S.FALLBACK,
        (_S.EXPIRED, _E.LOGIN_NEEDED): _S.LOGIN_REQUIRED,
        (_S.EXPIRED, _E.LOGIN_COMPLETED): _S.FRESH,
        (_S.EXPIRED, _E.CLOSE): _S.CLOSED,
        # fallback: a fallback source's token is in use
        (_S.FALLBACK, _E.REFRESH_STARTED): _S.REFRESHING,
        (_S.FALLBACK, _E.PRIMARY_RECOVERED): _S.FRESH,
        (_S.FALLBACK, _E.TOKEN_EXPIRED): _S.EXPIRED,
        (_S.FALLBACK, _E.FALLBACK_USED): _S.FALLBACK,
        (_S.FALLBACK, _E.LOGIN_NEEDED): _S.LOGIN_REQUIRED,
        (_S.FALLBACK, _E.LOGIN_COMPLETED): _S.FRESH,
        (_S.FALLBACK, _E.CLOSE): _S.CLOSED,
        # login required: only a new login (or closing) leaves it
        (_S.LOGIN_REQUIRED, _E.LOGIN_NEEDED): _S.LOGIN_REQUIRED,
        (_S.LOGIN_REQUIRED, _E.LOGIN_COMPLETED): _S.FRESH,
        (_S.LOGIN_REQUIRED, _E.CLOSE): _S.CLOSED,
        # closed: terminal, nothing leaves it
    }
)

#: Default time limits in seconds. A state held longer than its limit is
#: stuck. Only states with a ``RECOVER`` transition may have a limit.
STATE_LIMITS: Final[Mapping[AuthState, float]] = MappingProxyType({_S.REFRESHING: 60.0})


class IllegalTransition(AuthpulseError):  # noqa: N818 - named like h11's protocol errors
    """An event was fired in a state where the table does not allow it.

    ``state`` and ``event`` say which; the message carries nothing else.
    """

    def __init__(self, state: AuthState, event: AuthEvent) -> None:
        self.state = state
        self.event = event
        super().__init__(f"event {event.value!r} is not allowed in auth state {state.value!r}")

    def __reduce__(self) -> tuple[type[IllegalTransition], tuple[AuthState, AuthEvent]]:
        return (type(self), (self.state, self.event))


@dataclass(frozen=True, slots=True)
class Transition:
    """One fired event: the state before, the state after, the event, the time."""

    from_state: AuthState
    to_state: AuthState
    event: AuthEvent
    at: float

    @property
    def changed(self) -> bool:
        """False for a self-loop (the state stayed the same)."""
        return self.from_state is not self.to_state

    def to_dict(self) -> dict[str, str | float]:
        """Flat, JSON-safe fields (usable as a ``state_changed`` event's fields)."""
        return {
            "from": self.from_state.value,
            "to": self.to_state.value,
            "event": self.event.value,
            "at": self.at,
        }


def next_state(state: AuthState, event: AuthEvent, guards: Guards | None = None) -> AuthState:
    """Where ``event`` leads from ``state``: the pure lookup :meth:`StateMachine.fire` uses.

    Raises :class:`IllegalTransition` if the pair is not in the table, and
    :class:`~authpulse.UsageError` if the transition is guarded and
    ``guards`` is ``None``.
    """
    try:
        target = TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(state, event) from None
    if isinstance(target, AuthState):
        return target
    if guards is None:
        names = ", ".join(name for name, _ in target if name is not None)
        raise UsageError(
            f"event {event.value!r} in auth state {state.value!r} depends on guards "
            f"({names}): pass guards="
        )
    for name, to in target[:-1]:
        if name is None or getattr(guards, name):
            return to
    return target[-1][1]


def auth_event_for(event: SessionEvent) -> AuthEvent | None:
    """The machine event a session event fires, or ``None`` (it moves no state).

    A refresh that installs a fallback level's token is ``FALLBACK_USED``; a
    refresh that failed with :class:`~authpulse.LoginRequiredError` (by its
    class, not its name) is ``LOGIN_NEEDED``.
    """
    kind = event.kind
    if kind is SessionEventKind.REFRESH_STARTED:
        return AuthEvent.REFRESH_STARTED
    if kind is SessionEventKind.REFRESHED:
        return AuthEvent.FALLBACK_USED if event.fields.get("level") else AuthEvent.REFRESH_SUCCEEDED
    if kind is SessionEventKind.REFRESH_FAILED:
        if event.failed_with(LoginRequiredError):
            return AuthEvent.LOGIN_NEEDED
        return AuthEvent.REFRESH_FAILED
    return _FIRED.get(kind)


_FIRED: Final[Mapping[SessionEventKind, AuthEvent]] = MappingProxyType(
    {
        SessionEventKind.PRIMARY_RECOVERED: AuthEvent.PRIMARY_RECOVERED,
        SessionEventKind.LOGIN_COMPLETED: AuthEvent.LOGIN_COMPLETED,
    }
)


def _check_time(now: float) -> float:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ConfigurationError(f"now must be a finite number of seconds, not {now!r}")
    return float(now)


class StateMachine:
    """One session's auth state, driven by :meth:`fire`.

    A small mutable object and **not thread-safe by itself**: its owner
    (a session) serialises calls, typically under the lock it already holds
    when it changes the session. ``now`` is always passed in; the machine
    never reads a clock, and time may be any clock as long as one machine
    always gets the same one. A ``now`` earlier than :attr:`entered_at`
    (a wall clock stepped back) counts as zero time held.

    ``entered_at`` changes only when the state changes: a self-loop (such as
    ``TOKEN_EXPIRED`` while refreshing) is recorded in :attr:`history` but
    does not restart the stuck timer.
    """

    __slots__ = ("_count", "_entered_at", "_history", "_history_limit", "_limits", "_state")

    def __init__(
        self,
        *,
        now: float,
        initial: AuthState = AuthState.FRESH,
        limits: Mapping[AuthState, float] | None = None,
        history: int = 50,
    ) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ConfigurationError(f"history must be a positive int, not {history!r}")
        self._history: list[Transition] = []  # bounded by hand: a deque costs ~600 B
        self._history_limit = history
        self._count = 0
        self._state = AuthState(initial)
        self._entered_at = _check_time(now)
        if limits is None:
            self._limits: Mapping[AuthState, float] = STATE_LIMITS  # shared, read-only
            return
        checked: dict[AuthState, float] = {}
        for key, limit in limits.items():
            try:
                state = AuthState(key)
            except ValueError:
                raise ConfigurationError(f"not an auth state: {key!r}") from None
            if (state, AuthEvent.RECOVER) not in TRANSITIONS:
                raise ConfigurationError(
                    f"auth state {state.value!r} cannot have a time limit: "
                    "no RECOVER transition leaves it"
                )
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
                raise ConfigurationError(f"time limit for {state.value!r} must be > 0: {limit!r}")
            checked[state] = float(limit)
        self._limits = MappingProxyType(checked)

    # -- state -------------------------------------------------------------

    @property
    def state(self) -> AuthState:
        """The current state."""
        return self._state

    @property
    def entered_at(self) -> float:
        """When the current state was entered (the ``now`` of that transition)."""
        return self._entered_at

    @property
    def closed(self) -> bool:
        """True once ``CLOSED`` has been reached (it is never left)."""
        return self._state is AuthState.CLOSED

    @property
    def limits(self) -> Mapping[AuthState, float]:
        """The time limits in force (read-only)."""
        return self._limits

    @property
    def history(self) -> tuple[Transition, ...]:
        """The most recent transitions, oldest first (bounded by ``history``)."""
        return tuple(self._history)

    @property
    def transition_count(self) -> int:
        """How many transitions were ever fired (unbounded, unlike :attr:`history`)."""
        return self._count

    def can_fire(self, event: AuthEvent) -> bool:
        """True if ``event`` is legal in the current state (guards aside)."""
        return (self._state, event) in TRANSITIONS

    # -- driving -----------------------------------------------------------

    def fire(self, event: AuthEvent, *, now: float, guards: Guards | None = None) -> Transition:
        """Apply ``event`` at ``now`` and return the transition made.

        Raises :class:`IllegalTransition` (the machine is unchanged) if the
        table does not allow ``event`` in the current state.
        """
        at = _check_time(now)
        to = next_state(self._state, event, guards)
        transition = Transition(self._state, to, event, at)
        if to is not self._state:
            self._state = to
            self._entered_at = at
        history = self._history
        history.append(transition)
        if len(history) > self._history_limit:
            del history[0]
        self._count += 1
        return transition

    # -- stuck states --------------------------------------------------------

    def held_for(self, now: float) -> float:
        """Seconds the current state has been held at ``now`` (never negative)."""
        return max(0.0, _check_time(now) - self._entered_at)

    @property
    def stuck_after(self) -> float | None:
        """The time after which the current state counts as stuck; ``None`` if no limit."""
        limit = self._limits.get(self._state)
        return None if limit is None else self._entered_at + limit

    def is_stuck(self, now: float) -> bool:
        """True if the current state has been held *longer* than its limit.

        At exactly ``entered_at + limit`` the state is not yet stuck.
        """
        limit = self._limits.get(self._state)
        return limit is not None and self.held_for(now) > limit

    def stuck_for(self, now: float) -> float:
        """Seconds past the limit at ``now``; ``0.0`` when not stuck."""
        limit = self._limits.get(self._state)
        if limit is None:
            return 0.0
        return max(0.0, self.held_for(now) - limit)

    def recover(self, now: float, *, guards: Guards | None = None) -> Transition | None:
        """Fire ``RECOVER`` if the current state is stuck at ``now``; else do nothing.

        Returns the transition, or ``None`` when the state is not stuck (so
        a maintenance tick can call it unconditionally).
        """
        if not self.is_stuck(now):
            return None
        return self.fire(AuthEvent.RECOVER, now=now, guards=guards)

    def health_state(self, now: float) -> str:
        """The state name the health score uses: ``"stuck"`` when stuck, else the state."""
        return "stuck" if self.is_stuck(now) else self._state.value

    def __repr__(self) -> str:
        return (
            f"<StateMachine state={self._state.value!r} entered_at={self._entered_at!r} "
            f"transitions={self._count}>"
        )


# -- documentation ---------------------------------------------------------


def _edges() -> list[tuple[AuthState, AuthState, str]]:
    """(from, to, label) for every edge of the table, in table order."""
    edges: list[tuple[AuthState, AuthState, str]] = []
    for (state, event), target in TRANSITIONS.items():
        if isinstance(target, AuthState):
            edges.append((state, target, event.value))
            continue
        prior: list[str] = []
        for name, to in target:
            if name is None:
                cond = " and ".join(f"not {p}" for p in prior)
            else:
                cond = name
                prior.append(name)
            edges.append((state, to, f"{event.value} [{cond}]"))
    return edges


def mermaid() -> str:
    """A Mermaid ``stateDiagram-v2`` of :data:`TRANSITIONS` and :data:`STATE_LIMITS`.

    Edges between the same two states are merged into one arrow whose label
    lists the events; a guarded edge shows its guard in brackets.
    """
    merged: dict[tuple[AuthState, AuthState], list[str]] = {}
    for src, dst, label in _edges():
        merged.setdefault((src, dst), []).append(label)
    lines = ["stateDiagram-v2", f"    [*] --> {AuthState.FRESH.value}"]
    lines.extend(
        f"    {src.value} --> {dst.value} : {', '.join(labels)}"
        for (src, dst), labels in merged.items()
    )
    lines.extend(f"    {s.value} --> [*]" for s in AuthState if s.terminal)
    lines.extend(
        f"    note right of {state.value} : stuck after {limit:g} s, then recover"
        for state, limit in STATE_LIMITS.items()
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(mermaid(), end="")


# The public names defined here show the module they are imported from.
for _public in (
    AuthEvent,
    AuthState,
    Guards,
    IllegalTransition,
    StateMachine,
    Transition,
):
    _public.__module__ = "authpulse"
del _public

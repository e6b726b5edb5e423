"""What a manager tells: the events of its sessions, published on its bus (and
so to the journal) and appended to each session's stored timeline; the auth
state machine fired by session events; and lifecycle status changes, the
writes that publish the most.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._core.errors import AuthpulseError
from .._core.model import ErrorDetails, SessionRecord, SessionStatus
from .._core.signals import SessionEvent, SessionEventKind, journal_entry
from .._core.state import AuthEvent, Guards, IllegalTransition, Transition, auth_event_for
from .._runtime.events import Event, EventKind, labels_for
from .errors import SessionClosedError
from .flow import Flow, drive

if TYPE_CHECKING:
    from .._runtime.clock import Clock
    from .._runtime.events import EventBus
    from .flow import EventLanes
    from .managed import ManagedSession
    from .registry import Registry
    from .steps import StoreSteps

__all__ = ["Timeline"]

log = logging.getLogger("authpulse.manager")

#: session events after which the next refresh is scheduled again
_RESCHEDULES = frozenset({SessionEventKind.REFRESHED, SessionEventKind.LOGIN_COMPLETED})

_STATUS_EVENT: Mapping[SessionStatus, EventKind] = {
    SessionStatus.ACTIVE: EventKind.RESUMED,
    SessionStatus.PAUSED: EventKind.PAUSED,
}


class Timeline:
    """Publishes a manager's events and runs the auth state machines of its
    live sessions. Flows here are steps of the caller's flow; the plain methods
    serve session listeners (see :meth:`dispatch`)."""

    __slots__ = ("_clock", "_lanes", "_registry", "_steps", "bus")

    def __init__(
        self,
        bus: EventBus,
        steps: StoreSteps,
        registry: Registry,
        lanes: EventLanes,
        clock: Clock,
    ) -> None:
        self.bus = bus
        self._steps = steps
        self._registry = registry
        self._lanes = lanes
        self._clock = clock

    # -- publishing ----------------------------------------------------------------------

    def dispatch(self, flow: Flow[None]) -> None:
        """Run a flow started by a session listener: at once without an event loop
        on this thread, else queued on the loop's lane (its store I/O awaited)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            drive(flow)
        else:
            self._lanes.push(loop, flow)

    def publish(
        self, event_kind: EventKind, record: SessionRecord, at: float, **fields: Any
    ) -> Flow[None]:
        """Append the event to the session's stored timeline, then publish it."""
        clean = {
            k: v for k, v in fields.items() if v is None or isinstance(v, str | int | float | bool)
        }
        event = Event(
            kind=event_kind,
            at=at,
            session_id=record.id,
            owner=record.owner,
            labels=labels_for(event_kind),
            fields=clean,
        )
        try:
            yield from self._steps.append_event(record.id, event)
        except AuthpulseError:
            log.warning(
                "could not append to the timeline of %s",
                record.id,
                extra={
                    "authpulse_event": "timeline_append_failed",
                    "authpulse_session": record.id,
                    "authpulse_kind": event_kind.value,
                },
            )
        self.bus.publish(event)

    # -- the auth state machine ----------------------------------------------------------

    def fire(self, ms: ManagedSession, event: AuthEvent, *, now: float | None = None) -> None:
        """Fire ``event`` from a session listener (see :meth:`dispatch`)."""
        t = self._clock.now() if now is None else now
        tr = self.transition(ms, event, t)
        if tr is not None:
            self.dispatch(self.transitioned(ms, event, tr, t))

    def fire_flow(self, ms: ManagedSession, event: AuthEvent, now: float) -> Flow[None]:
        tr = self.transition(ms, event, now)
        if tr is not None:
            yield from self.transitioned(ms, event, tr, now)

    def transition(self, ms: ManagedSession, event: AuthEvent, t: float) -> Transition | None:
        """Fire ``event`` on the session's state machine (no I/O); None if illegal."""
        guards = Guards(token_valid=ms.session.freshness(t).value != "expired")
        with self._registry.lock:
            try:
                return ms.machine.fire(event, now=t, guards=guards)
            except IllegalTransition:
                log.debug(
                    "ignored %s in state %s",
                    event.value,
                    ms.machine.state.value,
                    extra={
                        "authpulse_event": "transition_ignored",
                        "authpulse_session": ms.id,
                        "authpulse_kind": event.value,
                        "authpulse_state": ms.machine.state.value,
                    },
                )
                return None

    def transitioned(
        self, ms: ManagedSession, event: AuthEvent, tr: Transition, t: float
    ) -> Flow[None]:
        """Publish and persist a transition that changed the state."""
        if not tr.changed:
            return
        yield from self.publish(
            EventKind.STATE_CHANGED,
            ms.record,
            t,
            **{"from": tr.from_state.value, "to": tr.to_state.value, "event": event.value},
        )
        if ms.record.auth_state != tr.to_state.value and not ms.record.status.terminal:
            try:
                yield from self._steps.write(ms, lambda r: replace(r, auth_state=tr.to_state.value))
            except AuthpulseError:
                log.debug(
                    "could not persist auth state of %s",
                    ms.id,
                    extra={
                        "authpulse_event": "auth_state_not_persisted",
                        "authpulse_session": ms.id,
                    },
                )
        if tr.to_state in ms.machine.limits and ms.machine.stuck_after is not None:
            self._registry.push(ms.machine.stuck_after + 1e-6, ms.id, "stuck")

    def on_session_event(self, ms: ManagedSession, event: SessionEvent) -> None:
        """A session's event: the state machine, the journal, the next refresh."""
        now = self._clock.now()
        fired = auth_event_for(event)
        if fired is not None:
            self.fire(ms, fired, now=now)
        entry = journal_entry(event)
        if entry is not None:
            self.dispatch(self.publish(entry[0], ms.record, now, **entry[1]))
        if event.kind in _RESCHEDULES:
            self._registry.schedule_refresh(ms)

    # -- lifecycle status ------------------------------------------------------------------

    def set_status(
        self,
        target: ManagedSession | str,
        status: SessionStatus,
        *,
        error: ErrorDetails | None = None,
        reason: str | None = None,
        now: float | None = None,
    ) -> Flow[SessionRecord]:
        """A lifecycle change at ``now`` (default: the clock's now): through the live
        part if the session is loaded here, else on the stored record alone (same
        record, same events)."""
        ms = target if not isinstance(target, str) else self._registry.live.get(target)
        session_id = ms.id if ms is not None else str(target)
        t = self._clock.now() if now is None else now

        def change(r: SessionRecord) -> SessionRecord:
            if ms is None and r.status.terminal:
                raise SessionClosedError(session_id, r.status)
            return r.with_status(status, now=t, error=error, reason=reason)

        old, new = yield from self._steps.write(ms if ms is not None else session_id, change)
        fields: dict[str, Any] = {"from": old.status.value, "to": new.status.value}
        if reason:
            fields["reason"] = reason
        if error is not None:
            fields["error"] = error.message
            if error.error_class:
                fields["error_class"] = error.error_class
        kind = _STATUS_EVENT.get(new.status, EventKind.CLOSED)
        yield from self.publish(EventKind.STATUS_CHANGED, new, t, **fields)
        yield from self.publish(kind, new, t, **fields)
        if ms is not None and status.terminal:
            yield from self.fire_flow(ms, AuthEvent.CLOSE, t)
            ms.session.close(wait=False)
        return new

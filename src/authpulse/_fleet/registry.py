"""The sessions a manager holds live in this process: how each is attached (its
token :class:`Session`, its auth :class:`StateMachine`, its hooks), found, and
given its deadlines in the worker's heap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.errors import UsageError
from .._core.model import SessionRecord, SessionStatus
from .._core.state import AuthState, StateMachine
from .._sessions.session import Session
from .errors import SessionNotFoundError
from .managed import ManagedSession
from .plan import Deadlines, Kind, lifecycle_deadline
from .residency import hydrate

if TYPE_CHECKING:
    from .._core.tokens import TokenSet
    from .._sessions.sources import TokenSource
    from .flow import Flow
    from .manager import SessionManager
    from .probes import Probe

__all__ = ["Registry"]

_AUTH_STATES = {s.value: s for s in AuthState}


class Registry:
    """The live sessions of one manager, by id, and their deadlines."""

    __slots__ = ("_manager", "deadlines", "live", "lock")

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager
        self.live: dict[str, ManagedSession] = {}
        self.lock = threading.RLock()
        self.deadlines = Deadlines()

    def snapshot(self) -> tuple[ManagedSession, ...]:
        with self.lock:
            return tuple(self.live.values())

    def attach(
        self,
        record: SessionRecord,
        source: TokenSource,
        *,
        token: TokenSet | None,
        probe: Probe | None,
        on_token_update: Callable[[TokenSet], Any] | None,
    ) -> ManagedSession:
        """Make ``record`` live here: its session on the manager's settings and
        store, its state machine, its hooks and its first deadlines."""
        m = self._manager
        session = Session(
            source,
            token=token,
            policy=m.policy,
            retry=m.retry,
            clock=m.clock,
            transport=m._transport,
            async_transport=m._async_transport,
            on_token_update=on_token_update,
            name=record.id,
            rng=m._rng,
            identity=f"session:{record.id}",  # the cache never serves one session to another
            store=m.store,
            store_key=record.id,
            request_window=m.settings.request_window,
        )
        machine = StateMachine(
            now=m.clock.now(),
            initial=_AUTH_STATES.get(record.auth_state, AuthState.FRESH),
        )
        ms = ManagedSession(m, record, session, machine, probe or m.probe)
        session.add_event_hook(ms._on_event)
        session.on_request = ms._on_request
        with self.lock:
            self.live[record.id] = ms
        self.schedule_lifecycle(ms)
        if token is not None:
            self.schedule_refresh(ms)
        if ms.probe is not None:
            self.push(m.clock.now() + m.settings.heartbeat_interval, record.id, "heartbeat")
        if m._residency is not None:
            m._residency.attached(m, ms, pinned=on_token_update is not None or probe is not None)
        return ms

    def lookup(self, session_id: str) -> Flow[ManagedSession]:
        """The live session ``session_id``; :class:`UsageError` if it is only
        stored, :class:`SessionNotFoundError` if it is nowhere. With a source
        factory a stored session is loaded (hydrated), and counts as used."""
        if not isinstance(session_id, str):
            raise SessionNotFoundError(repr(session_id))
        res = self._manager._residency
        if res is None:
            ms = self.live.get(session_id)
        else:  # found and held in one step: a tick cannot evict it between
            with self.lock:
                ms = self.live.get(session_id)
                if ms is not None:
                    res.held(self._manager, ms)
            ms = ms or (yield from hydrate(self._manager, session_id))
            if ms is None:
                raise SessionNotFoundError(session_id)
        if ms is None:
            if (yield from self._manager._steps.get(session_id)) is not None:
                raise UsageError(
                    f"session {session_id!r} is stored but not loaded in this "
                    "process; call recover() with its source"
                )
            raise SessionNotFoundError(session_id)
        return ms

    # -- deadlines -----------------------------------------------------------------------

    def push(self, when: float, session_id: str, kind: Kind) -> None:
        self.deadlines.push(when, session_id, kind)

    def schedule_lifecycle(self, ms: ManagedSession) -> None:
        when = lifecycle_deadline(ms.record, ms.last_activity(), self._manager.settings)
        if when is not None:
            self.push(when, ms.id, "lifecycle")

    def schedule_refresh(self, ms: ManagedSession) -> None:
        at = ms.session.refresh_at
        if at is not None and ms.record.status is SessionStatus.ACTIVE:
            self.push(at - self._manager.settings.refresh_lead, ms.id, "refresh")

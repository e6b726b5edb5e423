"""``ManagedSession``: the live handle on one session of a :class:`SessionManager`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .._core.model import SessionRecord, SessionStatus
from .._http.client import AsyncClient, Client

if TYPE_CHECKING:
    from .._core.health import HealthReport
    from .._core.signals import SessionEvent
    from .._core.state import AuthState, StateMachine
    from .._sessions.session import Session
    from .manager import SessionManager
    from .probes import Probe

__all__ = ["ManagedSession"]

_T = TypeVar("_T")


class _RecordField(Generic[_T]):
    """A read-only attribute of a managed session's latest record."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _RecordField[_T]: ...
    @overload
    def __get__(self, obj: ManagedSession, owner: type) -> _T: ...
    def __get__(self, obj: ManagedSession | None, owner: type) -> _RecordField[_T] | _T:
        if obj is None:
            return self
        value: _T = getattr(obj.record, self._name)
        return value


class ManagedSession:
    """A live handle on one managed session.

    ``session`` is its token engine (``token()``, ``auth()``, ...);
    ``record`` is the latest stored record. Use :meth:`client` /
    :meth:`async_client` for httpx clients whose calls count as activity.
    """

    __slots__ = (
        "_record",
        "heartbeat_at",
        "heartbeat_ok",
        "last_request_at",
        "machine",
        "manager",
        "probe",
        "session",
    )

    id: _RecordField[str] = _RecordField()
    owner: _RecordField[str] = _RecordField()
    status: _RecordField[SessionStatus] = _RecordField()

    def __init__(
        self,
        manager: SessionManager,
        record: SessionRecord,
        session: Session,
        machine: StateMachine,
        probe: Probe | None,
    ) -> None:
        self.manager = manager
        self._record = record
        self.session = session
        self.machine = machine
        self.probe = probe
        self.heartbeat_ok: bool | None = None
        self.heartbeat_at: float | None = None
        self.last_request_at: float | None = None

    def __repr__(self) -> str:
        r = self._record
        return (
            f"<ManagedSession {r.id} owner={r.owner!r} {r.status.value} "
            f"auth={self.machine.state.value}>"
        )

    @property
    def record(self) -> SessionRecord:
        return self._record

    @property
    def auth_state(self) -> AuthState:
        return self.machine.state

    def last_activity(self) -> float:
        """The latest of the recorded activity and the last request."""
        r = self._record.last_activity_at
        q = self.last_request_at
        return r if q is None or q < r else q

    def health(self, now: float | None = None) -> HealthReport:
        return self.manager.health(self.id, now=now)

    # bound methods rather than closures: two fewer objects per session
    def _on_event(self, event: SessionEvent) -> None:
        self.manager._on_session_event(self, event)

    def _on_request(self, ok: bool, latency: float) -> None:
        self.manager._on_request(self, ok, latency)

    def client(self, **kwargs: Any) -> Client:
        """An ``authpulse.Client`` on this session."""
        return Client(self.session, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncClient:
        """An ``authpulse.AsyncClient`` on this session."""
        return AsyncClient(self.session, **kwargs)


#: ``progress(done, total)``: called after each session a bulk operation handled


# The public names defined here show the module they are imported from.
for _public in (ManagedSession,):
    _public.__module__ = "authpulse"
del _public

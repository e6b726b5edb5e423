"""The errors a ``SessionManager`` raises about one session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._core.errors import AuthpulseError

if TYPE_CHECKING:
    from .._core.model import SessionStatus

__all__ = ["PermissionDenied", "SessionClosedError", "SessionNotFoundError"]


class SessionNotFoundError(AuthpulseError, LookupError):
    """No session with that id (in this manager's store)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no session with id {session_id!r}")


class PermissionDenied(AuthpulseError):  # noqa: N818 - the name users look for
    """The session belongs to another owner."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id!r} belongs to another owner")


class SessionClosedError(AuthpulseError):
    """The session has ended (COMPLETED, FAILED, TIMEOUT or CANCELLED)."""

    def __init__(self, session_id: str, status: SessionStatus) -> None:
        self.session_id = session_id
        self.status = status
        super().__init__(f"session {session_id!r} is closed ({status.value})")


# The public names defined here show the module they are imported from.
for _public in (
    PermissionDenied,
    SessionClosedError,
    SessionNotFoundError,
):
    _public.__module__ = "authpulse"
del _public

"""Revoking a managed session's grant when it ends (``close``, ``cancel``,
``purge``), with :attr:`ManagerSettings.revoke_on_close`.

The revocation itself is the session's (:meth:`Session.revoke
<authpulse.Session.revoke>`); this is the manager's side: whether to revoke,
and what goes on the timeline. A failure is a ``revocation_failed`` event
(and a warning in the log), never an exception: the session ends anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._core.errors import AuthpulseError
from .._runtime.events import EventKind
from .._sessions.oauth_grant import OAuthGrant
from .._sessions.revocation import revocation_targets
from .flow import Flow, one_step

if TYPE_CHECKING:
    from .._core.model import SessionRecord
    from .managed import ManagedSession
    from .manager import SessionManager

__all__ = ["revoke_ended", "wants_revocation"]

log = logging.getLogger("authpulse.manager")


def wants_revocation(m: SessionManager, ms: ManagedSession) -> bool:
    """Whether ending ``ms`` revokes its grant: the setting is on, the source is
    an OAuth grant with a ``revocation_url``, and it holds something to revoke."""
    source = ms.session.source
    return (
        m.settings.revoke_on_close
        and isinstance(source, OAuthGrant)
        and source.revocation_url is not None
        and bool(revocation_targets(source, ms.session.token_set))
    )


def revoke_ended(m: SessionManager, ms: ManagedSession, record: SessionRecord) -> Flow[None]:
    """Revoke the grant of ``ms``, which is ending (``record``: its latest record),
    and record the outcome on its timeline: ``revoked`` (with how many tokens) or
    ``revocation_failed`` (with the error's message, which holds no secret)."""
    if not wants_revocation(m, ms):
        return
    session = ms.session
    try:
        revoked = yield from one_step(session.revoke, session.arevoke)
    except AuthpulseError as exc:
        log.warning(
            "could not revoke the grant of %s: %s",
            record.id,
            exc,
            extra={"authpulse_event": "revocation_failed", "authpulse_session": record.id},
        )
        yield from m._timeline.publish(
            EventKind.REVOCATION_FAILED,
            record,
            m.clock.now(),
            error=str(exc),
            error_type=type(exc).__name__,
            status_code=getattr(exc, "status_code", None),
        )
        return
    yield from m._timeline.publish(EventKind.REVOKED, record, m.clock.now(), revoked=revoked)

"""``authpulse.Client`` / ``AsyncClient``: httpx clients that carry a Session.

They are real ``httpx.Client`` / ``httpx.AsyncClient`` objects: the session
is plugged in through ``auth=`` (httpx's own extension point), nothing in
``request()`` or ``send()`` is overridden.
"""

from __future__ import annotations

from typing import Any

from ._errors import ConfigurationError
from ._health import HealthReport
from ._http import httpx
from ._session import Session
from ._tokens import TokenSet

__all__ = ["AsyncClient", "Client"]


def _auth_kwargs(session: Session, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(session, Session):
        raise ConfigurationError("the first argument must be an authpulse.Session")
    if "auth" in kwargs:
        raise ConfigurationError(
            "authpulse clients get their auth from the session; do not pass auth="
        )
    origins = None
    if session.origins is None and kwargs.get("base_url"):
        origins = [str(httpx.URL(str(kwargs["base_url"])))]
    kwargs["auth"] = session.auth(origins=origins)
    return kwargs


class Client(httpx.Client):
    """An ``httpx.Client`` whose requests carry ``session``'s token.

    ``Authorization`` goes only to the session's origins, or, if it has
    none, to the origin of ``base_url`` (with neither, to every origin).
    """

    def __init__(self, session: Session, **kwargs: Any) -> None:
        super().__init__(**_auth_kwargs(session, kwargs))
        self.session = session

    def force_refresh(self) -> TokenSet:
        """Refresh the session's token now."""
        return self.session.force_refresh()

    def health(self) -> HealthReport:
        """The session's health report."""
        return self.session.health()


class AsyncClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose requests carry ``session``'s token."""

    def __init__(self, session: Session, **kwargs: Any) -> None:
        super().__init__(**_auth_kwargs(session, kwargs))
        self.session = session

    async def force_refresh(self) -> TokenSet:
        """Refresh the session's token now."""
        return await self.session.aforce_refresh()

    def health(self) -> HealthReport:
        """The session's health report."""
        return self.session.health()

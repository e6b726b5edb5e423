"""``FakeAPI``: a resource server that accepts the fake IdP's tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .._runtime.backend import httpx
from ._idp import FakeIdP, _FakeServer

__all__ = ["FakeAPI"]


class FakeAPI(_FakeServer):
    """A resource server that accepts bearer tokens issued by ``idp``.

    Every path answers ``200 {"ok": true, "path": ...}`` to a valid token,
    ``401`` otherwise. ``/redirect?to=URL`` answers ``302`` to ``URL``.
    ``handler`` replaces the 200 answer when given.
    """

    def __init__(
        self,
        idp: FakeIdP,
        *,
        base_url: str = "https://api.test",
        latency: float = 0.0,
        handler: Callable[[httpx.Request], httpx.Response] | None = None,
    ) -> None:
        super().__init__(latency)
        self.idp = idp
        self.base_url = base_url
        self.handler = handler
        self._lock = threading.Lock()
        self.calls = 0
        self.unauthorized = 0
        self.authorization_seen: list[bool] = []

    def _answer(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        with self._lock:
            self.calls += 1
            self.authorization_seen.append(header is not None)
        if request.url.path == "/redirect":
            return httpx.Response(302, headers={"location": request.url.params.get("to", "/")})
        if request.url.path == "/public":
            return httpx.Response(200, json={"ok": True, "public": True})
        if not header or not header.startswith("Bearer ") or not self.idp.validate(header[7:]):
            with self._lock:
                self.unauthorized += 1
            return httpx.Response(
                401,
                headers={"www-authenticate": 'Bearer error="invalid_token"'},
                json={"error": "invalid_token"},
            )
        if self.handler is not None:
            return self.handler(request)
        return httpx.Response(200, json={"ok": True, "path": request.url.path})


# The public names defined here show the module they are imported from.
for _public in (FakeAPI,):
    _public.__module__ = "authpulse.testing"
del _public

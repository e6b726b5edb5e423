from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt

from .._runtime.backend import httpx
from ._idp import FakeIdP, _FakeServer, _Grant

__all__ = ["FakeAuthorizationServer"]


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str | None
    nonce: str | None


class FakeAuthorizationServer(_FakeServer):
    """The authorization endpoint of a :class:`FakeIdP`, and the user's browser,
    for browser logins (the authorization code grant with PKCE).

    :meth:`browse` is the browser: it reads the authorization URL, signs the
    user in at once and follows the redirect with a real HTTP ``GET`` (to a
    loopback listener), as a browser would. ``deny=True`` answers
    ``access_denied``, ``error=`` any other error code; ``send_iss`` adds
    ``iss`` (RFC 9207), ``iss=`` a different one. The token endpoint
    (:attr:`transport`) exchanges a code once, for its client, redirect URI and
    ``S256`` verifier, with an ID token carrying the ``nonce`` when the scope
    has ``openid``; its discovery document (:meth:`metadata`) adds the
    authorization endpoint; every other request goes to the fake IdP itself.
    A public client (no secret) is one whose secret in the fake IdP's
    ``clients`` is ``""``.
    """

    def __init__(
        self,
        idp: FakeIdP,
        *,
        send_iss: bool = True,
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency)
        self.idp = idp
        self.send_iss = send_iss
        self.iss: str | None = None
        self.deny = False
        self.error: str | None = None
        self.nonce_override: str | None = None
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()
        #: the browser's visits, and the codes exchanged
        self.visits = 0
        self.exchanges = 0
        #: the last redirect URI and the status its listener answered
        self.last_redirect: str | None = None
        self.last_status: int | None = None

    @property
    def authorization_url(self) -> str:
        return f"{self.idp.issuer}/authorize"

    def browse(self, url: str) -> None:
        """Be the user's browser at ``url`` (an authorization request)."""
        self.visits += 1
        query = dict(parse_qsl(urlsplit(url).query))
        redirect_uri = query.get("redirect_uri", "")
        answer: dict[str, str]
        if (
            query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
        ):
            answer = {"error": "invalid_request", "error_description": "PKCE S256 is required"}
        elif self.deny:
            answer = {"error": "access_denied", "error_description": "the user said no"}
        elif self.error is not None:
            answer = {"error": self.error, "error_description": "scripted"}
        else:
            code = "code_" + secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = _Code(
                    query.get("client_id", ""),
                    redirect_uri,
                    query["code_challenge"],
                    query.get("scope"),
                    query.get("nonce"),
                )
            answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        if self.send_iss:
            answer["iss"] = self.iss or self.idp.issuer
        target = f"{redirect_uri}?{urlencode(answer)}"
        self.last_redirect = target
        with httpx.Client(timeout=10.0) as browser:
            self.last_status = browser.get(target).status_code

    def metadata(self) -> dict[str, Any]:
        """The fake IdP's discovery document with this authorization endpoint,
        ``S256`` and, as :attr:`send_iss` says, the RFC 9207 ``iss``."""
        return {
            **self.idp.metadata(),
            "authorization_endpoint": self.authorization_url,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": self.send_iss,
        }

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/.well-known/openid-configuration":
            self.idp.discovery_calls += 1
            return httpx.Response(200, json=self.metadata())
        form = dict(parse_qsl(request.content.decode()))
        if form.get("grant_type") != "authorization_code":
            return self.idp._answer(request)
        with self._lock:
            self.exchanges += 1
            code = self._codes.pop(form.get("code", ""), None)
        client_id = self.idp._client_auth(request, form)
        if client_id is None:
            return self.idp._error("invalid_client", 401)
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if (
            code is None
            or code.client_id != client_id
            or code.redirect_uri != form.get("redirect_uri")
            or not secrets.compare_digest(challenge, code.challenge)
        ):
            return self.idp._error("invalid_grant")
        response = self.idp._issue(_Grant(client_id, code.scope), refresh=True, new_grant=True)
        if code.scope is None or "openid" not in code.scope.split():
            return response
        body: dict[str, Any] = json.loads(response.content)
        now = int(self.idp._now())
        claims = {"iss": self.idp.issuer, "sub": "alice", "aud": client_id, "iat": now}
        claims["exp"] = now + 600
        nonce = self.nonce_override if self.nonce_override is not None else code.nonce
        if nonce is not None:
            claims["nonce"] = nonce
        body["id_token"] = jwt.encode(claims, self.idp.jwt_key, algorithm="HS256")
        return httpx.Response(200, json=body, headers=self.idp._headers())


# The public names defined here show the module they are imported from.
for _public in (FakeAuthorizationServer,):
    _public.__module__ = "authpulse.testing"
del _public

"""The fake IdP's revocation (RFC 7009) and introspection (RFC 7662) endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._runtime.backend import httpx

if TYPE_CHECKING:
    from ._idp import FakeIdP

__all__ = ["introspect", "revoke"]


def revoke(idp: FakeIdP, request: httpx.Request, form: dict[str, str]) -> httpx.Response:
    """``POST /revoke``: a refresh token ends its whole grant (its access tokens
    included); an access token only itself. An unknown token, or another
    client's, is answered 200 and left alone (RFC 7009 §2.2)."""
    client_id = idp._client_auth(request, form)
    if client_id is None:
        return idp._error("invalid_client", 401)
    token = form.get("token", "")
    if not token:
        return idp._error("invalid_request")
    with idp._lock:
        idp.revocations += 1
        entry = idp._refresh.get(token)
        if entry is not None and entry[0].client_id == client_id:
            entry[0].revoked = True
        access = idp._access.get(token)
        if access is not None and access[1] is not None and access[1].client_id == client_id:
            idp._access[token] = (0.0, access[1])
    return httpx.Response(200, headers=idp._headers())


def introspect(idp: FakeIdP, request: httpx.Request, form: dict[str, str]) -> httpx.Response:
    """``POST /introspect``: ``{"active": ...}`` and, for an active token, its
    ``exp``, ``client_id``, ``scope`` and ``token_type``."""
    client_id = idp._client_auth(request, form)
    if client_id is None:
        return idp._error("invalid_client", 401)
    token = form.get("token", "")
    now = idp._now()
    body: dict[str, Any] = {"active": False}
    with idp._lock:
        idp.introspections += 1
        access = idp._access.get(token)
        refresh = idp._refresh.get(token)
        exp: float | None = None
        grant = None
        kind = ""
        if access is not None and access[1] is not None:
            exp, grant, kind = access[0], access[1], "access_token"
        elif refresh is not None and not (refresh[1] and idp.single_use):
            exp, grant, kind = idp._refresh_exp.get(token), refresh[0], "refresh_token"
        if grant is not None and not grant.revoked and (exp is None or now < exp):
            body = {"active": True, "client_id": grant.client_id, "token_type": kind}
            if exp is not None:
                body["exp"] = int(exp)
            if grant.scope:
                body["scope"] = grant.scope
    return httpx.Response(200, json=body, headers=idp._headers())

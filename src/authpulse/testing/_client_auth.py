"""How :class:`~authpulse.testing.FakeIdP` authenticates a client: the client
secret (Basic or in the form) or a client assertion (RFC 7523: HS256 with the
secret, or signed with the client's registered public key)."""

from __future__ import annotations

import base64
import secrets
from typing import Any
from urllib.parse import unquote

import jwt

__all__ = ["authenticated_client"]


def _assertion_client(
    form: dict[str, str],
    *,
    clients: dict[str, str],
    client_keys: dict[str, Any],
    audiences: list[str],
    now: float,
    seen: set[str],
) -> str | None:
    token = form.get("client_assertion", "")
    try:
        cid = str(jwt.decode(token, options={"verify_signature": False}).get("iss"))
        alg = str(jwt.get_unverified_header(token).get("alg", ""))
        key: Any = client_keys.get(cid)
        if alg.startswith("HS"):
            key = clients[cid].encode()
        elif isinstance(key, dict):
            key = jwt.PyJWK(key).key
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audiences,
            issuer=cid,
            options={"require": ["exp", "jti"], "verify_exp": False, "verify_iat": False},
        )
    except Exception:  # any failure is invalid_client
        return None
    if claims.get("sub") != cid or claims["exp"] < now or claims["jti"] in seen:
        return None
    if form.get("client_id", cid) != cid:
        return None
    seen.add(claims["jti"])
    return cid


def authenticated_client(
    authorization: str,
    form: dict[str, str],
    *,
    clients: dict[str, str],
    client_keys: dict[str, Any],
    audiences: list[str],
    now: float,
    seen: set[str],
) -> str | None:
    """The id of the client the request authenticates, or ``None``. ``seen``
    holds the assertions' ``jti`` values already used (a replay is refused)."""
    if "client_assertion" in form:
        return _assertion_client(
            form, clients=clients, client_keys=client_keys, audiences=audiences, now=now, seen=seen
        )
    if authorization.lower().startswith("basic "):
        try:
            raw = base64.b64decode(authorization[6:]).decode()
            cid, _, sec = raw.partition(":")
            cid, sec = unquote(cid), unquote(sec)
        except (ValueError, UnicodeDecodeError):
            return None
    else:
        cid, sec = form.get("client_id", ""), form.get("client_secret", "")
    # compare bytes: compare_digest refuses str with non-ASCII characters
    ok = cid in clients and secrets.compare_digest(clients[cid].encode(), sec.encode())
    return cid if ok else None

"""The authorization code login's decisions (RFC 6749 §4.1, RFC 7636, RFC 9207), without I/O.

:func:`code_verifier`, :func:`random_value` and :func:`s256_challenge` make
the PKCE verifier, ``state`` and ``nonce`` from random bytes given as
arguments; :func:`build_authorization_url` writes the request to the
authorization endpoint; :func:`parse_redirect` judges the redirect's query
(``state``, ``error``, ``iss``) and gives the code; :func:`check_nonce`
compares an ID token's ``nonce`` claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from .errors import AccessDeniedError, AuthorizationError, ConfigurationError
from .tokens import Redacted

__all__ = [
    "MAX_VERIFIER_BYTES",
    "MIN_VERIFIER_BYTES",
    "RESERVED_PARAMS",
    "AuthorizationRequest",
    "build_authorization_url",
    "check_challenge_method",
    "check_nonce",
    "code_verifier",
    "id_token_claims",
    "parse_redirect",
    "random_value",
    "s256_challenge",
]

#: random bytes of a verifier: 32 make the shortest one (43 characters), 96 the
#: longest (128), the bounds of RFC 7636 §4.1
MIN_VERIFIER_BYTES = 32
MAX_VERIFIER_BYTES = 96
#: bytes of randomness in a ``state`` or ``nonce``
_MIN_VALUE_BYTES = 16
#: the parameters the login writes itself; ``extra_params`` may not set them
RESERVED_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_MAX_QUERY = 8192


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def code_verifier(random_bytes: bytes) -> SecretStr:
    """A PKCE code verifier (RFC 7636 §4.1) from 32 to 96 random bytes: 43 to
    128 characters of the unreserved set."""
    if not isinstance(random_bytes, bytes) or not (
        MIN_VERIFIER_BYTES <= len(random_bytes) <= MAX_VERIFIER_BYTES
    ):
        raise ConfigurationError(
            f"a code verifier needs {MIN_VERIFIER_BYTES} to {MAX_VERIFIER_BYTES} random bytes"
        )
    return SecretStr(_b64url(random_bytes))


def random_value(random_bytes: bytes) -> SecretStr:
    """A ``state`` or ``nonce`` from at least 16 random bytes (URL-safe text)."""
    if not isinstance(random_bytes, bytes) or len(random_bytes) < _MIN_VALUE_BYTES:
        raise ConfigurationError(f"a state or nonce needs at least {_MIN_VALUE_BYTES} random bytes")
    return SecretStr(_b64url(random_bytes))


def s256_challenge(verifier: SecretStr) -> str:
    """The ``S256`` code challenge of ``verifier`` (RFC 7636 §4.2)."""
    value = verifier.get_secret_value()
    if not 43 <= len(value) <= 128 or not set(value) <= _UNRESERVED:
        raise ConfigurationError("a code verifier is 43 to 128 characters of the unreserved set")
    return _b64url(hashlib.sha256(value.encode("ascii")).digest())


def check_challenge_method(method: object) -> str:
    """``S256``, the one method used; ``plain`` (or anything else) is refused."""
    if method != "S256":
        raise ConfigurationError(
            "only the S256 code challenge method is supported (plain sends the verifier itself)"
        )
    return method


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A started browser login: the URL to open and where the answer comes back.

    ``state`` is secret (never in a repr).
    """

    authorization_url: str
    redirect_uri: str
    state: SecretStr

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r})"


def build_authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: SecretStr,
    challenge: str,
    scope: str | None = None,
    nonce: SecretStr | None = None,
    extra_params: Mapping[str, str] | None = None,
) -> str:
    """The authorization request (RFC 6749 §4.1.1 with RFC 7636 §4.3): the
    endpoint's own query kept, the login's parameters added."""
    extra = dict(extra_params or {})
    clash = sorted(RESERVED_PARAMS & extra.keys())
    if clash:
        raise ConfigurationError(f"extra parameters may not set {', '.join(clash)}")
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state.get_secret_value(),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if scope:
        params["scope"] = scope
    if nonce is not None:
        params["nonce"] = nonce.get_secret_value()
    params.update(extra)
    parts = urlsplit(endpoint)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def _query(query: str | Mapping[str, str]) -> dict[str, str] | None:
    if isinstance(query, str):
        if len(query) > _MAX_QUERY:
            return None
        pairs = parse_qsl(query, keep_blank_values=True)
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            return None  # a repeated parameter (RFC 6749 §3.1): refused, not guessed
        return dict(pairs)
    return dict(query)


def parse_redirect(
    query: str | Mapping[str, str],
    *,
    state: SecretStr,
    issuer: str | None = None,
    require_iss: bool = False,
    login_url: str | None = None,
) -> SecretStr:
    """The authorization code from the redirect's query, or the typed error it
    is (raised): a missing or different ``state`` or ``iss`` is
    :class:`AuthorizationError`, ``error=access_denied`` is
    :class:`AccessDeniedError`, any other ``error=`` an
    :class:`AuthorizationError` with the server's code and sanitised text.
    ``iss`` (RFC 9207) is compared with ``issuer`` when the server sends it,
    and required when ``require_iss`` (the server's metadata says
    ``authorization_response_iss_parameter_supported``)."""
    fields = _query(query)
    if fields is None:
        raise AuthorizationError("the redirect's query is malformed", login_url=login_url)
    got = fields.get("state")
    if got is None or not hmac.compare_digest(
        got.encode("utf-8", "replace"), state.get_secret_value().encode()
    ):
        raise AuthorizationError(
            "the redirect's state does not match the login's", login_url=login_url
        )
    secrets = Redacted([state, *([fields["code"]] if fields.get("code") else [])])
    iss = fields.get("iss")
    if issuer is not None and (iss is not None or require_iss):
        if iss is None:
            raise AuthorizationError(
                "the redirect has no iss parameter, which the server promises", login_url=login_url
            )
        if iss.rstrip("/") != issuer.rstrip("/"):
            raise AuthorizationError(
                f"the redirect comes from issuer {secrets.scrub(iss, 200)!r}, not {issuer!r}",
                login_url=login_url,
            )
    error = fields.get("error")
    if error is not None:
        raw = fields.get("error_description")
        description = secrets.scrub(raw) if raw else None
        if error == "access_denied":
            raise AccessDeniedError(description)
        code = secrets.scrub(error, 64)
        raise AuthorizationError(
            f"the authorization server answered {code}",
            error=code,
            description=description,
            login_url=login_url,
        )
    code_value = fields.get("code")
    if not code_value:
        raise AuthorizationError("the redirect carries no code", login_url=login_url)
    return SecretStr(code_value)


def id_token_claims(id_token: SecretStr) -> dict[str, Any]:
    """The claims of an ID token, decoded *without* checking its signature:
    for comparing the ``nonce`` of a token read straight from the token
    endpoint over TLS (OpenID Connect Core §3.1.3.7), never to trust it more."""
    parts = id_token.get_secret_value().split(".")
    if len(parts) != 3:
        raise AuthorizationError("the ID token is not a JWT")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AuthorizationError("the ID token is not a JWT") from None
    if not isinstance(claims, dict):
        raise AuthorizationError("the ID token's claims are not a JSON object")
    return claims


def check_nonce(claims: Mapping[str, Any], nonce: SecretStr) -> None:
    """Refuse an ID token whose ``nonce`` claim is not the login's."""
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(
        got.encode("utf-8", "replace"), nonce.get_secret_value().encode()
    ):
        raise AuthorizationError("the ID token's nonce does not match the login's")


# The public names defined here show the module they are imported from.
for _public in (AuthorizationRequest,):
    _public.__module__ = "authpulse"
del _public

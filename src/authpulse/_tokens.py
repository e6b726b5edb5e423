"""Token sets and token responses: pure functions, no I/O, no clock reads."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import jwt
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from ._errors import ConfigurationError, OAuthError, TokenResponseError, TokenVerificationError

__all__ = [
    "MAX_EXPIRES_IN",
    "JWTVerifier",
    "TokenSet",
    "estimate_skew",
    "parse_token_response",
    "unverified_claims",
]

#: Longest lifetime accepted from ``expires_in`` (one year). A longer one is
#: treated as a broken server rather than a token that "never expires".
MAX_EXPIRES_IN = 366 * 24 * 3600

_DESCRIPTION_LIMIT = 200
_REDACTED = "[redacted]"

ExpirySource = Literal["expires_in", "jwt", "default"]


class TokenSet(BaseModel):
    """One answer of a token endpoint.

    All times are seconds since the epoch on the *IdP's* clock (local time
    plus the estimated skew). Tokens are :class:`pydantic.SecretStr`: they
    print as ``'**********'`` and are revealed only by
    ``get_secret_value()``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr
    token_type: str = "Bearer"
    refresh_token: SecretStr | None = None
    id_token: SecretStr | None = None
    scope: str | None = None
    issued_at: float
    expires_at: float
    expires_at_source: ExpirySource = "expires_in"

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry (at least 0)."""
        return max(self.expires_at - self.issued_at, 0.0)

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes as a set."""
        return frozenset(self.scope.split()) if self.scope else frozenset()

    def with_refresh_token(self, refresh_token: SecretStr | None) -> TokenSet:
        """A copy carrying ``refresh_token`` (used when a refresh answer omits one)."""
        return self.model_copy(update={"refresh_token": refresh_token})


# --------------------------------------------------------------------------- JWT


def unverified_claims(token: str) -> dict[str, Any] | None:
    """Claims of a JWT *without* verifying it, or ``None`` if it is not a JWT.

    Used only for scheduling (``exp``, ``iat``, ``nbf``), never for trust.
    """
    if token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def _num_claim(claims: Mapping[str, Any] | None, name: str) -> float | None:
    if not claims:
        return None
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)  # an int too large for a float raises OverflowError
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class JWTVerifier:
    """Verifies JWT access or id tokens against a JWKS.

    ``algorithms`` is an allow-list; ``none`` is refused whatever is passed.
    ``jwks_client`` is a :class:`jwt.PyJWKClient` (it does its own HTTP);
    pass a ``key`` instead for a fixed key.
    """

    def __init__(
        self,
        *,
        algorithms: Iterable[str] = ("RS256", "ES256", "PS256", "EdDSA"),
        jwks_url: str | None = None,
        jwks_client: jwt.PyJWKClient | None = None,
        key: Any = None,
        issuer: str | None = None,
        audience: str | Iterable[str] | None = None,
        leeway: float = 30.0,
    ) -> None:
        algs = list(algorithms)
        if any(a.lower() == "none" for a in algs):
            raise ConfigurationError("the 'none' algorithm can never be allowed")
        if not algs:
            raise ConfigurationError("at least one algorithm must be allowed")
        if sum(x is not None for x in (jwks_url, jwks_client, key)) != 1:
            raise ConfigurationError("give exactly one of jwks_url, jwks_client or key")
        self.algorithms = tuple(algs)
        self._jwks = jwks_client or (jwt.PyJWKClient(jwks_url) if jwks_url else None)
        self._key = key
        self.issuer = issuer
        self.audience = (
            audience if audience is None or isinstance(audience, str) else list(audience)
        )
        self.leeway = leeway

    def verify(self, token: str, *, now: float) -> dict[str, Any]:
        """Verify ``token`` at time ``now``; return its claims or raise
        :class:`TokenVerificationError` (the message never contains the token)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenVerificationError("token is not a well-formed JWT") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenVerificationError(f"JWT algorithm {alg!r} is not allowed")
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(self.algorithms),
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self.audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenVerificationError(f"JWT verification failed: {type(exc).__name__}") from exc
        exp = _num_claim(claims, "exp")
        nbf = _num_claim(claims, "nbf")
        if exp is not None and now > exp + self.leeway:
            raise TokenVerificationError("JWT has expired")
        if nbf is not None and now + self.leeway < nbf:
            raise TokenVerificationError("JWT is not valid yet (nbf)")
        return claims


# ---------------------------------------------------------------- token responses


def estimate_skew(
    *,
    local_now: float,
    date_header: str | None = None,
    iat: float | None = None,
    resolution: float = 2.0,
) -> float:
    """Estimate ``IdP clock - local clock`` in seconds.

    Prefers the JWT ``iat`` (sub-second) over the HTTP ``Date`` header (one
    second resolution). Differences smaller than ``resolution`` are noise and
    give 0.
    """
    server: float | None = iat
    if server is None and date_header:
        try:
            server = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            server = None
    if server is None:
        return 0.0
    skew = server - local_now
    return skew if abs(skew) >= resolution else 0.0


def _as_sent(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets, plus the form-encoded and percent-encoded forms a request
    carried them in (a server that echoes the request quotes those)."""
    out: dict[str, None] = {}
    for s in secrets:
        for form in (s, quote_plus(s), quote(s, safe="")):
            out[form] = None
    return tuple(out)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, _REDACTED)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    if len(text) > _DESCRIPTION_LIMIT:
        text = text[: _DESCRIPTION_LIMIT - 1] + "…"
    return text


def _optional_str(body: Mapping[str, Any], name: str, status: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenResponseError(
            f"token response field {name!r} must be a string, got {type(value).__name__}",
            status_code=status,
        )
    return value


def _parse_expires_in(value: Any, status: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        # Some servers send "3600"; accept a plain ASCII decimal integer only
        # (str.isdigit() alone also accepts "²", which int() refuses).
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise TokenResponseError(
                "token response field 'expires_in' must be a number of seconds, got a "
                "non-numeric string",
                status_code=status,
            )
        # float() has no digit limit (int() refuses more than 4300 digits).
        value = int(text) if len(text) <= 18 else float(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenResponseError(
            "token response field 'expires_in' must be a number of seconds, got "
            f"{type(value).__name__}",
            status_code=status,
        )
    # Compare ints directly: math.isfinite() overflows on a huge JSON integer.
    if (isinstance(value, float) and not math.isfinite(value)) or value <= 0:
        raise TokenResponseError(
            "token response field 'expires_in' must be a positive number of seconds",
            status_code=status,
        )
    if value > MAX_EXPIRES_IN:
        raise TokenResponseError(
            f"token response field 'expires_in' is absurdly large (more than {MAX_EXPIRES_IN} s)",
            status_code=status,
        )
    return float(value)


def parse_token_response(
    status_code: int,
    content: bytes,
    *,
    now: float,
    content_type: str | None = None,
    default_lifetime: float = 3600.0,
    secrets: Iterable[str] = (),
) -> TokenSet:
    """Turn a token endpoint answer into a :class:`TokenSet` (RFC 6749 §5.1).

    ``now`` is the time of receipt on the IdP's clock (local time + skew).
    An RFC 6749 §5.2 error body raises :class:`OAuthError`; anything else
    that is not a valid success raises :class:`TokenResponseError`. The
    messages never contain a token; ``secrets`` (the client secret, the
    refresh token sent) are scrubbed from server-provided descriptions.

    Expiry comes from ``expires_in``, else the access token's JWT ``exp``,
    else ``default_lifetime``: a token never "never expires".
    """
    secrets = _as_sent(secrets)
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # deeply nested JSON recurses
        body = None
        ctype = (content_type or "unknown").split(";")[0].strip() or "unknown"
        ctype = _scrub(ctype, secrets)[:64]  # server-controlled text
        raise TokenResponseError(
            f"token endpoint answered HTTP {status_code} with a body that is not JSON "
            f"(content-type {ctype!r}, {len(content)} bytes)",
            status_code=status_code,
        ) from None
    if not isinstance(body, dict):
        what = "an empty body" if body is None else f"JSON {type(body).__name__}"
        raise TokenResponseError(
            f"token endpoint answered HTTP {status_code} with {what}, expected a JSON object",
            status_code=status_code,
        )

    # A server that echoes a token in its error text must not leak it either.
    echoed = (body.get(k) for k in ("access_token", "refresh_token", "id_token"))
    secrets += tuple(v for v in echoed if isinstance(v, str))
    error = body.get("error")
    if error is not None or status_code >= 400:
        if not isinstance(error, str) or not error:
            raise TokenResponseError(
                f"token endpoint answered HTTP {status_code} without a valid 'error' code",
                status_code=status_code,
            )
        desc = body.get("error_description")
        uri = body.get("error_uri")
        raise OAuthError(
            _scrub(error, secrets)[:64],
            _scrub(desc, secrets) if isinstance(desc, str) and desc else None,
            status_code=status_code,
            uri=uri if isinstance(uri, str) else None,
        )

    access = body.get("access_token")
    if access is None:
        raise TokenResponseError("token response has no 'access_token'", status_code=status_code)
    if not isinstance(access, str) or not access:
        raise TokenResponseError(
            "token response field 'access_token' must be a non-empty string",
            status_code=status_code,
        )
    # Both end up in an Authorization header: RFC 6749 A.12 (access_token is
    # 1*VSCHAR) and A.13 (token_type has no spaces). Anything else would fail
    # later, in httpx, with an untyped error whose repr quotes the token.
    if not all(" " <= ch <= "~" for ch in access):
        raise TokenResponseError(
            "token response field 'access_token' has characters outside printable ASCII",
            status_code=status_code,
        )
    token_type = _optional_str(body, "token_type", status_code) or "Bearer"
    if not all("!" <= ch <= "~" for ch in token_type):
        raise TokenResponseError(
            "token response field 'token_type' has spaces or characters outside printable ASCII",
            status_code=status_code,
        )
    refresh = _optional_str(body, "refresh_token", status_code)
    id_token = _optional_str(body, "id_token", status_code)
    scope = _optional_str(body, "scope", status_code)
    expires_in = _parse_expires_in(body.get("expires_in"), status_code)

    source: ExpirySource
    if expires_in is not None:
        expires_at, source = now + expires_in, "expires_in"
    else:
        exp = _num_claim(unverified_claims(access), "exp")
        if exp is not None:
            # the same bound as expires_in: a JWT does not make a token immortal
            expires_at, source = min(exp, now + MAX_EXPIRES_IN), "jwt"
        else:
            expires_at, source = now + default_lifetime, "default"

    return TokenSet(
        access_token=SecretStr(access),
        token_type="Bearer" if token_type.lower() == "bearer" else token_type,
        refresh_token=SecretStr(refresh) if refresh else None,
        id_token=SecretStr(id_token) if id_token else None,
        scope=scope,
        issued_at=now,
        expires_at=expires_at,
        expires_at_source=source,
    )

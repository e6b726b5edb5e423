"""Token sets and token responses: pure functions, no I/O, no clock reads."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import jwt
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from .errors import (
    OAuthError,
    TokenError,
    TokenResponseError,
)

__all__ = [
    "MAX_ACCESS_TOKEN_LENGTH",
    "MAX_EXPIRES_IN",
    "TokenSet",
    "estimate_skew",
    "parse_token_response",
    "unverified_claims",
]

#: Longest lifetime accepted from ``expires_in`` (one year). A longer one is
#: treated as a broken server rather than a token that "never expires".
MAX_EXPIRES_IN = 366 * 24 * 3600

#: Longest access token accepted (16 KiB): a longer one is a broken server
#: (or an attack on the headers of every API request that would carry it).
MAX_ACCESS_TOKEN_LENGTH = 16 * 1024

_DESCRIPTION_LIMIT = 200
#: RFC 6750 §2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_REDACTED = "[redacted]"

ExpirySource = Literal["expires_in", "jwt", "default"]

#: RFC 8693 §3: an OAuth 2.0 access token, as a token exchange names it
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: RFC 8693 §2.2.1: the ``token_type`` of an issued token that is not an access token
NOT_APPLICABLE = "N_A"


class TokenSet(BaseModel):
    """One answer of a token endpoint.

    All times are seconds since the epoch on the *IdP's* clock (local time
    plus the estimated skew). Tokens are :class:`pydantic.SecretStr`: they
    print as ``'**********'`` and are revealed only by
    ``get_secret_value()``. ``token_type`` is ``"Bearer"`` (given in any
    case); another type is refused with a validation error, as the token
    endpoint parser refuses it (RFC 6749 §7.1). The one exception is a token
    exchange's (RFC 8693 §2.2.1): ``issued_token_type`` names what was
    issued, and a token that is not an access token (a SAML assertion, an ID
    token) has the type ``"N_A"``.

    .. versionchanged:: unreleased
       Token types other than Bearer are refused; ``issued_token_type``.
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
    #: when the refresh token expires (the IdP's ``refresh_expires_in`` or
    #: ``refresh_token_expires_in``), ``None`` when the IdP does not say
    refresh_expires_at: float | None = None
    #: what a token exchange issued (RFC 8693 §3), ``None`` for the other grants
    issued_token_type: str | None = None

    @field_validator("token_type")
    @classmethod
    def _understood_type(cls, value: str) -> str:
        # the token endpoint parser's rule (RFC 6749 §7.1), so a stored or
        # hand-made set of another type is refused like an answer carrying one
        if value == NOT_APPLICABLE:
            return value  # checked against issued_token_type below
        scheme = check_token_type(value)
        if isinstance(scheme, TokenResponseError):
            raise ValueError("only Bearer tokens are supported")  # noqa: TRY004 - pydantic wants ValueError
        return scheme

    @field_validator("issued_at", "expires_at", "refresh_expires_at")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    @model_validator(mode="after")
    def _not_applicable_only_if_issued(self) -> TokenSet:
        if self.token_type == NOT_APPLICABLE and self.issued_token_type in (
            None,
            ACCESS_TOKEN_TYPE,
        ):
            raise ValueError("token_type 'N_A' is only for a token exchange's non-access token")
        return self

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry (at least 0)."""
        return max(self.expires_at - self.issued_at, 0.0)

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes as a set."""
        return frozenset(self.scope.split()) if self.scope else frozenset()

    def with_refresh_token(
        self, refresh_token: SecretStr | None, refresh_expires_at: float | None = None
    ) -> TokenSet:
        """A copy carrying ``refresh_token`` (used when a refresh answer omits one)
        and ``refresh_expires_at`` unless this set says when its refresh token expires."""
        expiry = self.refresh_expires_at
        return self.model_copy(
            update={
                "refresh_token": refresh_token,
                "refresh_expires_at": refresh_expires_at if expiry is None else expiry,
            }
        )


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


class Redacted:
    """Secrets kept for scrubbing, in every form a request carried them.

    The raw values, their form-encoded and percent-encoded forms (a server
    that echoes the request quotes those). Its ``repr`` shows only how many
    there are, so a frame holding one never prints a secret.
    """

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[str | SecretStr] = ()) -> None:
        out: dict[str, None] = {}
        for item in secrets:
            s = item.get_secret_value() if isinstance(item, SecretStr) else item
            if not isinstance(s, str) or len(s) < 4:
                continue
            for form in (s, quote_plus(s), quote(s, safe="")):
                out[form] = None
        self._forms: tuple[str, ...] = tuple(out)

    def __repr__(self) -> str:
        return f"<Redacted: {len(self._forms)} forms>"

    def __add__(self, other: Iterable[str | SecretStr]) -> Redacted:
        joined = Redacted(other)
        joined._forms = tuple(dict.fromkeys(self._forms + joined._forms))
        return joined

    def scrub(self, text: str, limit: int = _DESCRIPTION_LIMIT) -> str:
        """``text`` without any of the secrets, printable, at most ``limit`` characters."""
        for s in self._forms:
            text = text.replace(s, _REDACTED)
        text = "".join(ch if ch.isprintable() else " " for ch in text)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return text


def _as_sent(secrets: Iterable[str | SecretStr]) -> Redacted:
    return secrets if isinstance(secrets, Redacted) else Redacted(secrets)


def _scrub(text: str, secrets: Iterable[str | SecretStr]) -> str:
    return _as_sent(secrets).scrub(text)


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


def _parse_expires_in(value: Any, status: int, name: str = "expires_in") -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        # Some servers send "3600"; accept a plain ASCII decimal integer only
        # (str.isdigit() alone also accepts "²", which int() refuses).
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise TokenResponseError(
                f"token response field {name!r} must be a number of seconds, got a "
                "non-numeric string",
                status_code=status,
            )
        # float() has no digit limit (int() refuses more than 4300 digits).
        value = int(text) if len(text) <= 18 else float(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenResponseError(
            f"token response field {name!r} must be a number of seconds, got "
            f"{type(value).__name__}",
            status_code=status,
        )
    # Compare ints directly: math.isfinite() overflows on a huge JSON integer.
    if (isinstance(value, float) and not math.isfinite(value)) or value <= 0:
        raise TokenResponseError(
            f"token response field {name!r} must be a positive number of seconds",
            status_code=status,
        )
    if value > MAX_EXPIRES_IN:
        raise TokenResponseError(
            f"token response field {name!r} is absurdly large (more than {MAX_EXPIRES_IN} s)",
            status_code=status,
        )
    return float(value)


def check_token_type(token_type: str, status: int | None = None) -> str | TokenResponseError:
    """The scheme to send a token of ``token_type`` with (``"Bearer"``), or the
    error refusing it: RFC 6749 §7.1 — a client must not use a token whose
    type it does not understand. Only Bearer (RFC 6750) is understood."""
    if token_type.lower() == "bearer":
        return "Bearer"
    if token_type.lower() == "dpop":
        return TokenResponseError(
            "token response field 'token_type' is 'DPoP': DPoP-bound tokens are not "
            "supported yet; configure the client at the IdP for Bearer tokens",
            status_code=status,
        )
    shown = token_type if len(token_type) <= 32 else token_type[:31] + "…"
    return TokenResponseError(
        f"token response field 'token_type' is {shown!r}: only Bearer tokens are "
        "supported (RFC 6749 §7.1: a token of a type the client does not understand "
        "must not be used)",
        status_code=status,
    )


def check_access_token(access: str, status: int | None = None) -> TokenResponseError | None:
    """``None`` if ``access`` is a usable Bearer token, else the error (which
    never quotes the token): RFC 6750 §2.1 b64token syntax, at most
    :data:`MAX_ACCESS_TOKEN_LENGTH` characters."""
    if len(access) > MAX_ACCESS_TOKEN_LENGTH:
        return TokenResponseError(
            f"token response field 'access_token' is longer than {MAX_ACCESS_TOKEN_LENGTH} "
            "characters",
            status_code=status,
        )
    if _B64TOKEN.fullmatch(access) is None:
        return TokenResponseError(
            "token response field 'access_token' is not a valid Bearer token (RFC 6750 "
            "b64token: letters, digits and -._~+/ with optional trailing '=')",
            status_code=status,
        )
    return None


def parse_token_response(
    status_code: int,
    content: bytes,
    *,
    now: float,
    content_type: str | None = None,
    default_lifetime: float = 3600.0,
    secrets: Iterable[str | SecretStr] = (),
) -> TokenSet:
    """Turn a token endpoint answer into a :class:`TokenSet` (RFC 6749 §5.1).

    ``now`` is the time of receipt on the IdP's clock (local time + skew).
    An RFC 6749 §5.2 error body raises :class:`OAuthError`; anything else
    that is not a valid success raises :class:`TokenResponseError`: a body
    that is not a JSON object, a missing or malformed ``access_token``
    (RFC 6750 b64token, at most :data:`MAX_ACCESS_TOKEN_LENGTH`), a
    ``token_type`` other than Bearer, a bad ``expires_in``. The messages
    never contain a token; ``secrets`` (the client secret, the refresh token
    sent) are scrubbed from server-provided text, and the error is raised
    from a frame that holds neither the body nor the secrets.

    Expiry comes from ``expires_in``, else the access token's JWT ``exp``,
    else ``default_lifetime``: a token never "never expires".
    """
    outcome = token_response_outcome(
        status_code,
        content,
        now=now,
        content_type=content_type,
        default_lifetime=default_lifetime,
        secrets=secrets,
    )
    del content, secrets
    if isinstance(outcome, TokenError):
        raise outcome
    return outcome


def token_response_outcome(
    status_code: int,
    content: bytes,
    *,
    now: float,
    content_type: str | None = None,
    default_lifetime: float = 3600.0,
    secrets: Iterable[str | SecretStr] = (),
) -> TokenSet | TokenError:
    """:func:`parse_token_response`, with the error returned instead of raised
    (without a traceback): the caller raises it where no secret is in scope."""
    try:
        return _parse(status_code, content, now, content_type, default_lifetime, _as_sent(secrets))
    except TokenResponseError as exc:  # from the field helpers
        return exc.with_traceback(None)


def _parse(
    status_code: int,
    content: bytes,
    now: float,
    content_type: str | None,
    default_lifetime: float,
    secrets: Redacted,
) -> TokenSet | TokenError:
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # deeply nested JSON recurses
        ctype = (content_type or "unknown").split(";")[0].strip() or "unknown"
        ctype = secrets.scrub(ctype, 64)  # server-controlled text
        return TokenResponseError(
            f"token endpoint answered HTTP {status_code} with a body that is not JSON "
            f"(content-type {ctype!r}, {len(content)} bytes)",
            status_code=status_code,
        )
    if not isinstance(body, dict):
        what = "an empty body" if body is None else f"JSON {type(body).__name__}"
        return TokenResponseError(
            f"token endpoint answered HTTP {status_code} with {what}, expected a JSON object",
            status_code=status_code,
        )

    # A server that echoes a token in its error text must not leak it either.
    echoed = [body.get(k) for k in ("access_token", "refresh_token", "id_token")]
    secrets += [v for v in echoed if isinstance(v, str)]
    error = body.get("error")
    if error is not None or status_code >= 400:
        if not isinstance(error, str) or not error:
            return TokenResponseError(
                f"token endpoint answered HTTP {status_code} without a valid 'error' code",
                status_code=status_code,
            )
        desc = body.get("error_description")
        uri = body.get("error_uri")
        return OAuthError(
            secrets.scrub(error, 64),
            secrets.scrub(desc) if isinstance(desc, str) and desc else None,
            status_code=status_code,
            uri=secrets.scrub(uri, 512) if isinstance(uri, str) and uri else None,
        )

    access = body.get("access_token")
    if access is None:
        return TokenResponseError("token response has no 'access_token'", status_code=status_code)
    if not isinstance(access, str) or not access:
        return TokenResponseError(
            "token response field 'access_token' must be a non-empty string",
            status_code=status_code,
        )
    # It ends up in an Authorization header: RFC 6750 §2.1 (b64token). Anything
    # else would fail later, in httpx, with an untyped error whose repr quotes it.
    bad = check_access_token(access, status_code)
    if bad is not None:
        return bad
    token_type = _optional_str(body, "token_type", status_code) or "Bearer"
    issued = _optional_str(body, "issued_token_type", status_code)
    if token_type == NOT_APPLICABLE and issued not in (None, ACCESS_TOKEN_TYPE):
        scheme: str | TokenError = NOT_APPLICABLE  # RFC 8693 §2.2.1: not an access token
    else:
        scheme = check_token_type(secrets.scrub(token_type, 64), status_code)
    if isinstance(scheme, TokenError):
        return scheme
    refresh = _optional_str(body, "refresh_token", status_code)
    id_token = _optional_str(body, "id_token", status_code)
    scope = _optional_str(body, "scope", status_code)
    expires_in = _parse_expires_in(body.get("expires_in"), status_code)
    refresh_in = _refresh_expires_in(body, status_code)

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
        token_type=scheme,
        refresh_token=SecretStr(refresh) if refresh else None,
        id_token=SecretStr(id_token) if id_token else None,
        scope=scope,
        issued_at=now,
        expires_at=expires_at,
        expires_at_source=source,
        refresh_expires_at=None if refresh_in is None or not refresh else now + refresh_in,
        issued_token_type=secrets.scrub(issued, 256) if issued else None,
    )


def _refresh_expires_in(body: Mapping[str, Any], status: int) -> float | None:
    """The refresh token's lifetime: ``refresh_expires_in`` (Keycloak) or
    ``refresh_token_expires_in`` (Entra ID, GitHub), seconds; ``None`` if absent.
    0 is "does not expire" (Keycloak's offline tokens)."""
    for name in ("refresh_expires_in", "refresh_token_expires_in"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, bool) and value in (0, "0"):
            return None
        return _parse_expires_in(value, status, name)
    return None


# The public names defined here show the module they are imported from.
for _public in (
    TokenSet,
    parse_token_response,
):
    _public.__module__ = "authpulse"
del _public

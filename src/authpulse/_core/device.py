"""The device authorization grant's decisions (RFC 8628), without I/O.

:func:`parse_device_authorization` turns the device authorization
endpoint's answer into a :class:`DeviceAuthorization`; :func:`poll_step`
decides what one answer of the token endpoint means for the polling:
wait and ask again (``authorization_pending``, ``slow_down`` with the
interval 5 s longer, a transient failure), stop with a typed error
(``access_denied``, ``expired_token``, any other error), or done (a token
set). Time comes in as arguments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from .errors import (
    AccessDeniedError,
    DeviceCodeExpiredError,
    ErrorClass,
    OAuthError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
)
from .tokens import Redacted, TokenSet

__all__ = [
    "DEFAULT_INTERVAL",
    "DEVICE_CODE_GRANT",
    "SLOW_DOWN_STEP",
    "DeviceAuthorization",
    "Granted",
    "PollAgain",
    "parse_device_authorization",
    "poll_step",
]

#: the grant type of the token requests that poll (RFC 8628 §3.4)
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: seconds between polls when the server names no interval (RFC 8628 §3.2)
DEFAULT_INTERVAL = 5.0
#: seconds added to the interval by each ``slow_down`` (RFC 8628 §3.5)
SLOW_DOWN_STEP = 5.0
_TRANSIENT = frozenset(c for c in ErrorClass if c.transient)
#: the longest device code lifetime and poll interval believed (a day)
_MAX_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """The device authorization endpoint's answer (RFC 8628 §3.2).

    ``device_code`` is secret (it is never shown in a repr); ``expires_at``
    is local wall-clock time; ``interval`` is seconds between polls.
    """

    device_code: SecretStr
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, expires_at={self.expires_at!r}, "
            f"interval={self.interval!r})"
        )


def _bad(what: str, status: int) -> TokenResponseError:
    return TokenResponseError(f"device authorization response {what}", status_code=status)


def _text(
    body: dict[str, Any], name: str, status: int, *, required: bool
) -> str | TokenError | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        return _bad(f"field {name!r} must be a non-empty string", status)
    return value


def _seconds(value: Any, name: str, status: int, default: float | None) -> float | TokenError:
    if value is None and default is not None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return _bad(f"field {name!r} must be a number of seconds", status)
    if value <= 0 or value > _MAX_SECONDS:
        return _bad(f"field {name!r} is out of range", status)
    return float(value)


def parse_device_authorization(
    status: int,
    content: bytes,
    *,
    now: float,
    secrets: Redacted | None = None,
) -> DeviceAuthorization | TokenError:
    """The device authorization answer, or the typed error it is (returned,
    not raised). ``now`` is the local time of receipt; ``secrets`` (the
    client secret sent) are scrubbed from an error's server text."""
    redacted = secrets if secrets is not None else Redacted()
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _bad(f"(HTTP {status}) is not JSON", status)
    if not isinstance(body, dict):
        return _bad(f"(HTTP {status}) is not a JSON object", status)
    if isinstance(body.get("device_code"), str):
        redacted += [body["device_code"]]
    error = body.get("error")
    if error is not None or status >= 400:
        if not isinstance(error, str) or not error:
            return _bad(f"(HTTP {status}) has no valid 'error' code", status)
        desc = body.get("error_description")
        return OAuthError(
            redacted.scrub(error, 64),
            redacted.scrub(desc) if isinstance(desc, str) and desc else None,
            status_code=status,
        )
    fields: dict[str, Any] = {}
    for name, required in (
        ("device_code", True),
        ("user_code", True),
        ("verification_uri", True),
        ("verification_uri_complete", False),
    ):
        value = _text(body, name, status, required=required)
        if isinstance(value, TokenError):
            return value
        fields[name] = value
    expires_in = _seconds(body.get("expires_in"), "expires_in", status, None)
    if isinstance(expires_in, TokenError):
        return expires_in
    interval = _seconds(body.get("interval"), "interval", status, DEFAULT_INTERVAL)
    if isinstance(interval, TokenError):
        return interval
    return DeviceAuthorization(
        device_code=SecretStr(fields["device_code"]),
        user_code=fields["user_code"],
        verification_uri=fields["verification_uri"],
        verification_uri_complete=fields["verification_uri_complete"],
        expires_at=now + expires_in,
        interval=interval,
    )


@dataclass(frozen=True, slots=True)
class PollAgain:
    """Wait ``interval`` seconds and poll again; ``failed`` when the answer was
    a transient failure (network, 5xx, throttling) rather than a pending one."""

    interval: float
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Granted:
    """The user signed in: the token set."""

    token: TokenSet


def poll_step(
    outcome: TokenSet | TokenError, interval: float, *, login_url: str | None = None
) -> PollAgain | Granted | TokenError:
    """What one token endpoint answer means for the polling (RFC 8628 §3.5):
    poll again (at ``interval``, 5 s more after ``slow_down``, at least a
    server's ``Retry-After`` when throttled), the token set, or the error
    that ends the login (returned, for the caller to raise).
    ``login_url`` is where a :class:`DeviceCodeExpiredError` sends the user."""
    if isinstance(outcome, TokenSet):
        return Granted(outcome)
    if isinstance(outcome, OAuthError):
        if outcome.error == "authorization_pending":
            return PollAgain(interval)
        if outcome.error == "slow_down":
            return PollAgain(interval + SLOW_DOWN_STEP)
        if outcome.error == "access_denied":
            return AccessDeniedError(outcome.description, status_code=outcome.status_code)
        if outcome.error == "expired_token":
            return DeviceCodeExpiredError(login_url)
        return outcome
    if isinstance(outcome, TokenEndpointError) and outcome.error_class in _TRANSIENT:
        wait = max(interval, min(outcome.retry_after or 0.0, _MAX_SECONDS))
        return PollAgain(wait, failed=True)
    return outcome


# The public names defined here show the module they are imported from.
for _public in (DeviceAuthorization,):
    _public.__module__ = "authpulse"
del _public

"""Retry decisions: pure functions of the attempt, the answer and ``now``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .errors import ConfigurationError, ErrorClass

__all__ = [
    "MAX_TOKEN_RESPONSE_BYTES",
    "TokenRetry",
    "backoff",
    "classify_status",
    "parse_retry_after",
]


#: the default :attr:`TokenRetry.max_response_bytes` (1 MiB)
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TokenRetry:
    """How token endpoint calls are made and retried.

    Transient failures (connect errors, timeouts, 5xx, 429 / 503 with
    ``Retry-After``) are retried with full-jitter exponential backoff,
    ``Retry-After`` honoured; OAuth errors such as ``invalid_grant`` never
    are. ``deadline`` bounds the whole call, answers' bodies included:
    every attempt's timeouts and every sleep fit inside it, and the body is
    read against it (see ``docs/resilience.md`` for the exact bound). With
    a shared store, the store calls of a refresh get the same deadline, on
    top of the IdP's (``docs/stores.md``).

    The defaults let the retries use the deadline: up to 20 attempts with
    backoff from 0.5 s growing to 4 s ride out an IdP restart of 20 s or
    more, and the deadline (30 s) ends the call first.

    ``max_response_bytes`` caps a token endpoint answer's body (after
    decompression, enforced while it is read): a bigger one is refused
    with a :class:`~authpulse.TokenResponseError` and not retried.

    .. versionchanged:: unreleased
       ``max_response_bytes``; defaults sized to the deadline (were 5
       attempts from 0.25 s to 8 s); the deadline also bounds store calls.
    """

    attempts: int = 20
    deadline: float = 30.0
    attempt_timeout: float = 10.0
    backoff_base: float = 0.5
    backoff_max: float = 4.0
    max_response_bytes: int = MAX_TOKEN_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise ConfigurationError("TokenRetry.attempts must be an integer of at least 1")
        for name in ("deadline", "attempt_timeout", "backoff_base", "backoff_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (
                isinstance(v, int | float) and math.isfinite(v) and v > 0
            ):
                raise ConfigurationError(f"TokenRetry.{name} must be a positive number")
        limit = self.max_response_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1024:
            raise ConfigurationError(
                "TokenRetry.max_response_bytes must be an integer of at least 1024"
            )


def classify_status(
    status_code: int, headers: Mapping[str, str] | None = None
) -> ErrorClass | None:
    """The error class of an HTTP status, or ``None`` for success (< 400)."""
    if status_code < 400:
        return None
    if status_code == 429:
        return ErrorClass.THROTTLED
    if status_code == 503 and headers is not None and "retry-after" in {k.lower() for k in headers}:
        return ErrorClass.THROTTLED
    if status_code >= 500:
        return ErrorClass.SERVER
    if status_code in (401, 403):
        return ErrorClass.AUTH
    return ErrorClass.CLIENT


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value.strip()).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_retry_after(value: str | None, *, now: float, date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date).

    ``now`` is wall-clock time. ``date`` is the answer's ``Date`` header: when
    it parses, an HTTP-date ``Retry-After`` is measured from it instead of
    ``now`` (both are the server's clock), so a server whose clock is off
    ours is still waited for exactly as long as it asked. Unparseable values
    give ``None``; dates in the past give 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²"; float() never overflows to an error
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    server_now = _http_date(date) if date else None
    return max(when - (now if server_now is None else server_now), 0.0)


def backoff(attempt: int, *, base: float, cap: float, u: float) -> float:
    """Full-jitter exponential backoff: ``u × min(cap, base × 2^(attempt-1))``."""
    exp = min(max(attempt - 1, 0), 60)
    return min(max(u, 0.0), 1.0) * min(cap, base * (2.0**exp))


# The public names defined here show the module they are imported from.
for _public in (TokenRetry,):
    _public.__module__ = "authpulse"
del _public

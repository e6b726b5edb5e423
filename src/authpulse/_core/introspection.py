"""What an introspection endpoint (RFC 7662) said of a token: the answer's
fields, read without I/O."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .errors import IntrospectionError

__all__ = ["Introspection", "parse_introspection"]


@dataclass(frozen=True, slots=True)
class Introspection:
    """The IdP's verdict on one access token (RFC 7662 §2.2).

    ``active`` is the only field every server sends; ``exp`` (seconds since
    the epoch, the IdP's clock), ``client_id``, ``scope`` and ``token_type``
    are ``None`` when absent or of the wrong type.

    .. versionadded:: unreleased
    """

    active: bool
    exp: float | None = None
    client_id: str | None = None
    scope: str | None = None
    token_type: str | None = None


def _str(body: dict[str, object], name: str) -> str | None:
    value = body.get(name)
    return value[:256] if isinstance(value, str) else None


def parse_introspection(status: int, content: bytes, *, endpoint: str) -> Introspection:
    """The verdict in an answer, or :class:`IntrospectionError` naming what is
    wrong (never the body: it may echo the token)."""
    if status != 200:
        raise IntrospectionError(
            f"introspection endpoint {endpoint} answered HTTP {status}",
            status_code=status,
            endpoint=endpoint,
        )
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
        raise IntrospectionError(
            f"introspection endpoint {endpoint} answered without a boolean 'active'",
            status_code=status,
            endpoint=endpoint,
        )
    exp = body.get("exp")
    ok_exp = isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp)
    return Introspection(
        active=body["active"],
        exp=float(exp) if ok_exp else None,  # type: ignore[arg-type]
        client_id=_str(body, "client_id"),
        scope=_str(body, "scope"),
        token_type=_str(body, "token_type"),
    )


# The public names defined here show the module they are imported from.
for _public in (Introspection,):
    _public.__module__ = "authpulse"
del _public

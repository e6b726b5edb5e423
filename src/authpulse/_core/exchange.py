"""Token exchange (RFC 8693): the request's form and the answer's checks.
Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .errors import ConfigurationError, TokenResponseError
from .tokens import ACCESS_TOKEN_TYPE, NOT_APPLICABLE, TokenSet

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "TOKEN_EXCHANGE_GRANT",
    "TOKEN_TYPES",
    "check_exchange_answer",
    "check_targets",
    "check_token_type_uri",
    "exchange_form",
]

#: the grant type of a token exchange (RFC 8693 §2.1)
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"

#: the token type identifiers RFC 8693 §3 registers
TOKEN_TYPES = frozenset(
    {
        ACCESS_TOKEN_TYPE,
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:saml1",
        "urn:ietf:params:oauth:token-type:saml2",
        "urn:ietf:params:oauth:token-type:jwt",
    }
)


def _is_absolute_uri(value: str) -> bool:
    if not value or value != value.strip() or any(not ch.isprintable() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    scheme = parts.scheme
    return bool(scheme) and scheme[0].isalpha() and bool(parts.netloc or parts.path)


def check_token_type_uri(value: object, what: str) -> str:
    """``value`` if it is a token type identifier: an absolute URI (RFC 8693
    §3), such as ``urn:ietf:params:oauth:token-type:jwt``; else a
    :class:`ConfigurationError` naming ``what``."""
    if not isinstance(value, str) or not _is_absolute_uri(value):
        raise ConfigurationError(
            f"{what} must be a token type identifier, an absolute URI such as {ACCESS_TOKEN_TYPE!r}"
        )
    return value


def check_targets(value: object, what: str, *, uri: bool) -> tuple[str, ...]:
    """One target or several (``resource``, ``audience``) as a tuple of non-empty
    strings; with ``uri``, each an absolute URI without a fragment (RFC 8707 §2)."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ConfigurationError(f"{what} must be a string or a list of strings")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{what} must be a non-empty string or a list of them")
        if uri and (not _is_absolute_uri(item) or "#" in item):
            raise ConfigurationError(f"{what} must be an absolute URI without a fragment")
        out.append(item)
    return tuple(dict.fromkeys(out))


def exchange_form(
    *,
    subject_token: str,
    subject_token_type: str,
    actor_token: str | None = None,
    actor_token_type: str | None = None,
    resources: tuple[str, ...] = (),
    audiences: tuple[str, ...] = (),
    requested_token_type: str | None = None,
) -> dict[str, str | list[str]]:
    """The grant's own fields of the token request (RFC 8693 §2.1), without
    ``grant_type``, ``scope`` and the client's authentication."""
    form: dict[str, str | list[str]] = {
        "subject_token": subject_token,
        "subject_token_type": subject_token_type,
    }
    if actor_token is not None:
        form["actor_token"] = actor_token
        form["actor_token_type"] = actor_token_type or ACCESS_TOKEN_TYPE
    if resources:
        form["resource"] = list(resources)
    if audiences:
        form["audience"] = list(audiences)
    if requested_token_type is not None:
        form["requested_token_type"] = requested_token_type
    return form


def check_exchange_answer(
    token: TokenSet, *, requested_token_type: str | None, status: int | None = None
) -> TokenResponseError | None:
    """``None`` if ``token`` is a valid answer to a token exchange, else the
    error: RFC 8693 §2.2.1 requires ``issued_token_type``; a token of type
    ``N_A`` (not an access token) is accepted only when one was asked for
    with a ``requested_token_type`` other than an access token."""
    if token.issued_token_type is None:
        return TokenResponseError(
            "token exchange answer has no 'issued_token_type' (RFC 8693 §2.2.1)",
            status_code=status,
        )
    if token.token_type == NOT_APPLICABLE and requested_token_type in (None, ACCESS_TOKEN_TYPE):
        return TokenResponseError(
            "token exchange answer is not an access token (token_type 'N_A') although "
            "no other requested_token_type was asked for",
            status_code=status,
        )
    return None

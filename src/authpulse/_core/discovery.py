"""Provider metadata (RFC 8414, OpenID Connect Discovery 1.0): the document's
addresses and the rules it must satisfy, without any I/O.

:func:`parse_provider_metadata` turns a fetched document into a validated
:class:`ProviderMetadata` or raises :class:`~authpulse.DiscoveryError`
naming the member at fault; :func:`discovery_urls` says where to look for
the document of an issuer.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .errors import DiscoveryError

__all__ = [
    "ENDPOINT_FIELDS",
    "ProviderMetadata",
    "check_issuer",
    "discovery_urls",
    "is_loopback_host",
    "parse_provider_metadata",
]

#: the metadata members that are URLs credentials or tokens may be sent to
ENDPOINT_FIELDS = (
    "token_endpoint",
    "authorization_endpoint",
    "device_authorization_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "introspection_endpoint",
    "userinfo_endpoint",
)
_LISTS = (
    "token_endpoint_auth_methods_supported",
    "code_challenge_methods_supported",
    "grant_types_supported",
)
#: the largest document accepted (bytes)
MAX_DOCUMENT_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """A provider's validated metadata: its issuer, endpoints and capabilities.

    Every endpoint is ``https://`` (or ``http://`` to a loopback host, or any
    host when discovery was told ``allow_insecure_http``). An endpoint the
    document does not name is ``None``; a list it does not give is empty.
    ``raw`` is the whole document, read-only.

    .. versionadded:: unreleased
    """

    issuer: str
    token_endpoint: str | None = None
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()
    grant_types_supported: tuple[str, ...] = ()
    authorization_response_iss_parameter_supported: bool = False
    mtls_endpoint_aliases: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False, repr=False
    )

    def endpoint(self, name: str, *, mtls: bool = False) -> str | None:
        """The endpoint ``name`` (``"token_endpoint"``, ...); with ``mtls``, its
        RFC 8705 alias when the provider gives one."""
        if mtls and name in self.mtls_endpoint_aliases:
            return self.mtls_endpoint_aliases[name]
        value = getattr(self, name, None) if name in ENDPOINT_FIELDS else None
        return value if isinstance(value, str) else None


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(value: str, *, allow_insecure_http: bool) -> str | None:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "is not an absolute http(s) URL"
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        return "uses plain http:// to a host that is not loopback (https:// is required)"
    return None


def check_issuer(issuer: object, *, allow_insecure_http: bool = False) -> str:
    """``issuer`` if it is an acceptable issuer identifier (RFC 8414 §2: https,
    no query, no fragment), else :class:`DiscoveryError`."""
    if not isinstance(issuer, str) or not issuer:
        raise DiscoveryError("issuer must be a non-empty URL string", field="issuer")
    problem = _url_problem(issuer, allow_insecure_http=allow_insecure_http)
    if problem is None:
        parts = urlsplit(issuer)
        if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
            problem = "has a query or a fragment"
    if problem is not None:
        raise DiscoveryError(f"issuer {problem}", issuer=None, field="issuer")
    return issuer


def discovery_urls(issuer: str) -> tuple[str, str]:
    """Where the metadata of ``issuer`` is: the OpenID Connect location
    (``{issuer}/.well-known/openid-configuration``) and the RFC 8414 one,
    with the well-known segment inserted before the issuer's path."""
    base = issuer.rstrip("/")
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        f"{base}/.well-known/openid-configuration",
        f"{origin}/.well-known/oauth-authorization-server{path}",
    )


def _fail(issuer: str, name: str, why: str) -> DiscoveryError:
    return DiscoveryError(
        f"the metadata of {issuer} is not acceptable: {name} {why}", issuer=issuer, field=name
    )


def parse_provider_metadata(
    document: bytes | str | Mapping[str, Any], *, issuer: str, allow_insecure_http: bool = False
) -> ProviderMetadata:
    """The validated metadata of ``issuer`` from its fetched ``document`` (JSON
    bytes or text, or an already decoded object).

    The document's ``issuer`` must equal ``issuer`` exactly (RFC 8414 §3.3);
    every endpoint must pass the https rule; lists must be lists of strings.
    Anything else raises :class:`DiscoveryError` naming the member.
    """
    if isinstance(document, bytes | str):
        if len(document) > MAX_DOCUMENT_BYTES:
            raise _fail(issuer, "document", f"is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            data: object = json.loads(document)
        except (ValueError, RecursionError):
            raise _fail(issuer, "document", "is not JSON") from None
    else:
        data = document
    if not isinstance(data, Mapping):
        raise _fail(issuer, "document", "is not a JSON object")
    found = data.get("issuer")
    if not isinstance(found, str):
        raise _fail(issuer, "issuer", "is missing or not a string")
    if found != issuer:
        shown = repr(found[:120])
        raise _fail(issuer, "issuer", f"is {shown}, not the issuer asked for")
    values: dict[str, Any] = {}
    for name in ENDPOINT_FIELDS:
        values[name] = _endpoint(data, name, issuer, allow_insecure_http)
    for name in _LISTS:
        values[name] = _strings(data, name, issuer)
    flag = data.get("authorization_response_iss_parameter_supported", False)
    if not isinstance(flag, bool):
        raise _fail(issuer, "authorization_response_iss_parameter_supported", "is not a boolean")
    aliases = data.get("mtls_endpoint_aliases", {})
    if not isinstance(aliases, Mapping):
        raise _fail(issuer, "mtls_endpoint_aliases", "is not a JSON object")
    checked: dict[str, str] = {}
    for key in aliases:
        if not isinstance(key, str):
            raise _fail(issuer, "mtls_endpoint_aliases", "has a member that is not a string")
        alias = _endpoint(aliases, key, issuer, allow_insecure_http, "mtls_endpoint_aliases.")
        if alias is not None:
            checked[key] = alias
    return ProviderMetadata(
        issuer=found,
        authorization_response_iss_parameter_supported=flag,
        mtls_endpoint_aliases=MappingProxyType(checked),
        raw=MappingProxyType(dict(data)),
        **values,
    )


def _endpoint(
    data: Mapping[str, Any], name: str, issuer: str, insecure: bool, prefix: str = ""
) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(issuer, prefix + name, "is not a string")
    problem = _url_problem(value, allow_insecure_http=insecure)
    if problem is not None:
        raise _fail(issuer, prefix + name, problem)
    return value


def _strings(data: Mapping[str, Any], name: str, issuer: str) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(issuer, name, "is not a list of strings")
    return tuple(value)


# The public names defined here show the module they are imported from.
for _public in (ProviderMetadata,):
    _public.__module__ = "authpulse"
del _public

"""Client authentication at the authorization server's endpoints.

One :class:`ClientAuth` value per grant or login says how the client proves
who it is, and :func:`apply_client_auth` applies it to a request's headers
and form: ``client_secret_basic``, ``client_secret_post``, ``none``,
``private_key_jwt`` and ``client_secret_jwt`` (RFC 7523 §2.2, signed
assertions made by pyjwt on the injected clock), ``tls_client_auth`` and
``self_signed_tls_client_auth`` (RFC 8705: the certificate is the
transport's, only ``client_id`` goes in the form). Every endpoint a grant or
a login calls authenticates through it.
"""

from __future__ import annotations

import base64
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import jwt
from pydantic import SecretStr

from .._core.errors import ConfigurationError

__all__ = [
    "ASSERTION_TYPE",
    "AuthParts",
    "ClientAuth",
    "ClientAuthMethod",
    "ClientSecretJWT",
    "PrivateKeyJWT",
    "TLSClientAuth",
    "apply_client_auth",
    "basic_credentials",
    "client_auth_for",
]

ClientAuthMethod = Literal[
    "client_secret_basic",
    "client_secret_post",
    "none",
    "private_key_jwt",
    "client_secret_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
]
AssertionAudience = Literal["token_endpoint", "issuer"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: lifetime of a client assertion, seconds
ASSERTION_LIFETIME = 60.0
_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def basic_credentials(client_id: str, secret: str) -> str:
    """The ``Authorization`` value of ``client_secret_basic``: both parts are
    form-url-encoded before base64 (RFC 6749 §2.3.1)."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class AuthParts:
    """What a request carries to authenticate the client."""

    headers: dict[str, str]
    form: dict[str, str]

    def __repr__(self) -> str:
        return f"AuthParts(headers={sorted(self.headers)}, form={sorted(self.form)})"


def _jti() -> str:
    return _secrets.token_urlsafe(24)


def _check_common(audience: object, jti: object) -> None:
    if audience not in ("token_endpoint", "issuer"):
        raise ConfigurationError("assertion_audience must be 'token_endpoint' or 'issuer'")
    if jti is not None and not callable(jti):
        raise ConfigurationError("jti must be a function returning a new unique string")


class ClientAuth:
    """How a client authenticates (the base; see :class:`PrivateKeyJWT`,
    :class:`ClientSecretJWT`, :class:`TLSClientAuth`).

    ``method`` is the RFC 7591 name of the method. :meth:`parts` gives the
    headers and form fields of one request; :meth:`secrets` what must never be
    shown.

    .. versionadded:: unreleased
    """

    method: ClientAuthMethod = "none"
    #: the client certificate of the transport authenticates (RFC 8705)
    mtls: bool = False
    #: what the assertion's ``aud`` is
    assertion_audience: AssertionAudience = "token_endpoint"

    def parts(self, client_id: str, *, endpoint: str, issuer: str | None, now: float) -> AuthParts:
        return AuthParts({}, {"client_id": client_id})

    def secrets(self, client_id: str) -> list[SecretStr]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r})"


class _Secret(ClientAuth):
    """``client_secret_basic`` or ``client_secret_post``."""

    def __init__(self, secret: SecretStr, method: ClientAuthMethod) -> None:
        self._secret = secret
        self.method = method

    def parts(self, client_id: str, *, endpoint: str, issuer: str | None, now: float) -> AuthParts:
        value = self._secret.get_secret_value()
        if self.method == "client_secret_basic":
            return AuthParts({"Authorization": basic_credentials(client_id, value)}, {})
        return AuthParts({}, {"client_id": client_id, "client_secret": value})

    def secrets(self, client_id: str) -> list[SecretStr]:
        out = [self._secret]
        if self.method == "client_secret_basic":
            # the Basic credentials decode to the secret: an IdP echoing the header leaks it
            basic = basic_credentials(client_id, self._secret.get_secret_value())
            out.append(SecretStr(basic[len("Basic ") :]))
        return out


class _Assertion(ClientAuth):
    """A signed client assertion (RFC 7523 §2.2) in the form."""

    _alg: str
    _kid: str | None
    _jti: Callable[[], str]

    def _key(self) -> Any:
        raise NotImplementedError

    def parts(self, client_id: str, *, endpoint: str, issuer: str | None, now: float) -> AuthParts:
        audience = issuer if self.assertion_audience == "issuer" else endpoint
        if audience is None:
            raise ConfigurationError(
                "assertion_audience='issuer' needs the grant's issuer (pass issuer=)"
            )
        jti = self._jti()
        if not isinstance(jti, str) or not jti:
            raise ConfigurationError("jti must return a non-empty string")
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": jti,
            "iat": int(now),
            "exp": int(now + ASSERTION_LIFETIME),
        }
        headers = {"kid": self._kid} if self._kid else None
        assertion = jwt.encode(claims, self._key(), algorithm=self._alg, headers=headers)
        return AuthParts(
            {},
            {
                "client_id": client_id,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alg={self._alg!r}, kid={self._kid!r}, "
            f"assertion_audience={self.assertion_audience!r})"
        )


def _alg_of_key(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise ConfigurationError(f"the EC private key's curve {key.curve.name} is not supported")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    raise ConfigurationError("the private key must be an RSA, EC or Ed25519/Ed448 private key")


def _load_key(key: object) -> tuple[Any, str | None, str | None]:
    """The private key object, the JWK's ``kid`` and ``alg`` (if a JWK)."""
    if isinstance(key, str | bytes):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        data = key.encode() if isinstance(key, str) else key
        try:
            return load_pem_private_key(data, password=None), None, None
        except (ValueError, TypeError):
            raise ConfigurationError(
                "the private key is not an unencrypted PEM private key"
            ) from None
    if isinstance(key, Mapping):
        if "d" not in key:
            raise ConfigurationError(
                "the JWK is a public key: private_key_jwt needs the private one"
            )
        try:
            jwk = jwt.PyJWK(dict(key))
        except Exception:  # PyJWKError, a missing member: never the key's values
            raise ConfigurationError("the private key is not a usable JWK") from None
        kid, alg = key.get("kid"), key.get("alg")
        return (
            jwk.key,
            kid if isinstance(kid, str) else None,
            alg if isinstance(alg, str) else None,
        )
    raise ConfigurationError("the private key must be PEM text (str or bytes) or a JWK dict")


class PrivateKeyJWT(_Assertion):
    """``private_key_jwt`` (RFC 7523 §2.2, OpenID Connect Core §9): the client
    signs an assertion with its private key for each request.

    ``key`` is PEM (``str`` or ``bytes``, unencrypted) or a private JWK dict;
    ``kid`` defaults to the JWK's; ``alg`` to the JWK's, else one the key
    fits (RSA: RS256, P-256: ES256, Ed25519: EdDSA). The assertion's claims
    are ``iss`` = ``sub`` = the client id, ``aud`` = the endpoint called (or
    the issuer, ``assertion_audience="issuer"``), a new ``jti`` each time
    (``jti``: the function that makes it), ``iat`` and ``exp`` 60 s later on
    the session's clock. The key is never shown.

    .. versionadded:: unreleased
    """

    method: ClientAuthMethod = "private_key_jwt"

    def __init__(
        self,
        key: str | bytes | Mapping[str, Any],
        *,
        kid: str | None = None,
        alg: str | None = None,
        assertion_audience: AssertionAudience = "token_endpoint",
        jti: Callable[[], str] | None = None,
    ) -> None:
        _check_common(assertion_audience, jti)
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise ConfigurationError("kid must be a non-empty string")
        loaded, jwk_kid, jwk_alg = _load_key(key)
        chosen = alg or jwk_alg or _alg_of_key(loaded)
        if chosen not in _ALGS:
            raise ConfigurationError(f"alg must be one of {', '.join(_ALGS)}")
        self.__key = loaded
        self._alg = chosen
        self._kid = kid or jwk_kid
        self._jti = jti or _jti
        self.assertion_audience = assertion_audience
        try:  # refuse a key that cannot sign with alg now, not at the first request
            jwt.encode({"probe": 1}, loaded, algorithm=chosen)
        except Exception:
            raise ConfigurationError(f"the private key cannot sign with {chosen}") from None

    @property
    def alg(self) -> str:
        return self._alg

    @property
    def kid(self) -> str | None:
        return self._kid

    def _key(self) -> Any:
        return self.__key


class ClientSecretJWT(_Assertion):
    """``client_secret_jwt`` (RFC 7523 §2.2): an assertion signed with HS256
    using the client secret (which itself never travels).

    .. versionadded:: unreleased
    """

    method: ClientAuthMethod = "client_secret_jwt"

    def __init__(
        self,
        secret: str | SecretStr,
        *,
        alg: Literal["HS256", "HS384", "HS512"] = "HS256",
        assertion_audience: AssertionAudience = "token_endpoint",
        jti: Callable[[], str] | None = None,
    ) -> None:
        _check_common(assertion_audience, jti)
        if isinstance(secret, str):
            secret = SecretStr(secret)
        if not isinstance(secret, SecretStr) or not secret.get_secret_value():
            raise ConfigurationError("client_secret_jwt needs a non-empty client secret")
        if alg not in ("HS256", "HS384", "HS512"):
            raise ConfigurationError("alg must be HS256, HS384 or HS512")
        self._secret = secret
        self._alg = alg
        self._kid = None
        self._jti = jti or _jti
        self.assertion_audience = assertion_audience

    def _key(self) -> Any:
        return self._secret.get_secret_value().encode()

    def secrets(self, client_id: str) -> list[SecretStr]:
        return [self._secret]


class TLSClientAuth(ClientAuth):
    """``tls_client_auth`` or, with ``self_signed=True``,
    ``self_signed_tls_client_auth`` (RFC 8705): the client certificate of the
    TLS connection authenticates; the form carries only ``client_id``. Give
    the session a transport that presents the certificate (for example
    ``httpx.HTTPTransport(verify=ssl_context)`` with
    ``ssl_context.load_cert_chain(...)``). With ``issuer=``, requests go to
    the provider's ``mtls_endpoint_aliases`` when it has them.

    .. versionadded:: unreleased
    """

    mtls = True

    def __init__(self, *, self_signed: bool = False) -> None:
        if not isinstance(self_signed, bool):
            raise ConfigurationError("self_signed must be a boolean")
        self.method = "self_signed_tls_client_auth" if self_signed else "tls_client_auth"


def client_auth_for(method: object, secret: SecretStr | None, client_auth: object) -> ClientAuth:
    """The :class:`ClientAuth` of a grant's arguments: ``client_auth`` itself,
    or the one ``auth_method`` and ``client_secret`` describe."""
    if client_auth is not None:
        if not isinstance(client_auth, ClientAuth):
            raise ConfigurationError("client_auth must be a ClientAuth (e.g. PrivateKeyJWT)")
        if secret is not None or method not in (None, client_auth.method):
            raise ConfigurationError(
                "give client_auth alone, without client_secret or another auth_method"
            )
        return client_auth
    chosen = method or ("client_secret_basic" if secret is not None else "none")
    if chosen in ("client_secret_basic", "client_secret_post"):
        if secret is None:
            raise ConfigurationError(f"{chosen} needs a client_secret")
        return _Secret(secret, chosen)
    if chosen == "client_secret_jwt":
        if secret is None:
            raise ConfigurationError("client_secret_jwt needs a client_secret")
        return ClientSecretJWT(secret)
    if chosen in ("tls_client_auth", "self_signed_tls_client_auth"):
        return TLSClientAuth(self_signed=chosen == "self_signed_tls_client_auth")
    if chosen == "private_key_jwt":
        raise ConfigurationError("private_key_jwt needs client_auth=PrivateKeyJWT(key)")
    if chosen != "none":
        raise ConfigurationError(f"unsupported client auth method {chosen!r}")
    return ClientAuth()


def apply_client_auth(
    auth: ClientAuth,
    client_id: str,
    headers: dict[str, str],
    form: dict[str, Any],
    *,
    endpoint: str,
    issuer: str | None,
    now: float,
) -> None:
    """Add ``auth``'s headers and form fields for a request to ``endpoint``."""
    parts = auth.parts(client_id, endpoint=endpoint, issuer=issuer, now=now)
    headers.update(parts.headers)
    form.update(parts.form)
    parts.headers.clear()
    parts.form.clear()


# The public names defined here show the module they are imported from.
for _public in (ClientAuth, PrivateKeyJWT, ClientSecretJWT, TLSClientAuth):
    _public.__module__ = "authpulse"
del _public

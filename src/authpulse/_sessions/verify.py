"""JWT verification against a JWKS: the one part of token handling that does I/O.

:class:`JWTVerifier` checks a token's signature, issuer, audience and time
claims. With ``jwks_url`` it fetches the key set itself, over a bounded,
redirect-refusing reader; the time claims are checked at the ``now`` the
caller gives.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import urllib.request
from collections.abc import Iterable
from typing import Any

import jwt

from .._core.errors import ConfigurationError, DiscoveryError, TokenError, TokenVerificationError
from .._core.tokens import _num_claim
from .._runtime.backend import check_endpoint_url, endpoint_label
from .discovery_fetch import discover

__all__ = ["MAX_JWKS_BYTES", "JWTVerifier"]

#: Largest JWKS document :class:`JWTVerifier` reads from ``jwks_url`` (1 MiB).
MAX_JWKS_BYTES = 1024 * 1024


class _BoundedJWKClient(jwt.PyJWKClient):
    """A :class:`jwt.PyJWKClient` that reads at most ``max_bytes`` of the JWKS."""

    def __init__(self, uri: str, *, max_bytes: int) -> None:
        super().__init__(uri)
        self.max_bytes = max_bytes

    def fetch_data(self) -> Any:
        label = endpoint_label(self.uri)
        opener = urllib.request.build_opener(_NoRedirect())
        request = urllib.request.Request(url=self.uri, headers=self.headers)  # noqa: S310 - http(s) checked
        try:
            with opener.open(request, timeout=self.timeout) as response:
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > self.max_bytes:
                    raise _too_big(label, self.max_bytes)
                raw = response.read(self.max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts
            raise jwt.PyJWKClientConnectionError(
                f"fetching the JWKS from {label} failed: {type(exc).__name__}"
            ) from None
        if len(raw) > self.max_bytes:
            raise _too_big(label, self.max_bytes)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise jwt.PyJWKClientError(f"the JWKS from {label} is not JSON") from None
        if not isinstance(data, dict):
            raise jwt.PyJWKClientError(f"the JWKS from {label} is not a JSON object")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        self._last_successful_fetch = time.monotonic()
        return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as the error it is


def _too_big(label: str, limit: int) -> TokenVerificationError:
    return TokenVerificationError(
        f"the JWKS from {label} is larger than the {limit}-byte limit (max_jwks_bytes)"
    )


class JWTVerifier:
    """Verifies JWT access or id tokens against a JWKS.

    ``algorithms`` is an allow-list; ``none`` is refused whatever is passed.
    ``jwks_url`` must be ``https://`` (plain ``http://`` only to a loopback
    host, or with ``allow_insecure_http=True``); with ``issuer`` and none of
    the three, ``jwks_uri`` is found by discovery (:func:`~authpulse.discover`)
    at the first :meth:`verify`, which raises :class:`~authpulse.DiscoveryError`
    if it cannot be. The document read from it
    is capped at ``max_jwks_bytes`` (default :data:`MAX_JWKS_BYTES`).
    ``jwks_client`` is your own :class:`jwt.PyJWKClient` (it does its own
    HTTP, unbounded by authpulse); pass a ``key`` instead for a fixed key.

    .. versionchanged:: unreleased
       ``allow_insecure_http`` and ``max_jwks_bytes``; ``jwks_uri`` by discovery
       from ``issuer``.
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
        allow_insecure_http: bool = False,
        max_jwks_bytes: int = MAX_JWKS_BYTES,
    ) -> None:
        if isinstance(algorithms, str):
            raise ConfigurationError("algorithms must be a list of algorithm names")
        algs = list(algorithms)
        if not all(isinstance(a, str) for a in algs):
            raise ConfigurationError("algorithms must be a list of algorithm names")
        if any(a.lower() == "none" for a in algs):
            raise ConfigurationError("the 'none' algorithm can never be allowed")
        if not algs:
            raise ConfigurationError("at least one algorithm must be allowed")
        given = sum(x is not None for x in (jwks_url, jwks_client, key))
        if given != 1 and not (given == 0 and issuer is not None):
            raise ConfigurationError(
                "give exactly one of jwks_url, jwks_client or key (or issuer alone, to find "
                "jwks_uri by discovery)"
            )
        if jwks_client is not None and not isinstance(jwks_client, jwt.PyJWKClient):
            raise ConfigurationError("jwks_client must be a jwt.PyJWKClient")
        if not isinstance(allow_insecure_http, bool):
            raise ConfigurationError("allow_insecure_http must be a boolean")
        if (
            isinstance(max_jwks_bytes, bool)
            or not isinstance(max_jwks_bytes, int)
            or max_jwks_bytes < 1024
        ):
            raise ConfigurationError("max_jwks_bytes must be an integer of at least 1024")
        if issuer is not None and not isinstance(issuer, str):
            raise ConfigurationError("issuer must be a string")
        if not (
            audience is None
            or isinstance(audience, str)
            or (isinstance(audience, Iterable) and all(isinstance(a, str) for a in list(audience)))
        ):
            raise ConfigurationError("audience must be a string or a list of strings")
        if isinstance(leeway, bool) or not (
            isinstance(leeway, int | float) and math.isfinite(leeway) and leeway >= 0
        ):
            raise ConfigurationError("leeway must be a non-negative number of seconds")
        self.algorithms = tuple(algs)
        if jwks_url is not None:
            check_endpoint_url(jwks_url, what="jwks_url", allow_insecure_http=allow_insecure_http)
            jwks_client = _BoundedJWKClient(jwks_url, max_bytes=max_jwks_bytes)
        self._jwks = jwks_client
        self._key = key
        self._max_jwks_bytes = max_jwks_bytes
        self._insecure = allow_insecure_http
        self._lock = threading.Lock()
        self.issuer = issuer
        self.audience = (
            audience if audience is None or isinstance(audience, str) else list(audience)
        )
        self.leeway = float(leeway)

    def verify(self, token: str, *, now: float) -> dict[str, Any]:
        """Verify ``token`` at time ``now``; return its claims or raise
        :class:`TokenVerificationError` (or :class:`DiscoveryError`; the message
        never contains the token, and no frame on the error's traceback holds it)."""
        outcome = self._verify(token, now)
        del token
        if isinstance(outcome, TokenError):
            raise outcome
        return outcome

    def _discovered(self) -> jwt.PyJWKClient:
        """The key set client of the issuer's ``jwks_uri``, found by discovery once."""
        with self._lock:
            if self._jwks is None:
                meta = discover(str(self.issuer), allow_insecure_http=self._insecure)
                if meta.jwks_uri is None:
                    raise DiscoveryError(
                        f"the metadata of {self.issuer} names no jwks_uri",
                        issuer=self.issuer,
                        field="jwks_uri",
                    )
                self._jwks = _BoundedJWKClient(meta.jwks_uri, max_bytes=self._max_jwks_bytes)
            return self._jwks

    def _verify(self, token: str, now: float) -> dict[str, Any] | TokenError:
        """The claims or the error (returned, not raised: the caller raises it
        from a frame that does not hold the token)."""
        if self._jwks is None and self._key is None:
            try:
                self._discovered()
            except DiscoveryError as exc:
                return exc.with_traceback(None)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return TokenVerificationError("token is not a well-formed JWT")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            shown = repr(alg)[:40] if isinstance(alg, str | None) else type(alg).__name__
            return TokenVerificationError(f"JWT algorithm {shown} is not allowed")
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
        except TokenVerificationError as exc:
            return exc.with_traceback(None)
        except Exception as exc:  # PyJWTError, or a key of the wrong kind
            return TokenVerificationError(f"JWT verification failed: {type(exc).__name__}")
        exp = _num_claim(claims, "exp")
        nbf = _num_claim(claims, "nbf")
        if exp is not None and now > exp + self.leeway:
            return TokenVerificationError("JWT has expired")
        if nbf is not None and now + self.leeway < nbf:
            return TokenVerificationError("JWT is not valid yet (nbf)")
        return claims


# The public names defined here show the module they are imported from.
for _public in (JWTVerifier,):
    _public.__module__ = "authpulse"
del _public

"""Client authentication: private_key_jwt, client_secret_jwt, tls_client_auth and the
secret-based methods, as one ClientAuth value applied to every request."""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from _support import RSA_KEY, RSA_PEM, RSA_PUBLIC_PEM
from authpulse import (
    ClientAuth,
    ClientCredentials,
    ClientSecretJWT,
    ConfigurationError,
    DeviceCodeLogin,
    OAuthError,
    PrivateKeyJWT,
    RefreshTokenGrant,
    Session,
    TLSClientAuth,
)
from authpulse._runtime.backend import httpx
from authpulse._sessions.client_auth import ASSERTION_TYPE
from authpulse.testing import FakeClock, FakeIdP

TOKEN_URL = "https://idp.test/token"
ISSUER = "https://idp.test"
pytestmark = pytest.mark.usefixtures("fresh_metadata_cache")


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def counter() -> Any:
    numbers = itertools.count(1)
    return lambda: f"jti-{next(numbers)}"


def jwk_of(key: Any, **extra: str) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    algorithm = {
        rsa.RSAPrivateKey: RSAAlgorithm,
        ec.EllipticCurvePrivateKey: ECAlgorithm,
        ed25519.Ed25519PrivateKey: OKPAlgorithm,
    }
    for kind, alg in algorithm.items():
        if isinstance(key, kind):
            return {**json.loads(alg.to_jwk(key)), **extra}  # type: ignore[attr-defined]
    raise AssertionError(key)


class TestPrivateKeyJWT:
    def test_claims_headers_and_form(self) -> None:
        clock = FakeClock(start=1_700_000_000.0)
        auth = PrivateKeyJWT(RSA_PEM, kid="k1", jti=counter())
        grant = ClientCredentials(TOKEN_URL, "svc", client_auth=auth)
        request = grant.build_request(None, now=clock.now())
        form = form_of(request)
        assert "authorization" not in request.headers
        assert form["client_id"] == "svc"
        assert form["client_assertion_type"] == ASSERTION_TYPE
        assertion = form["client_assertion"]
        assert jwt.get_unverified_header(assertion) == {"alg": "RS256", "kid": "k1", "typ": "JWT"}
        claims = jwt.decode(
            assertion,
            RSA_PUBLIC_PEM,
            algorithms=["RS256"],
            audience=TOKEN_URL,
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims == {
            "iss": "svc",
            "sub": "svc",
            "aud": TOKEN_URL,
            "jti": "jti-1",
            "iat": 1_700_000_000,
            "exp": 1_700_000_060,
        }
        assert grant.auth_method == "private_key_jwt"

    def test_jti_is_new_for_each_request(self) -> None:
        grant = ClientCredentials(TOKEN_URL, "svc", client_auth=PrivateKeyJWT(RSA_PEM))
        jtis = {
            jwt.decode(
                form_of(grant.build_request(None, now=100.0))["client_assertion"],
                options={"verify_signature": False},
            )["jti"]
            for _ in range(50)
        }
        assert len(jtis) == 50

    @pytest.mark.parametrize(
        ("key", "alg"),
        [
            (ec.generate_private_key(ec.SECP256R1()), "ES256"),
            (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
            (RSA_KEY, "RS256"),
        ],
    )
    def test_alg_follows_the_key_given_as_a_jwk(self, key: Any, alg: str) -> None:
        auth = PrivateKeyJWT(jwk_of(key, kid="from-jwk"))
        assert (auth.alg, auth.kid) == (alg, "from-jwk")
        form = form_of(
            ClientCredentials(TOKEN_URL, "svc", client_auth=auth).build_request(None, now=5.0)
        )
        assert jwt.get_unverified_header(form["client_assertion"])["alg"] == alg

    def test_ps256_when_asked(self) -> None:
        assert PrivateKeyJWT(RSA_PEM, alg="PS256").alg == "PS256"

    def test_audience_can_be_the_issuer(self) -> None:
        auth = PrivateKeyJWT(RSA_PEM, assertion_audience="issuer")
        with pytest.raises(ConfigurationError, match="needs issuer"):
            ClientCredentials(TOKEN_URL, "svc", client_auth=auth)
        clock = FakeClock()
        idp = FakeIdP(clock=clock, issuer=ISSUER, client_keys={"svc": RSA_PUBLIC_PEM})
        grant = ClientCredentials(issuer=ISSUER, client_id="svc", client_auth=auth)
        session = Session(grant, clock=clock, transport=idp.transport)
        assert idp.validate(session.token())

    @pytest.mark.parametrize(
        ("key", "match"),
        [
            ("not a pem", "PEM"),
            (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM"),
            (jwk_of(RSA_KEY) | {"d": None} | {}, "usable JWK"),
            ({k: v for k, v in jwk_of(RSA_KEY).items() if k in ("kty", "n", "e")}, "public"),
            (42, "PEM"),
        ],
    )
    def test_bad_keys_are_refused_without_showing_them(self, key: Any, match: str) -> None:
        with pytest.raises(ConfigurationError, match=match) as info:
            PrivateKeyJWT(key)
        assert "BEGIN" not in str(info.value)
        assert info.value.__cause__ is None

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"alg": "HS256"}, "alg must be"),
            ({"alg": "ES256"}, "cannot sign with ES256"),
            ({"kid": ""}, "kid"),
            ({"assertion_audience": "anyone"}, "assertion_audience"),
            ({"jti": "fixed"}, "jti"),
        ],
    )
    def test_bad_options(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match):
            PrivateKeyJWT(RSA_PEM, **kwargs)

    def test_the_key_never_shows(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        auth = PrivateKeyJWT(RSA_PEM, kid="k1")
        grant = ClientCredentials(TOKEN_URL, "svc", client_auth=auth)
        secret_d = jwk_of(RSA_KEY)["d"]
        for text in (repr(auth), str(auth), repr(grant), repr(vars(auth))):
            assert "BEGIN" not in text
            assert secret_d not in text
        assert repr(auth) == (
            "PrivateKeyJWT(alg='RS256', kid='k1', assertion_audience='token_endpoint')"
        )
        idp = FakeIdP(clock=FakeClock(), clients={})  # the client is unknown: invalid_client
        with pytest.raises(OAuthError) as info:
            Session(grant, clock=FakeClock(), transport=idp.transport).token()
        assert "BEGIN" not in str(info.value)
        assert "BEGIN" not in caplog.text

    @pytest.mark.parametrize("driver", ["sync", "async"])
    @pytest.mark.anyio
    async def test_accepted_by_the_fake_idp(self, driver: str) -> None:
        clock = FakeClock()
        idp = FakeIdP(clock=clock, client_keys={"svc": RSA_PUBLIC_PEM})
        grant = ClientCredentials(idp.token_url, "svc", client_auth=PrivateKeyJWT(RSA_PEM))
        session = Session(
            grant, clock=clock, transport=idp.transport, async_transport=idp.async_transport
        )
        token = session.token() if driver == "sync" else await session.atoken()
        assert idp.validate(token)
        assert "client_assertion" not in idp.requests[-1]

    def test_replayed_assertion_is_refused_by_the_fake(self) -> None:
        clock = FakeClock()
        idp = FakeIdP(clock=clock, client_keys={"svc": RSA_PUBLIC_PEM})
        grant = ClientCredentials(
            idp.token_url, "svc", client_auth=PrivateKeyJWT(RSA_PEM, jti=lambda: "same")
        )
        session = Session(grant, clock=clock, transport=idp.transport)
        session.token()
        with pytest.raises(OAuthError, match="invalid_client"):
            session.force_refresh()


class TestClientSecretJWT:
    def test_hs256_with_the_secret(self) -> None:
        secret = "s3cret-for-hmac-that-is-long-enough!"
        grant = ClientCredentials(TOKEN_URL, "svc", secret, auth_method="client_secret_jwt")
        form = form_of(grant.build_request(None, now=1000.0))
        assert "client_secret" not in form
        assert secret not in json.dumps(form)
        claims = jwt.decode(
            form["client_assertion"],
            secret.encode(),
            algorithms=["HS256"],
            audience=TOKEN_URL,
            options={"verify_exp": False, "verify_iat": False},
        )
        assert (claims["iss"], claims["sub"], claims["exp"] - claims["iat"]) == ("svc", "svc", 60)
        assert secret not in repr(grant) + repr(grant.client_auth)

    @pytest.mark.anyio
    async def test_accepted_by_the_fake_idp(self) -> None:
        clock = FakeClock()
        secret = "another-long-enough-secret-0123456789"
        idp = FakeIdP(clock=clock, clients={"svc": secret})
        grant = RefreshTokenGrant(
            idp.token_url,
            "svc",
            client_auth=ClientSecretJWT(secret),
            refresh_token=idp.issue_refresh_token("svc"),
        )
        session = Session(grant, clock=clock, async_transport=idp.async_transport)
        assert idp.validate(await session.atoken())

    def test_needs_a_secret(self) -> None:
        with pytest.raises(ConfigurationError, match="client_secret_jwt needs"):
            ClientCredentials(TOKEN_URL, "svc", auth_method="client_secret_jwt")
        with pytest.raises(ConfigurationError, match="non-empty"):
            ClientSecretJWT("")


class TestTLSClientAuth:
    def test_only_the_client_id_in_the_form(self) -> None:
        grant = ClientCredentials(TOKEN_URL, "svc", client_auth=TLSClientAuth())
        request = grant.build_request(None, now=0.0)
        assert form_of(request) == {"grant_type": "client_credentials", "client_id": "svc"}
        assert "authorization" not in request.headers
        assert grant.auth_method == "tls_client_auth"
        assert TLSClientAuth(self_signed=True).method == "self_signed_tls_client_auth"
        via_name = ClientCredentials(TOKEN_URL, "svc", auth_method="self_signed_tls_client_auth")
        assert via_name.client_auth.mtls

    def test_the_mtls_alias_is_used_when_discovered(self) -> None:
        seen: list[str] = []

        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            if request.method == "GET":
                return httpx.Response(
                    200,
                    json={
                        "issuer": ISSUER,
                        "token_endpoint": TOKEN_URL,
                        "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.idp.test/token"},
                    },
                )
            return httpx.Response(200, json={"access_token": "at", "expires_in": 60})

        grant = ClientCredentials(issuer=ISSUER, client_id="svc", client_auth=TLSClientAuth())
        Session(grant, clock=FakeClock(), transport=httpx.MockTransport(handle)).token()
        assert seen[-1] == "https://mtls.idp.test/token"


class TestOneValueEverywhere:
    def test_client_auth_alone(self) -> None:
        with pytest.raises(ConfigurationError, match="client_auth alone"):
            ClientCredentials(TOKEN_URL, "svc", "secret", client_auth=TLSClientAuth())
        with pytest.raises(ConfigurationError, match="must be a ClientAuth"):
            ClientCredentials(TOKEN_URL, "svc", client_auth="private_key_jwt")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="PrivateKeyJWT"):
            ClientCredentials(TOKEN_URL, "svc", auth_method="private_key_jwt")

    def test_the_device_login_signs_both_of_its_requests(self) -> None:
        forms: list[dict[str, str]] = []

        def handle(request: httpx.Request) -> httpx.Response:
            form = form_of(request)
            forms.append(form)
            if request.url.path == "/device":
                return httpx.Response(
                    200,
                    json={
                        "device_code": "dc",
                        "user_code": "ABCD",
                        "verification_uri": "https://idp.test/activate",
                        "expires_in": 600,
                        "interval": 5,
                    },
                )
            return httpx.Response(
                200, json={"access_token": "at", "refresh_token": "rt", "expires_in": 60}
            )

        login = DeviceCodeLogin(
            "https://idp.test/device",
            TOKEN_URL,
            "cli",
            client_auth=PrivateKeyJWT(RSA_PEM, jti=counter()),
            clock=FakeClock(),
            transport=httpx.MockTransport(handle),
        )
        login.start()
        session = login.wait()
        auds = [
            jwt.decode(f["client_assertion"], options={"verify_signature": False})["aud"]
            for f in forms
        ]
        assert auds == ["https://idp.test/device", TOKEN_URL]
        assert isinstance(session.source, RefreshTokenGrant)
        assert session.source.client_auth is login._poll.client_auth

    def test_base_value_is_none(self) -> None:
        assert ClientCredentials(TOKEN_URL, "public").client_auth.method == "none"
        assert repr(ClientAuth()) == "ClientAuth(method='none')"

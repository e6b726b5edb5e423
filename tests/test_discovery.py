"""Provider discovery: the metadata's validation (pure), discover()/adiscover() with
their cache, and issuer= on the grants, the device login and JWTVerifier."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import authpulse
from authpulse import (
    ClientCredentials,
    ConfigurationError,
    DeviceCodeLogin,
    DiscoveryError,
    ErrorClass,
    JWTVerifier,
    ProviderMetadata,
    RefreshTokenGrant,
    Session,
)
from authpulse._core.discovery import discovery_urls, parse_provider_metadata
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeClock, FakeIdP

ISSUER = "https://idp.test"


pytestmark = pytest.mark.usefixtures("fresh_metadata_cache")


def doc(issuer: str = ISSUER, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        **extra,
    }


class Server:
    """A metadata server on a MockTransport: counts the requests per path."""

    def __init__(self, routes: dict[str, tuple[int, Any]]) -> None:
        self.routes = routes
        self.paths: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        status, body = self.routes.get(request.url.path, (404, {"error": "not found"}))
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.ahandle)


# -- the pure validation ----------------------------------------------------------------


class TestParse:
    def test_a_full_document(self) -> None:
        meta = parse_provider_metadata(
            json.dumps(
                doc(
                    device_authorization_endpoint=f"{ISSUER}/device",
                    code_challenge_methods_supported=["S256"],
                    authorization_response_iss_parameter_supported=True,
                    mtls_endpoint_aliases={"token_endpoint": "https://mtls.idp.test/token"},
                    custom="kept",
                )
            ).encode(),
            issuer=ISSUER,
        )
        assert meta.token_endpoint == f"{ISSUER}/token"
        assert meta.code_challenge_methods_supported == ("S256",)
        assert meta.authorization_response_iss_parameter_supported is True
        assert meta.endpoint("token_endpoint", mtls=True) == "https://mtls.idp.test/token"
        assert meta.endpoint("token_endpoint") == f"{ISSUER}/token"
        assert meta.raw["custom"] == "kept"
        with pytest.raises(TypeError):
            meta.raw["custom"] = "changed"  # type: ignore[index]
        assert meta.revocation_endpoint is None
        assert meta.grant_types_supported == ()

    @pytest.mark.parametrize(
        ("document", "field"),
        [
            ({"token_endpoint": "https://idp.test/token"}, "issuer"),
            (doc(issuer="https://evil.test"), "issuer"),
            (doc(issuer=ISSUER + "/"), "issuer"),
            (doc(token_endpoint="http://idp.test/token"), "token_endpoint"),
            (doc(jwks_uri=42), "jwks_uri"),
            (doc(jwks_uri="ftp://idp.test/jwks"), "jwks_uri"),
            (doc(grant_types_supported="client_credentials"), "grant_types_supported"),
            (
                doc(authorization_response_iss_parameter_supported="yes"),
                "authorization_response_iss_parameter_supported",
            ),
            (
                doc(mtls_endpoint_aliases={"token_endpoint": "http://x.test/t"}),
                "mtls_endpoint_aliases.token_endpoint",
            ),
            ([1, 2], "document"),
        ],
    )
    def test_what_is_refused_names_the_field(self, document: Any, field: str) -> None:
        with pytest.raises(DiscoveryError) as info:
            parse_provider_metadata(document, issuer=ISSUER)
        assert info.value.field == field
        assert info.value.error_class is ErrorClass.CLIENT
        assert isinstance(info.value, authpulse.TokenError)

    def test_not_json(self) -> None:
        with pytest.raises(DiscoveryError, match="not JSON") as info:
            parse_provider_metadata(b"<html>", issuer=ISSUER)
        assert info.value.field == "document"

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "[::1]", "localhost"])
    def test_plain_http_on_loopback(self, host: str) -> None:
        issuer = f"http://{host}:8080"
        assert parse_provider_metadata(doc(issuer), issuer=issuer).token_endpoint

    def test_plain_http_elsewhere_only_when_allowed(self) -> None:
        issuer = "http://idp.internal"
        with pytest.raises(DiscoveryError, match="plain http"):
            parse_provider_metadata(doc(issuer), issuer=issuer)
        meta = parse_provider_metadata(doc(issuer), issuer=issuer, allow_insecure_http=True)
        assert meta.issuer == issuer

    def test_discovery_urls_insert_the_well_known_segment(self) -> None:
        assert discovery_urls("https://idp.test/tenant/a") == (
            "https://idp.test/tenant/a/.well-known/openid-configuration",
            "https://idp.test/.well-known/oauth-authorization-server/tenant/a",
        )
        assert discovery_urls("https://idp.test")[1] == (
            "https://idp.test/.well-known/oauth-authorization-server"
        )

    @given(
        st.dictionaries(
            st.sampled_from(
                [
                    "issuer",
                    "token_endpoint",
                    "jwks_uri",
                    "userinfo_endpoint",
                    "grant_types_supported",
                    "mtls_endpoint_aliases",
                    "authorization_response_iss_parameter_supported",
                ]
            )
            | st.text(max_size=8),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.text(max_size=30)
                | st.sampled_from([ISSUER, f"{ISSUER}/token", "http://evil.test/t"]),
                lambda kids: (
                    st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=5), kids, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=8,
        )
    )
    def test_any_document_is_metadata_or_a_discovery_error(self, document: dict[str, Any]) -> None:
        try:
            meta = parse_provider_metadata(document, issuer=ISSUER)
        except DiscoveryError as exc:
            failure: DiscoveryError | None = exc
        else:
            failure = None
        if failure is not None:
            assert failure.field is not None
            return
        assert meta.issuer == ISSUER
        for name in ("token_endpoint", "jwks_uri", "userinfo_endpoint"):
            value = getattr(meta, name)
            assert value is None or value.startswith("https://")
        assert isinstance(meta, ProviderMetadata)


# -- discover() and adiscover() ---------------------------------------------------------


class TestDiscover:
    def test_found_and_cached_on_the_clock(self) -> None:
        clock = FakeClock()
        server = Server({"/.well-known/openid-configuration": (200, doc())})
        first = authpulse.discover(ISSUER, transport=server.transport, clock=clock, ttl=60)
        again = authpulse.discover(ISSUER, transport=server.transport, clock=clock, ttl=60)
        assert again is first
        assert server.paths == ["/.well-known/openid-configuration"]
        clock.advance(61)
        authpulse.discover(ISSUER, transport=server.transport, clock=clock, ttl=60)
        assert len(server.paths) == 2

    @pytest.mark.anyio
    async def test_async_shares_the_cache(self) -> None:
        clock = FakeClock()
        server = Server({"/.well-known/openid-configuration": (200, doc())})
        meta = await authpulse.adiscover(ISSUER, transport=server.async_transport, clock=clock)
        assert meta.token_endpoint == f"{ISSUER}/token"
        assert authpulse.discover(ISSUER, transport=server.transport, clock=clock) is meta
        assert len(server.paths) == 1

    @pytest.mark.anyio
    async def test_a_cache_hit_opens_no_http_client(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from authpulse._sessions import discovery_fetch

        clock = FakeClock()
        server = Server({"/.well-known/openid-configuration": (200, doc())})
        meta = authpulse.discover(ISSUER, transport=server.transport, clock=clock)

        def no_client(*args: object, **kwargs: object) -> object:
            raise AssertionError("a cache hit made an HTTP client")

        monkeypatch.setattr(discovery_fetch, "client_for", no_client)
        monkeypatch.setattr(discovery_fetch, "async_client_for", no_client)
        assert authpulse.discover(ISSUER, transport=server.transport, clock=clock) is meta
        assert await authpulse.adiscover(ISSUER, clock=clock) is meta
        assert len(server.paths) == 1

    def test_falls_back_to_rfc_8414_on_404(self) -> None:
        issuer = f"{ISSUER}/tenant"
        server = Server({"/.well-known/oauth-authorization-server/tenant": (200, doc(issuer))})
        meta = authpulse.discover(issuer, transport=server.transport, clock=FakeClock())
        assert meta.issuer == issuer
        assert server.paths == [
            "/tenant/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server/tenant",
        ]

    def test_mismatched_issuer_is_refused_and_not_cached(self) -> None:
        server = Server({"/.well-known/openid-configuration": (200, doc("https://other.test"))})
        for _ in range(2):
            with pytest.raises(DiscoveryError) as info:
                authpulse.discover(ISSUER, transport=server.transport, clock=FakeClock())
            assert info.value.field == "issuer"
        assert len(server.paths) == 2

    @pytest.mark.parametrize(
        ("status", "error_class"), [(500, ErrorClass.SERVER), (404, ErrorClass.CLIENT)]
    )
    def test_http_failures(self, status: int, error_class: ErrorClass) -> None:
        server = Server({"/.well-known/openid-configuration": (status, {})})
        with pytest.raises(DiscoveryError, match=f"HTTP {status}") as info:
            authpulse.discover(ISSUER, transport=server.transport, clock=FakeClock())
        assert info.value.error_class is error_class
        assert info.value.status_code == status

    def test_network_failure(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        with pytest.raises(DiscoveryError, match="ConnectError") as info:
            authpulse.discover(ISSUER, transport=httpx.MockTransport(refuse), clock=FakeClock())
        assert info.value.error_class is ErrorClass.NETWORK

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"ttl": -1}, "ttl"),
            ({"ttl": True}, "ttl"),
            ({"allow_insecure_http": "yes"}, "allow_insecure_http"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match):
            authpulse.discover(ISSUER, **kwargs)

    @pytest.mark.parametrize("issuer", ["", "idp.test", "http://idp.test", f"{ISSUER}?x=1", 7])
    def test_bad_issuers(self, issuer: Any) -> None:
        with pytest.raises(DiscoveryError) as info:
            authpulse.discover(issuer)
        assert info.value.field == "issuer"


# -- issuer= on the grants, the device login and the verifier ---------------------------


class TestIssuerArgument:
    def test_client_credentials_discovers_at_the_first_token_request(self) -> None:
        clock = FakeClock()
        idp = FakeIdP(clock=clock, issuer=ISSUER)
        grant = ClientCredentials(issuer=ISSUER, client_id="client", client_secret="secret")
        assert idp.discovery_calls == 0  # lazily
        session = Session(grant, clock=clock, transport=idp.transport)
        assert idp.validate(session.token())
        session.force_refresh()
        assert idp.discovery_calls == 1
        assert grant.token_url == idp.token_url
        assert repr(grant).startswith("ClientCredentials(token_url=")

    @pytest.mark.anyio
    async def test_async_refresh_token_grant(self) -> None:
        clock = FakeClock()
        idp = FakeIdP(clock=clock, issuer=ISSUER)
        grant = RefreshTokenGrant(
            issuer=ISSUER,
            client_id="client",
            client_secret="secret",
            refresh_token=idp.issue_refresh_token(),
        )
        session = Session(grant, clock=clock, async_transport=idp.async_transport)
        assert idp.validate(await session.atoken())
        assert idp.discovery_calls == 1
        assert grant.revocation_url == idp.revocation_url  # discovered with the token endpoint
        revoked = await session.arevoke()
        assert revoked >= 1
        assert idp.revocations == revoked

    def test_missing_token_endpoint_is_a_discovery_error(self) -> None:
        server = Server({"/.well-known/openid-configuration": (200, {"issuer": ISSUER})})
        grant = ClientCredentials(issuer=ISSUER, client_id="client", client_secret="secret")
        session = Session(grant, clock=FakeClock(), transport=server.transport)
        with pytest.raises(DiscoveryError) as info:
            session.token()
        assert info.value.field == "token_endpoint"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"client_id": "c"},
            {"token_url": f"{ISSUER}/token", "issuer": ISSUER, "client_id": "c"},
            {"issuer": "not a url", "client_id": "c"},
            {"issuer": ISSUER},
        ],
    )
    def test_both_or_neither_is_refused(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            ClientCredentials(**kwargs)

    def test_device_login_refuses_issuer_with_urls(self) -> None:
        with pytest.raises(ConfigurationError, match="not both"):
            DeviceCodeLogin(
                token_url=f"{ISSUER}/token", issuer=ISSUER, client_id="cli", clock=FakeClock()
            )
        with pytest.raises(ConfigurationError):
            DeviceCodeLogin(client_id="cli", clock=FakeClock())

    def test_verifier_needs_an_issuer_to_discover(self) -> None:
        with pytest.raises(ConfigurationError, match="issuer alone"):
            JWTVerifier()
        verifier = JWTVerifier(issuer="https://idp.invalid")
        with pytest.raises(DiscoveryError) as info:
            verifier.verify("a.b.c", now=0.0)
        assert info.value.error_class is ErrorClass.NETWORK
        assert "a.b.c" not in str(info.value)

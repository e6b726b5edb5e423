"""TokenSet, parse_token_response (RFC 6749 §5.1/§5.2), JWT claims, verification, skew."""

from __future__ import annotations

import json
import math
from email.utils import formatdate
from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from authpulse import (
    ConfigurationError,
    ErrorClass,
    JWTVerifier,
    OAuthError,
    TokenResponseError,
    TokenSet,
    TokenVerificationError,
    parse_token_response,
)
from authpulse._core.tokens import MAX_EXPIRES_IN, estimate_skew, unverified_claims

NOW = 1_800_000_000.0
KEY = "k" * 32  # HS256 test key (>= 32 bytes, so PyJWT does not warn)


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def hs256(claims: dict[str, Any], key: str = KEY, **headers: Any) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers=headers or None)


# ------------------------------------------------------------------------ TokenSet


class TestTokenSet:
    def test_lifetime_scopes_and_defaults(self) -> None:
        t = TokenSet(
            access_token=SecretStr("at_1234"),
            issued_at=NOW,
            expires_at=NOW + 600,
            scope="read write  read",
        )
        assert t.lifetime == 600
        assert t.scopes == frozenset({"read", "write"})
        assert t.token_type == "Bearer"
        assert t.refresh_token is None
        assert t.expires_at_source == "expires_in"

    def test_lifetime_never_negative(self) -> None:
        t = TokenSet(access_token=SecretStr("at_1234"), issued_at=NOW, expires_at=NOW - 5)
        assert t.lifetime == 0.0

    def test_no_scope_gives_empty_set(self) -> None:
        t = TokenSet(access_token=SecretStr("at_1234"), issued_at=NOW, expires_at=NOW + 1)
        assert t.scopes == frozenset()

    def test_is_frozen(self) -> None:
        t = TokenSet(access_token=SecretStr("at_1234"), issued_at=NOW, expires_at=NOW + 1)
        with pytest.raises(ValidationError):
            t.expires_at = NOW + 100
        assert t.expires_at == NOW + 1

    def test_extra_fields_forbidden(self) -> None:
        with pytest.raises(ValidationError):
            TokenSet(
                access_token=SecretStr("at_1234"),
                issued_at=NOW,
                expires_at=NOW + 1,
                foo="bar",  # type: ignore[call-arg]
            )

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_times_must_be_finite(self, bad: float) -> None:
        with pytest.raises(ValidationError):
            TokenSet(access_token=SecretStr("at_1234"), issued_at=NOW, expires_at=bad)
        with pytest.raises(ValidationError):
            TokenSet(access_token=SecretStr("at_1234"), issued_at=bad, expires_at=NOW)

    def test_with_refresh_token_returns_a_copy(self) -> None:
        t = TokenSet(access_token=SecretStr("at_1234"), issued_at=NOW, expires_at=NOW + 1)
        t2 = t.with_refresh_token(SecretStr("rt_5678"))
        assert t.refresh_token is None
        assert t2.refresh_token is not None
        assert t2.refresh_token.get_secret_value() == "rt_5678"
        assert t2.access_token == t.access_token

    def test_secrets_are_hidden_in_repr_str_and_json(self) -> None:
        t = TokenSet(
            access_token=SecretStr("at_SECRET_ACCESS"),
            refresh_token=SecretStr("rt_SECRET_REFRESH"),
            id_token=SecretStr("id_SECRET_ID"),
            issued_at=NOW,
            expires_at=NOW + 1,
        )
        for text in (repr(t), str(t), t.model_dump_json(), repr(t.model_dump())):
            assert "SECRET" not in text
        assert t.access_token.get_secret_value() == "at_SECRET_ACCESS"


# ------------------------------------------------------------- successful answers


class TestParseSuccess:
    def test_minimal_answer(self) -> None:
        t = parse_token_response(200, body(access_token="at_abc", expires_in=3600), now=NOW)
        assert t.access_token.get_secret_value() == "at_abc"
        assert t.issued_at == NOW
        assert t.expires_at == NOW + 3600
        assert t.expires_at_source == "expires_in"
        assert t.token_type == "Bearer"
        assert t.refresh_token is None
        assert t.id_token is None

    def test_all_fields(self) -> None:
        t = parse_token_response(
            200,
            body(
                access_token="at_abc",
                token_type="bearer",
                refresh_token="rt_def",
                id_token="id_ghi",
                scope="a b",
                expires_in=60,
            ),
            now=NOW,
        )
        assert t.token_type == "Bearer"  # normalised, case-insensitively
        assert t.refresh_token is not None
        assert t.refresh_token.get_secret_value() == "rt_def"
        assert t.id_token is not None
        assert t.id_token.get_secret_value() == "id_ghi"
        assert t.scopes == {"a", "b"}
        assert t.lifetime == 60

    @pytest.mark.parametrize("kind", ["bearer", "BEARER", "Bearer", "bEaReR"])
    def test_bearer_in_any_case_is_normalised(self, kind: str) -> None:
        t = parse_token_response(200, body(access_token="at_abc", token_type=kind), now=NOW)
        assert t.token_type == "Bearer"

    def test_empty_optional_strings_become_none_or_default(self) -> None:
        t = parse_token_response(
            200,
            body(access_token="at_abc", token_type="", refresh_token="", id_token=""),
            now=NOW,
        )
        assert t.token_type == "Bearer"
        assert t.refresh_token is None
        assert t.id_token is None

    def test_null_optional_fields_are_ignored(self) -> None:
        t = parse_token_response(
            200,
            body(access_token="at_abc", refresh_token=None, scope=None, expires_in=None),
            now=NOW,
        )
        assert t.refresh_token is None
        assert t.scope is None
        assert t.expires_at_source == "default"

    @pytest.mark.parametrize("value", ["3600", " 3600 ", 3600, 3600.0])
    def test_expires_in_string_int_or_float(self, value: object) -> None:
        t = parse_token_response(200, body(access_token="at_abc", expires_in=value), now=NOW)
        assert t.expires_at == NOW + 3600

    def test_fractional_expires_in(self) -> None:
        t = parse_token_response(200, body(access_token="at_abc", expires_in=0.5), now=NOW)
        assert t.lifetime == 0.5

    def test_expires_in_at_the_one_year_limit_is_accepted(self) -> None:
        t = parse_token_response(
            200, body(access_token="at_abc", expires_in=MAX_EXPIRES_IN), now=NOW
        )
        assert t.lifetime == MAX_EXPIRES_IN

    def test_success_status_other_than_200(self) -> None:
        t = parse_token_response(201, body(access_token="at_abc"), now=NOW)
        assert t.access_token.get_secret_value() == "at_abc"

    def test_unknown_fields_are_ignored(self) -> None:
        t = parse_token_response(200, body(access_token="at_abc", foo=[1, 2], bar=None), now=NOW)
        assert t.access_token.get_secret_value() == "at_abc"


class TestExpirySource:
    def test_expires_in_wins_over_jwt_exp(self) -> None:
        at = hs256({"exp": int(NOW) + 9999})
        t = parse_token_response(200, body(access_token=at, expires_in=100), now=NOW)
        assert t.expires_at == NOW + 100
        assert t.expires_at_source == "expires_in"

    def test_jwt_exp_when_no_expires_in(self) -> None:
        at = hs256({"exp": int(NOW) + 1234, "iat": int(NOW)})
        t = parse_token_response(200, body(access_token=at), now=NOW)
        assert t.expires_at == NOW + 1234
        assert t.expires_at_source == "jwt"

    def test_default_lifetime_when_neither(self) -> None:
        t = parse_token_response(200, body(access_token="opaque_token"), now=NOW)
        assert t.expires_at == NOW + 3600
        assert t.expires_at_source == "default"
        t = parse_token_response(
            200, body(access_token="opaque_token"), now=NOW, default_lifetime=77
        )
        assert t.expires_at == NOW + 77

    @pytest.mark.parametrize(
        "claims",
        [{}, {"exp": "tomorrow"}, {"exp": True}, {"exp": None}, {"exp": 10**400}],
        ids=["no-exp", "string-exp", "bool-exp", "null-exp", "huge-int-exp"],
    )
    def test_unusable_jwt_exp_falls_back_to_default(self, claims: dict[str, Any]) -> None:
        at = hs256(claims)
        t = parse_token_response(200, body(access_token=at), now=NOW, default_lifetime=50)
        assert t.expires_at_source == "default"
        assert t.expires_at == NOW + 50

    def test_jwt_with_infinite_exp_falls_back_to_default(self) -> None:
        # 1e400 in JSON decodes to inf
        payload = b'{"exp": 1e400}'
        at = jwt.api_jws.encode(payload, KEY, algorithm="HS256")
        t = parse_token_response(200, body(access_token=at), now=NOW, default_lifetime=50)
        assert t.expires_at_source == "default"

    def test_three_dot_opaque_token_is_not_a_jwt(self) -> None:
        t = parse_token_response(200, body(access_token="a.b.c"), now=NOW)
        assert t.expires_at_source == "default"


# -------------------------------------------------------------- malformed answers


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty body"),
        (b"<html>oops</html>", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (b'"a string"', "JSON str"),
        (b"42", "JSON int"),
        (b"null", "empty body"),
        (b"[" * 100_000, "not JSON"),  # deep nesting must not escape as RecursionError
    ],
    ids=["empty", "html", "binary", "array", "string", "number", "null", "deep-nesting"],
)
def test_non_object_bodies(content: bytes, needle: str) -> None:
    with pytest.raises(TokenResponseError) as info:
        parse_token_response(200, content, now=NOW, content_type="text/html; charset=utf-8")
    assert needle in str(info.value)
    assert info.value.status_code == 200
    assert info.value.error_class is ErrorClass.CLIENT


def test_not_json_message_names_content_type_and_size() -> None:
    with pytest.raises(TokenResponseError) as info:
        parse_token_response(502, b"Bad Gateway", now=NOW, content_type="text/plain; q=1")
    assert "'text/plain'" in str(info.value)
    assert "11 bytes" in str(info.value)
    assert info.value.status_code == 502


def test_not_json_without_content_type() -> None:
    with pytest.raises(TokenResponseError, match="'unknown'"):
        parse_token_response(200, b"nope", now=NOW)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({}, "no 'access_token'"),
        ({"access_token": None}, "no 'access_token'"),
        ({"access_token": ""}, "'access_token' must be a non-empty string"),
        ({"access_token": 12345}, "'access_token' must be a non-empty string"),
        ({"access_token": ["x"]}, "'access_token' must be a non-empty string"),
        ({"access_token": "at_abc", "token_type": 1}, "'token_type' must be a string"),
        ({"access_token": "at_abc", "refresh_token": 1}, "'refresh_token' must be a string"),
        ({"access_token": "at_abc", "id_token": {}}, "'id_token' must be a string"),
        ({"access_token": "at_abc", "scope": ["a"]}, "'scope' must be a string"),
    ],
)
def test_bad_fields(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(TokenResponseError) as info:
        parse_token_response(200, body(**fields), now=NOW)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"access_token": "tök"}, "access_token"),
        ({"access_token": "abc\r\nX-Injected: 1"}, "access_token"),
        ({"access_token": "abc\x00def"}, "access_token"),
        ({"access_token": "at_ok", "token_type": "Bearer x"}, "token_type"),
        ({"access_token": "at_ok", "token_type": "Bearer\r\nX: 1"}, "token_type"),
        ({"access_token": "at_ok", "token_type": "Bäarer"}, "token_type"),
    ],
    ids=["non-ascii", "crlf", "nul", "type-space", "type-crlf", "type-non-ascii"],
)
def test_values_unusable_in_a_header_are_refused(fields: dict[str, Any], field: str) -> None:
    """RFC 6749 A.12/A.13; they would otherwise fail later in httpx, untyped."""
    with pytest.raises(TokenResponseError, match=f"'{field}'") as info:
        parse_token_response(200, body(**fields), now=NOW)
    assert fields["access_token"] not in str(info.value) + repr(info.value)


@pytest.mark.parametrize("kind", ["Basic", "N_A", "mac", "Digest", "bearer2", "x" * 100])
def test_token_types_other_than_bearer_are_refused(kind: str) -> None:
    """RFC 6749 §7.1: a token of a type the client does not understand is not used."""
    with pytest.raises(TokenResponseError, match="only Bearer tokens are supported") as info:
        parse_token_response(200, body(access_token="at_abc", token_type=kind), now=NOW)
    assert "at_abc" not in str(info.value)
    assert len(str(info.value)) < 250  # a long type is shortened


@pytest.mark.parametrize("kind", ["DPoP", "dpop"])
def test_dpop_is_refused_as_not_supported(kind: str) -> None:
    with pytest.raises(TokenResponseError, match="DPoP-bound tokens are not supported"):
        parse_token_response(200, body(access_token="at_abc", token_type=kind), now=NOW)


@pytest.mark.parametrize(
    "access",
    ["a b", "a b~!{}", "abc,def", "abc;", "a=b", "==", "abc\\def", 'tok"en', "~" * 10 + "=x"],
)
def test_access_tokens_outside_the_b64token_syntax_are_refused(access: str) -> None:
    """RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="."""
    with pytest.raises(TokenResponseError, match="not a valid Bearer token") as info:
        parse_token_response(200, body(access_token=access), now=NOW)
    assert access not in str(info.value) + repr(info.value)


@pytest.mark.parametrize("access", ["abc", "a-b.c_d~e+f/g", "YWJj==", "eyJ.eyJ.sig", "Z" * 16384])
def test_b64token_access_tokens_are_accepted(access: str) -> None:
    t = parse_token_response(200, body(access_token=access), now=NOW)
    assert t.access_token.get_secret_value() == access


def test_an_access_token_longer_than_the_cap_is_refused() -> None:
    from authpulse._core.tokens import MAX_ACCESS_TOKEN_LENGTH

    assert MAX_ACCESS_TOKEN_LENGTH == 16 * 1024
    with pytest.raises(TokenResponseError, match="longer than 16384 characters"):
        parse_token_response(200, body(access_token="a" * (1024 * 1024)), now=NOW)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        -3600,
        0.0,
        -0.5,
        MAX_EXPIRES_IN + 1,
        10 * 365 * 24 * 3600,
        10**400,
        True,
        False,
        "abc",
        "",
        "-5",
        "3600.5",
        "1e3",
        "²",
        "٣٦٠٠",
        "9" * 5000,
        [3600],
        {"s": 1},
    ],
    ids=repr,
)
def test_bad_expires_in(value: object) -> None:
    with pytest.raises(TokenResponseError, match="expires_in") as info:
        parse_token_response(200, body(access_token="at_abc", expires_in=value), now=NOW)
    assert "at_abc" not in str(info.value)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_expires_in(literal: bytes) -> None:
    content = b'{"access_token": "at_abc", "expires_in": ' + literal + b"}"
    with pytest.raises(TokenResponseError, match="positive number"):
        parse_token_response(200, content, now=NOW)


# ---------------------------------------------------------------- error answers


class TestOAuthErrors:
    def test_error_body(self) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(
                400,
                body(
                    error="invalid_grant",
                    error_description="refresh token expired",
                    error_uri="https://idp.test/doc",
                ),
                now=NOW,
            )
        exc = info.value
        assert exc.error == "invalid_grant"
        assert exc.description == "refresh token expired"
        assert exc.uri == "https://idp.test/doc"
        assert exc.status_code == 400
        assert exc.permanent
        assert exc.error_class is ErrorClass.AUTH
        assert "invalid_grant" in str(exc)
        assert "HTTP 400" in str(exc)

    def test_error_field_wins_even_with_status_200(self) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(200, body(error="slow_down", access_token="at_abc"), now=NOW)
        assert info.value.error == "slow_down"
        assert not info.value.permanent

    @pytest.mark.parametrize(
        "code",
        [
            "invalid_grant",
            "invalid_client",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "access_denied",
            "invalid_request",
        ],
    )
    def test_permanent_codes(self, code: str) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(400, body(error=code), now=NOW)
        assert info.value.permanent

    def test_temporarily_unavailable_is_not_permanent(self) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(400, body(error="temporarily_unavailable"), now=NOW)
        assert not info.value.permanent

    @pytest.mark.parametrize("error", [None, "", 42, ["invalid_grant"]], ids=repr)
    def test_4xx_without_valid_error_code(self, error: object) -> None:
        fields: dict[str, Any] = {"access_token": "at_abc"}
        if error is not None:
            fields["error"] = error
        with pytest.raises(TokenResponseError, match="without a valid 'error'") as info:
            parse_token_response(400, body(**fields), now=NOW)
        assert info.value.status_code == 400

    def test_non_string_description_and_uri_are_dropped(self) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(
                400, body(error="invalid_grant", error_description=5, error_uri=[1]), now=NOW
            )
        assert info.value.description is None
        assert info.value.uri is None

    def test_description_is_shortened_and_made_printable(self) -> None:
        desc = "line1\nline2\x00\x1b[31m" + "x" * 500
        with pytest.raises(OAuthError) as info:
            parse_token_response(400, body(error="invalid_grant", error_description=desc), now=NOW)
        d = info.value.description
        assert d is not None
        assert len(d) == 200
        assert d.endswith("…")
        assert all(ch.isprintable() for ch in d)
        assert "\n" not in str(info.value)

    def test_error_code_is_shortened(self) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(400, body(error="e" * 1000), now=NOW)
        assert len(info.value.error) == 64

    def test_secrets_are_scrubbed_from_description_and_code(self) -> None:
        desc = "client secret s3cr3t-value and refresh token rt_old_value are bad"
        with pytest.raises(OAuthError) as info:
            parse_token_response(
                400,
                body(error="invalid_grant rt_old_value", error_description=desc),
                now=NOW,
                secrets=["s3cr3t-value", "rt_old_value", "", "abc"],
            )
        exc = info.value
        for text in (str(exc), repr(exc), exc.description or "", exc.error):
            assert "s3cr3t-value" not in text
            assert "rt_old_value" not in text
        assert "[redacted]" in (exc.description or "")

    def test_tokens_echoed_in_an_error_body_are_scrubbed(self) -> None:
        with pytest.raises(OAuthError) as info:
            parse_token_response(
                400,
                body(
                    error="invalid_request",
                    error_description="got at_ECHOED_ACCESS and rt_ECHOED_REFRESH",
                    access_token="at_ECHOED_ACCESS",
                    refresh_token="rt_ECHOED_REFRESH",
                ),
                now=NOW,
            )
        assert "ECHOED" not in str(info.value)
        assert "ECHOED" not in repr(info.value)


# ------------------------------------------------------------------------ JWT claims


class TestUnverifiedClaims:
    def test_reads_claims_without_the_key(self) -> None:
        assert unverified_claims(hs256({"exp": 5, "sub": "x"}, key="z" * 32)) == {
            "exp": 5,
            "sub": "x",
        }

    @pytest.mark.parametrize("token", ["opaque", "a.b", "a.b.c", "a.b.c.d", "..", "é.é.é"])
    def test_non_jwts_give_none(self, token: str) -> None:
        assert unverified_claims(token) is None

    def test_non_object_payload_gives_none(self) -> None:
        token = jwt.api_jws.encode(b"[1,2,3]", KEY, algorithm="HS256")
        assert unverified_claims(token) is None


class TestJWTVerifier:
    def verifier(self, **kwargs: Any) -> JWTVerifier:
        return JWTVerifier(algorithms=["HS256"], key=KEY, **kwargs)

    def test_valid_token(self) -> None:
        token = hs256({"sub": "a", "exp": int(NOW) + 60, "iss": "https://idp.test"})
        claims = self.verifier(issuer="https://idp.test").verify(token, now=NOW)
        assert claims["sub"] == "a"

    @pytest.mark.parametrize("algs", [["none"], ["NONE"], ["HS256", "None"]])
    def test_none_algorithm_is_refused(self, algs: list[str]) -> None:
        with pytest.raises(ConfigurationError, match="none"):
            JWTVerifier(algorithms=algs, key=KEY)

    def test_empty_algorithm_list_is_refused(self) -> None:
        with pytest.raises(ConfigurationError):
            JWTVerifier(algorithms=[], key=KEY)

    def test_exactly_one_key_source(self) -> None:
        with pytest.raises(ConfigurationError):
            JWTVerifier(algorithms=["HS256"])
        with pytest.raises(ConfigurationError):
            JWTVerifier(algorithms=["HS256"], key=KEY, jwks_url="https://idp.test/jwks")

    def test_unsigned_token_is_refused(self) -> None:
        token = jwt.encode({"sub": "a"}, "", algorithm="none")
        with pytest.raises(TokenVerificationError, match="not allowed"):
            self.verifier().verify(token, now=NOW)

    def test_algorithm_outside_the_allow_list(self) -> None:
        token = jwt.encode({"sub": "a"}, KEY * 2, algorithm="HS512")
        with pytest.raises(TokenVerificationError, match="'HS512' is not allowed"):
            self.verifier().verify(token, now=NOW)

    def test_bad_signature(self) -> None:
        token = hs256({"sub": "a"}, key="w" * 32)
        with pytest.raises(TokenVerificationError, match="InvalidSignatureError") as info:
            self.verifier().verify(token, now=NOW)
        assert token not in str(info.value)

    def test_not_a_jwt(self) -> None:
        with pytest.raises(TokenVerificationError, match="well-formed"):
            self.verifier().verify("opaque-token-value", now=NOW)

    def test_issuer_and_audience(self) -> None:
        token = hs256({"iss": "https://evil.test", "aud": "api"})
        with pytest.raises(TokenVerificationError):
            self.verifier(issuer="https://idp.test").verify(token, now=NOW)
        with pytest.raises(TokenVerificationError):
            self.verifier(audience="other").verify(token, now=NOW)
        assert self.verifier(audience=["other", "api"]).verify(token, now=NOW)["aud"] == "api"

    def test_expiry_with_leeway_on_the_given_now(self) -> None:
        token = hs256({"exp": int(NOW)})
        v = self.verifier(leeway=30)
        assert v.verify(token, now=NOW + 30)["exp"] == int(NOW)
        with pytest.raises(TokenVerificationError, match="expired"):
            v.verify(token, now=NOW + 31)

    def test_not_before_with_leeway(self) -> None:
        token = hs256({"nbf": int(NOW) + 100})
        v = self.verifier(leeway=30)
        with pytest.raises(TokenVerificationError, match="nbf"):
            v.verify(token, now=NOW + 69)
        assert v.verify(token, now=NOW + 70)["nbf"] == int(NOW) + 100


# ---------------------------------------------------------------------------- skew


class TestEstimateSkew:
    def test_from_date_header(self) -> None:
        date = formatdate(NOW + 120, usegmt=True)
        assert estimate_skew(local_now=NOW, date_header=date) == pytest.approx(120)
        date = formatdate(NOW - 45, usegmt=True)
        assert estimate_skew(local_now=NOW, date_header=date) == pytest.approx(-45)

    def test_iat_is_preferred_over_date(self) -> None:
        date = formatdate(NOW + 120, usegmt=True)
        assert estimate_skew(local_now=NOW, date_header=date, iat=NOW - 30) == -30

    def test_small_differences_are_noise(self) -> None:
        assert estimate_skew(local_now=NOW, iat=NOW + 1.9) == 0.0
        assert estimate_skew(local_now=NOW, iat=NOW - 1.9) == 0.0
        assert estimate_skew(local_now=NOW, iat=NOW + 2.0) == 2.0
        assert estimate_skew(local_now=NOW, iat=NOW + 5, resolution=10) == 0.0

    @pytest.mark.parametrize("date", [None, "", "yesterday", "Mon, 99 Foo 2020 99:99:99 GMT"])
    def test_nothing_usable_gives_zero(self, date: str | None) -> None:
        assert estimate_skew(local_now=NOW, date_header=date) == 0.0


def test_far_future_jwt_exp_is_capped_like_expires_in() -> None:
    import jwt as pyjwt

    from authpulse._core.tokens import MAX_EXPIRES_IN

    token = pyjwt.encode({"exp": 10**12}, "k" * 32, algorithm="HS256")
    body = json.dumps({"access_token": token, "token_type": "Bearer"}).encode()
    ts = parse_token_response(200, body, now=1000.0)
    assert ts.expires_at_source == "jwt"
    assert ts.expires_at == 1000.0 + MAX_EXPIRES_IN

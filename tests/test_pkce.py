"""The browser login's pure decisions: verifier, challenge, URL, redirect, nonce."""

from __future__ import annotations

import base64
import json
import string
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from authpulse import AccessDeniedError, AuthorizationError, ConfigurationError
from authpulse._core.pkce import (
    build_authorization_url,
    check_challenge_method,
    check_nonce,
    code_verifier,
    id_token_claims,
    parse_redirect,
    random_value,
    s256_challenge,
)

UNRESERVED = set(string.ascii_letters + string.digits + "-._~")
STATE = SecretStr("st-0123456789abcdef")
ISSUER = "https://idp.test"


@given(st.binary(min_size=32, max_size=96))
def test_a_verifier_is_43_to_128_unreserved_characters(raw: bytes) -> None:
    verifier = code_verifier(raw).get_secret_value()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= UNRESERVED
    assert len(s256_challenge(SecretStr(verifier))) == 43


@pytest.mark.parametrize("size", [0, 16, 31, 97, 200])
def test_too_few_or_too_many_bytes_make_no_verifier(size: int) -> None:
    with pytest.raises(ConfigurationError):
        code_verifier(b"\0" * size)


def test_the_s256_challenge_is_rfc_7636_appendix_b() -> None:
    raw = bytes(
        [
            *(116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186),
            *(22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121),
        ]
    )
    verifier = code_verifier(raw)
    assert verifier.get_secret_value() == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_only_s256_is_accepted() -> None:
    assert check_challenge_method("S256") == "S256"
    for method in ("plain", "s256", None):
        with pytest.raises(ConfigurationError, match="S256"):
            check_challenge_method(method)
    with pytest.raises(ConfigurationError):
        s256_challenge(SecretStr("short"))


def test_state_and_nonce_need_16_bytes() -> None:
    assert len(random_value(b"\1" * 16).get_secret_value()) == 22
    with pytest.raises(ConfigurationError):
        random_value(b"\1" * 15)


def test_the_authorization_url_keeps_the_endpoints_query() -> None:
    url = build_authorization_url(
        "https://idp.test/authorize?tenant=acme&state=old",
        client_id="app",
        redirect_uri="http://127.0.0.1:5000/callback",
        state=STATE,
        challenge="c" * 43,
        scope="openid",
        nonce=SecretStr("n" * 22),
        extra_params={"prompt": "login"},
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "idp.test", "/authorize")
    query = parse_qsl(parts.query)
    assert dict(query) == {
        "tenant": "acme",
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": "http://127.0.0.1:5000/callback",
        "state": STATE.get_secret_value(),
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
        "scope": "openid",
        "nonce": "n" * 22,
        "prompt": "login",
    }
    assert len(query) == len(dict(query))  # the endpoint's own state was replaced
    with pytest.raises(ConfigurationError, match="code_challenge"):
        build_authorization_url(
            "https://idp.test/a",
            client_id="app",
            redirect_uri="http://127.0.0.1:1/callback",
            state=STATE,
            challenge="c" * 43,
            extra_params={"code_challenge": "mine"},
        )


def _redirect(**fields: str) -> str:
    return urlencode({"state": STATE.get_secret_value(), **fields})


def test_a_good_redirect_gives_the_code() -> None:
    code = parse_redirect(_redirect(code="the-code", iss=ISSUER), state=STATE, issuer=ISSUER)
    assert code.get_secret_value() == "the-code"
    assert "the-code" not in repr(code)


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        (urlencode({"code": "c", "state": "other"}), AuthorizationError, "state"),
        (urlencode({"code": "c"}), AuthorizationError, "state"),
        (_redirect(), AuthorizationError, "no code"),
        (_redirect(code="c", iss="https://evil.test"), AuthorizationError, "issuer"),
        (_redirect(error="access_denied"), AccessDeniedError, "access_denied"),
        (_redirect(error="invalid_scope", iss=ISSUER), AuthorizationError, "invalid_scope"),
        (_redirect(code="c") + "&" + _redirect(code="d"), AuthorizationError, "malformed"),
    ],
)
def test_a_bad_redirect_is_a_typed_error(query: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_redirect(query, state=STATE, issuer=ISSUER)


def test_an_error_redirect_is_checked_for_its_issuer_too() -> None:
    with pytest.raises(AuthorizationError, match="issuer"):
        parse_redirect(_redirect(error="access_denied", iss="https://evil.test"), state=STATE,
                       issuer=ISSUER)  # fmt: skip
    with pytest.raises(AuthorizationError, match="no iss"):
        parse_redirect(_redirect(code="c"), state=STATE, issuer=ISSUER, require_iss=True)


def test_an_error_description_is_sanitised() -> None:
    with pytest.raises(AuthorizationError) as caught:
        parse_redirect(
            _redirect(error="server_error", error_description=f"bad {STATE.get_secret_value()}\n"),
            state=STATE,
        )
    assert caught.value.error == "server_error"
    assert caught.value.description is not None
    assert STATE.get_secret_value() not in caught.value.description
    assert "\n" not in caught.value.description


def _outcome(query: str | dict[str, str]) -> SecretStr | Exception:
    try:
        return parse_redirect(query, state=STATE, issuer=ISSUER)
    except (AuthorizationError, AccessDeniedError) as exc:
        return exc


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=6))
def test_any_query_is_a_code_or_a_typed_error(fields: dict[str, str]) -> None:
    for outcome in (_outcome(fields), _outcome(urlencode(fields))):
        if isinstance(outcome, Exception):
            assert STATE.get_secret_value() not in str(outcome)
        else:
            assert fields.get("state") == STATE.get_secret_value()
            assert "error" not in fields
            assert outcome.get_secret_value() == fields["code"]


@given(st.text(max_size=300), st.booleans())
def test_any_query_string_is_a_code_or_a_typed_error(text: str, with_state: bool) -> None:
    query = f"{_redirect()}&{text}" if with_state else text
    outcome = _outcome(query)
    fields = dict(parse_qsl(query, keep_blank_values=True))
    if isinstance(outcome, SecretStr):
        assert fields["code"] == outcome.get_secret_value()
        assert fields["state"] == STATE.get_secret_value()
    else:
        assert isinstance(outcome, AuthorizationError | AccessDeniedError)


def _jwt(claims: object) -> SecretStr:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return SecretStr(f"eyJhbGciOiJub25lIn0.{payload}.c2ln")


def test_the_nonce_claim_must_match() -> None:
    nonce = SecretStr("n-123")
    check_nonce(id_token_claims(_jwt({"nonce": "n-123"})), nonce)
    for claims in ({"nonce": "other"}, {}, {"nonce": 5}):
        with pytest.raises(AuthorizationError, match="nonce"):
            check_nonce(id_token_claims(_jwt(claims)), nonce)
    for token in (SecretStr("not-a-jwt"), SecretStr("a.!!!.c"), _jwt([1, 2])):
        with pytest.raises(AuthorizationError, match="ID token"):
            id_token_claims(token)

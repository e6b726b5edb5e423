"""Property tests: parsing never raises anything but typed errors, and never leaks."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authpulse import OAuthError, TokenResponseError, TokenSet, parse_token_response
from authpulse._core.tokens import MAX_EXPIRES_IN
from authpulse._runtime.backend import httpx

NOW = 1_800_000_000.0

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Secrets look like real tokens: URL-safe characters, long enough to be scrubbed.
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
secret_st = st.text(_ALPHABET, min_size=8, max_size=40).map(lambda s: "S3CR3T" + s)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)

expires_in_st = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, -1, 1, 3600, MAX_EXPIRES_IN, MAX_EXPIRES_IN + 1, 10 * 365 * 86400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=0, max_value=10**9).map(str),
    st.just(10**400),
    st.just("9" * 5000),
    st.lists(st.integers(), max_size=2),
)

token_fields = ("access_token", "token_type", "refresh_token", "id_token", "scope")
field_value_st = st.one_of(json_value, secret_st)


def _dumps(obj: Any) -> bytes:
    # allow_nan: a broken server may well send NaN / Infinity literals
    return json.dumps(obj, allow_nan=True).encode()


def _parse(status: int, content: bytes, **kwargs: Any) -> TokenSet | Exception:
    """The parsed token set, or the exception parsing raised (whatever it is)."""
    try:
        return parse_token_response(status, content, now=NOW, **kwargs)
    except Exception as exc:
        return exc


def _check_typed(outcome: TokenSet | Exception) -> None:
    if isinstance(outcome, Exception):
        assert isinstance(outcome, OAuthError | TokenResponseError), type(outcome)


@FUZZ
@given(
    status=st.integers(min_value=100, max_value=599),
    content=st.binary(max_size=300),
    ctype=st.one_of(st.none(), st.text(max_size=30)),
)
def test_random_bytes_never_raise_untyped(status: int, content: bytes, ctype: str | None) -> None:
    t = _parse(status, content, content_type=ctype)
    _check_typed(t)
    if isinstance(t, TokenSet):
        assert status < 400
        assert math.isfinite(t.expires_at)


@FUZZ
@given(status=st.integers(min_value=100, max_value=599), value=json_value)
def test_random_json_never_raises_untyped(status: int, value: object) -> None:
    t = _parse(status, _dumps(value))
    _check_typed(t)
    if isinstance(t, TokenSet):
        assert isinstance(value, dict)
        assert status < 400


@FUZZ
@given(expires_in=expires_in_st, status=st.sampled_from([200, 201, 400, 401, 500]))
def test_random_expires_in(expires_in: object, status: int) -> None:
    content = _dumps({"access_token": "at_fuzz_token", "expires_in": expires_in})
    t = _parse(status, content)
    _check_typed(t)
    if isinstance(t, Exception):
        assert "at_fuzz_token" not in str(t)
        assert "at_fuzz_token" not in repr(t)
        return
    # accepted: a sane, finite, positive lifetime of at most a year
    assert status < 400
    # (a sub-ulp expires_in such as 1e-38 rounds to a zero lifetime: the session
    # then refuses the token as already expired)
    assert 0 <= t.lifetime <= MAX_EXPIRES_IN
    assert t.expires_at >= t.issued_at
    assert t.issued_at == NOW
    if expires_in is None:
        assert t.expires_at_source == "default"
    else:
        assert t.expires_at_source == "expires_in"
        assert not isinstance(expires_in, bool)


@FUZZ
@given(
    status=st.sampled_from([200, 400, 401, 403, 500, 503]),
    fields=st.dictionaries(
        st.sampled_from(
            (
                *token_fields,
                "expires_in",
                "error",
                "error_description",
                "error_uri",
                "other",
            )
        ),
        field_value_st,
        max_size=8,
    ),
    client_secret=secret_st,
    sent_refresh=secret_st,
    echo=st.booleans(),
)
def test_no_secret_in_any_error(
    status: int,
    fields: dict[str, Any],
    client_secret: str,
    sent_refresh: str,
    echo: bool,
) -> None:
    """Whatever the server answers, an error never quotes a token or a secret.

    Secrets: the client secret and refresh token the request carried, and
    any token string that appears in the answer itself.
    """
    if echo:
        # the server quotes everything back at us
        quoted = " ".join(str(v) for v in (client_secret, sent_refresh, *fields.values()))
        fields["error_description"] = "echo: " + quoted
        fields["error"] = "bad " + sent_refresh
    content = _dumps(fields)
    secrets = [client_secret, sent_refresh]
    # every generated secret starts with S3CR3T (random text could collide with our own words)
    secrets += [
        v
        for k, v in fields.items()
        if k in ("access_token", "refresh_token", "id_token")
        and isinstance(v, str)
        and v.startswith("S3CR3T")
    ]
    outcome = _parse(
        status, content, content_type="application/json", secrets=[client_secret, sent_refresh]
    )
    _check_typed(outcome)
    if isinstance(outcome, Exception):
        text = str(outcome) + repr(outcome)
        if isinstance(outcome, OAuthError):
            text += outcome.error + (outcome.description or "")
        for s in secrets:
            assert s not in text
    else:
        assert status < 400


@FUZZ
@given(desc=st.text(max_size=600), code=st.text(min_size=1, max_size=200))
def test_error_text_is_short_and_printable(desc: str, code: str) -> None:
    content = _dumps({"error": code, "error_description": desc})
    with pytest.raises(OAuthError) as info:
        parse_token_response(400, content, now=NOW)
    exc = info.value
    assert len(exc.error) <= 64
    assert exc.description is None or len(exc.description) <= 200
    assert all(ch.isprintable() for ch in (exc.description or ""))
    assert all(ch.isprintable() for ch in exc.error)


@FUZZ
@given(access=st.text(min_size=1, max_size=40), token_type=st.text(max_size=12))
def test_accepted_tokens_always_fit_in_a_header(access: str, token_type: str) -> None:
    t = _parse(200, _dumps({"access_token": access, "token_type": token_type}))
    _check_typed(t)
    if isinstance(t, TokenSet):
        header = f"{t.token_type} {t.access_token.get_secret_value()}"
        request = httpx.Request("GET", "https://api.test/", headers={"Authorization": header})
        assert request.headers["authorization"] == header
        assert "\r" not in header
        assert "\n" not in header
    else:
        assert access not in str(t) or len(access) < 4 or access in _OUR_WORDS


_OUR_WORDS = "token response field 'access_token' 'token_type' has spaces or characters"


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
wide_token_st = st.one_of(
    st.text(min_size=1, max_size=60),  # any characters at all
    st.text(_B64 + "= \t\"',;\\\r\n\x00é€", min_size=1, max_size=60),  # near misses
    st.builds(  # well-formed b64tokens, padded or not
        lambda core, pad: core + "=" * pad,
        st.text(_B64, min_size=1, max_size=60),
        st.integers(min_value=0, max_value=3),
    ),
    st.builds(  # around the length cap
        lambda n, ch: ch * n,
        st.sampled_from([16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 100_000]),
        st.sampled_from(["a", " ", "="]),
    ),
)


def _is_b64token(value: str) -> bool:
    core = value.rstrip("=")
    return bool(core) and all(ch in _B64 for ch in core)


@FUZZ
@given(access=wide_token_st)
def test_access_token_syntax_and_length(access: str) -> None:
    """Accepted exactly when RFC 6750 b64token and at most MAX_ACCESS_TOKEN_LENGTH
    long; a refusal is typed and never quotes the token."""
    from authpulse._core.tokens import MAX_ACCESS_TOKEN_LENGTH

    outcome = _parse(200, _dumps({"access_token": access}))
    expected = _is_b64token(access) and len(access) <= MAX_ACCESS_TOKEN_LENGTH
    if expected:
        assert isinstance(outcome, TokenSet)
        assert outcome.access_token.get_secret_value() == access
    else:
        assert isinstance(outcome, TokenResponseError), type(outcome)
        if len(access) >= 4:
            assert access not in str(outcome) + repr(outcome)


@FUZZ
@given(token_type=st.one_of(st.text(max_size=20), st.sampled_from(["bearer", "BeArEr", "DPoP"])))
def test_only_bearer_token_types_are_used(token_type: str) -> None:
    outcome = _parse(200, _dumps({"access_token": "at_ok", "token_type": token_type}))
    if token_type == "" or token_type.lower() == "bearer":
        assert isinstance(outcome, TokenSet)
        assert outcome.token_type == "Bearer"
    else:
        assert isinstance(outcome, TokenResponseError), type(outcome)
        assert all(ch.isprintable() for ch in str(outcome))
        assert len(str(outcome)) < 300

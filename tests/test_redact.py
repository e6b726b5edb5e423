"""One rule for secret-looking names, used by the dashboard, exports, the CLI,
the JSON logs and the event model."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import authpulse
from authpulse import (
    ClientCredentials,
    ConfigurationError,
    DashboardServer,
    Event,
    EventKind,
    SessionManager,
    is_secret_name,
)
from authpulse._core.redact import (
    DESCRIPTOR_WORDS,
    REDACTED,
    SECRET_PAIRS,
    SECRET_WORDS,
    name_words,
)
from authpulse.logging_config import JsonFormatter
from authpulse.testing import FakeClock, FakeIdP

#: spellings people use for secrets in metadata, headers and settings
REPORTED = [
    "clientSecret",
    "accessToken",
    "refreshToken",
    "apiToken",
    "x-api-key",
    "aws_secret_access_key",
    "secret_key",
    "privateKey",
]
MORE_SECRETS = [
    "password",
    "DB_PASSWORD",
    "Authorization",
    "Proxy-Authorization",
    "set-cookie",
    "X-Auth-Token",
    "APIKey",
    "api.key",
    "client_assertion",
    "code_verifier",
    "id_token",
    "csrf_token",
    "github.token",
    "SESSION_KEY",
    "signingKey",
    "sentry dsn",
]
HARMLESS = [
    "token_type",
    "tokenType",
    "token_expires_at",
    "refresh_token_expires_in",
    "has_refresh_token",
    "expires_at",
    "refresh_count",
    "session_id",
    "store_key",
    "key",
    "api_key_id",
    "user_agent",
    "ip_address",
    "device",
    "plan",
    "tenant",
    "",
]


@pytest.mark.parametrize("name", REPORTED + MORE_SECRETS)
def test_secret_spellings_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", HARMLESS)
def test_descriptions_of_secrets_and_plain_names_are_not(name: str) -> None:
    assert not is_secret_name(name)


def test_words_split_at_separators_and_camel_case() -> None:
    assert name_words("XApiKey") == ("x", "api", "key")
    assert name_words("AWS_SECRET_ACCESS_KEY") == ("aws", "secret", "access", "key")
    assert name_words("clientSecret") == ("client", "secret")
    assert name_words("oauth2.refresh-token") == ("oauth", "2", "refresh", "token")


def _spell(words: list[str], style: str) -> str:
    if style == "camel":
        return words[0].lower() + "".join(w.capitalize() for w in words[1:])
    if style == "pascal":
        return "".join(w.capitalize() for w in words)
    sep = {"snake": "_", "kebab": "-", "dot": ".", "space": " ", "upper": "_"}[style]
    out = sep.join(words)
    return out.upper() if style == "upper" else out


_PLAIN = st.sampled_from(["user", "client", "github", "db", "my", "x", "aws", "primary"])
_SECRET_PARTS = st.one_of(
    st.sampled_from(sorted(SECRET_WORDS)).map(lambda w: [w]),
    st.sampled_from(sorted(SECRET_PAIRS)).map(list),
)
_STYLES = st.sampled_from(["camel", "pascal", "snake", "kebab", "dot", "space", "upper"])


@given(prefix=st.lists(_PLAIN, max_size=2), secret=_SECRET_PARTS, style=_STYLES)
def test_every_spelling_of_a_secret_word_is_recognised(
    prefix: list[str], secret: list[str], style: str
) -> None:
    assert is_secret_name(_spell([*prefix, *secret], style))


@given(secret=_SECRET_PARTS, last=st.sampled_from(sorted(DESCRIPTOR_WORDS)), style=_STYLES)
def test_a_descriptor_last_word_is_not_a_secret(secret: list[str], last: str, style: str) -> None:
    assert not is_secret_name(_spell([*secret, last], style))


@given(st.text(max_size=40))
def test_any_name_gives_an_answer(name: str) -> None:
    assert isinstance(is_secret_name(name), bool)


# ----------------------------------------------------------------------------- where it applies


@pytest.fixture
def manager(clock: FakeClock, idp: FakeIdP) -> Iterator[SessionManager]:
    m = SessionManager(clock=clock, transport=idp.transport, seed=1)
    yield m
    m.shutdown()


def _with_secret_metadata(manager: SessionManager, idp: FakeIdP) -> dict[str, str]:
    custom = {name: f"value-of-{i}-4f2c9a" for i, name in enumerate(REPORTED)}
    manager.create_session(
        "alice",
        ClientCredentials(idp.token_url, "client", "secret"),
        session_id="s1",
        metadata={"custom": {**custom, "plan": "pro"}},
    )
    return custom


def test_the_dashboard_redacts_every_reported_spelling(
    manager: SessionManager, idp: FakeIdP
) -> None:
    custom = _with_secret_metadata(manager, idp)
    with DashboardServer(manager, port=0) as server, httpx.Client(base_url=server.url) as http:
        texts = [http.get("/api/sessions").text, http.get("/api/sessions/s1").text]
    detail = json.loads(texts[1])
    shown = detail["record"]["metadata"]["custom"]
    assert shown == {**dict.fromkeys(REPORTED, REDACTED), "plan": "pro"}
    for value in custom.values():
        assert all(value not in t for t in texts)


def test_exports_and_archives_redact_them(manager: SessionManager, idp: FakeIdP) -> None:
    custom = _with_secret_metadata(manager, idp)
    exported = manager.export_json("s1")
    manager.close("s1")
    archived: list[dict[str, object]] = []
    manager.archive(archived.append)
    text = exported + json.dumps(archived)
    for value in custom.values():
        assert value not in text
    assert json.loads(exported)["session"]["metadata"]["custom"]["plan"] == "pro"
    # the store keeps the real values: redaction is for showing, not for storing
    assert manager.record("s1").metadata.custom["clientSecret"] == custom["clientSecret"]


def test_json_logs_redact_secret_looking_extras() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(all_extras=True))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "hello",
            extra={"clientSecret": "s-123456", "x_api_key": "k-123456", "tenant": "acme"},
        )
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["clientSecret"] == REDACTED
    assert line["x_api_key"] == REDACTED
    assert line["tenant"] == "acme"


@pytest.mark.parametrize("name", REPORTED)
def test_events_refuse_the_same_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="looks like a secret"):
        Event(EventKind.UPDATED, 0.0, fields={name: "x"})


def test_public_names() -> None:
    assert authpulse.is_secret_name("clientSecret")
    assert authpulse.redact_mapping({"apiToken": "x", "plan": "pro"}) == {
        "apiToken": REDACTED,
        "plan": "pro",
    }

"""AuthpulseSettings: AUTHPULSE_* variables -> the library's objects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

import authpulse
from authpulse import (
    AuthpulseSettings,
    BreakerPolicy,
    CachePolicy,
    ConfigurationError,
    ManagerSettings,
    RefreshPolicy,
    RetryPolicy,
    TokenRetry,
)
from authpulse._surfaces.settings import SECRET_SETTINGS, env_name, parse_duration

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTHPULSE_* variable of the machine leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("AUTHPULSE_"):
            monkeypatch.delenv(name)


def test_exported_from_the_package() -> None:
    assert authpulse.AuthpulseSettings is AuthpulseSettings
    assert "AuthpulseSettings" in authpulse.__all__


def test_defaults_are_the_library_defaults() -> None:
    s = AuthpulseSettings()
    assert s.refresh_policy() == RefreshPolicy()
    assert s.token_retry() == TokenRetry()
    assert s.manager_settings() == ManagerSettings()
    assert s.retry_policy() == RetryPolicy()
    assert s.breaker_policy() == BreakerPolicy()
    assert s.cache_policy() == CachePolicy()
    assert s.store_url.get_secret_value() == "memory://"
    assert s.encryption_keys == []
    assert s.log_level == "WARNING"
    assert isinstance(s.open_store(), authpulse.MemoryStore)


def test_environment_variables_become_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "AUTHPULSE_REFRESH_MARGIN": "2m",
        "AUTHPULSE_REFRESH_FRACTION": "0.2",
        "AUTHPULSE_REFRESH_JITTER": "0",
        "AUTHPULSE_TOKEN_RETRY_ATTEMPTS": "3",
        "AUTHPULSE_TOKEN_RETRY_DEADLINE": "45s",
        "AUTHPULSE_IDLE_TIMEOUT": "off",
        "AUTHPULSE_MAX_LIFETIME": "7d",
        "AUTHPULSE_STALE_TIMEOUT": "1h30m",
        "AUTHPULSE_TICK_INTERVAL": "15",
        "AUTHPULSE_HEARTBEAT_INTERVAL": "1m",
        "AUTHPULSE_CLEANUP_INTERVAL": "none",
        "AUTHPULSE_CACHE_TTL": "5",
        "AUTHPULSE_CACHE_STALE_WHILE_REVALIDATE": "1m",
        "AUTHPULSE_CACHE_STALE_IF_ERROR": "0",
        "AUTHPULSE_CACHE_MAX_ENTRIES": "10",
        "AUTHPULSE_CACHE_MAX_BYTES": "4096",
        "AUTHPULSE_RETRY_ATTEMPTS": "2",
        "AUTHPULSE_RETRY_DEADLINE": "10",
        "AUTHPULSE_RETRY_NON_IDEMPOTENT": "true",
        "AUTHPULSE_BREAKER_FAILURE_RATE": "0.25",
        "AUTHPULSE_BREAKER_MINIMUM_CALLS": "4",
        "AUTHPULSE_BREAKER_OPEN_FOR": "2m",
        "AUTHPULSE_LOG_LEVEL": "debug",
        "AUTHPULSE_CLIENT_AUTH_METHOD": "Client_Secret_Post",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = AuthpulseSettings()
    rp = s.refresh_policy()
    assert (rp.margin, rp.fraction, rp.jitter) == (120.0, 0.2, 0.0)
    assert s.token_retry() == TokenRetry(attempts=3, deadline=45.0)
    ms = s.manager_settings()
    assert ms.idle_timeout is None
    assert ms.max_lifetime == 7 * 86400
    assert ms.stale_timeout == 5400
    assert ms.tick_interval == 15
    assert ms.heartbeat_interval == 60
    assert s.cleanup_interval is None
    cp = s.cache_policy()
    assert (cp.ttl, cp.stale_while_revalidate, cp.stale_if_error) == (5, 60, 0)
    assert (cp.max_entries, cp.max_bytes) == (10, 4096)
    rt = s.retry_policy()
    assert (rt.attempts, rt.deadline, rt.retry_non_idempotent) == (2, 10, True)
    bp = s.breaker_policy()
    assert (bp.failure_rate, bp.minimum_calls, bp.open_for) == (0.25, 4, 120)
    assert s.log_level == "DEBUG"
    assert s.client_auth_method == "client_secret_post"


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHPULSE_TICK_INTERVAL", "30")
    assert AuthpulseSettings().tick_interval == 30
    assert AuthpulseSettings(tick_interval=5).tick_interval == 5
    assert AuthpulseSettings(tick_interval="2m").tick_interval == 120


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHPULSE_IDLE_TIMEOUT", "")
    assert AuthpulseSettings().idle_timeout == ManagerSettings().idle_timeout


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AUTHPULSE_TICK_INTERVAL", "abc"),
        ("AUTHPULSE_TICK_INTERVAL", "0"),
        ("AUTHPULSE_IDLE_TIMEOUT", "-5m"),
        ("AUTHPULSE_MAX_LIFETIME", "inf"),
        ("AUTHPULSE_REFRESH_FRACTION", "1.5"),
        ("AUTHPULSE_REFRESH_FRACTION", "nan"),
        ("AUTHPULSE_REFRESH_JITTER", "0.9"),
        ("AUTHPULSE_TOKEN_RETRY_ATTEMPTS", "0"),
        ("AUTHPULSE_TOKEN_RETRY_ATTEMPTS", "2.5"),
        ("AUTHPULSE_REFRESH_CONCURRENCY", "none"),
        ("AUTHPULSE_RETRY_ATTEMPTS", "many"),
        ("AUTHPULSE_RETRY_IDEMPOTENCY_HEADER", "Bad Header:"),
        ("AUTHPULSE_BREAKER_FAILURE_RATE", "0"),
        ("AUTHPULSE_BREAKER_HALF_OPEN_PROBES", "0"),
        ("AUTHPULSE_CACHE_MAX_BYTES", "0"),
        ("AUTHPULSE_CACHE_TTL", "-1"),
        ("AUTHPULSE_LOG_LEVEL", "chatty"),
        ("AUTHPULSE_TOKEN_URL", "ftp://idp"),
        ("AUTHPULSE_CLIENT_AUTH_METHOD", "private_key_jwt"),
        ("AUTHPULSE_RETRY_NON_IDEMPOTENT", "perhaps"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as exc:
        AuthpulseSettings()
    assert var in str(exc.value)


def test_an_inconsistent_combination_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHPULSE_REFRESH_RETRY_AFTER", "2m")
    monkeypatch.setenv("AUTHPULSE_REFRESH_RETRY_MAX", "1m")
    with pytest.raises(ConfigurationError, match="AUTHPULSE_REFRESH_RETRY_MAX"):
        AuthpulseSettings()
    monkeypatch.delenv("AUTHPULSE_REFRESH_RETRY_AFTER")
    monkeypatch.delenv("AUTHPULSE_REFRESH_RETRY_MAX")
    monkeypatch.setenv("AUTHPULSE_REFRESH_MAX_WINDOW_FRACTION", "0.9")
    monkeypatch.setenv("AUTHPULSE_REFRESH_JITTER", "0.5")
    with pytest.raises(ConfigurationError, match="AUTHPULSE_REFRESH_JITTER"):
        AuthpulseSettings()


SECRET_KEY_MARK = "not-a-fernet-key-but-still-SECRET-7f3a"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AUTHPULSE_ENCRYPTION_KEYS", SECRET_KEY_MARK),
        ("AUTHPULSE_ENCRYPTION_KEYS", "[not json " + SECRET_KEY_MARK),
        ("AUTHPULSE_STORE_URL", "redis//user:hunter2-pw@cache:6379/0"),
    ],
)
def test_a_bad_secret_value_is_never_quoted(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as exc:
        AuthpulseSettings()
    text = str(exc.value) + repr(exc.value)
    assert var in text
    assert "hunter2" not in text
    assert SECRET_KEY_MARK not in text


def test_secrets_never_appear_in_str_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [authpulse.TokenCipher.generate_key(), authpulse.TokenCipher.generate_key()]
    monkeypatch.setenv("AUTHPULSE_ENCRYPTION_KEYS", ",".join(keys))
    monkeypatch.setenv("AUTHPULSE_CLIENT_SECRET", "cs-very-secret-value")
    monkeypatch.setenv("AUTHPULSE_ADMIN_TOKEN", "admin-very-secret-token")
    monkeypatch.setenv("AUTHPULSE_STORE_URL", "redis://app:hunter2-pw@cache.internal:6379/0")
    s = AuthpulseSettings()
    assert len(s.encryption_keys) == 2
    for text in (str(s), repr(s), str(s.model_dump()), repr(s.encryption_keys)):
        for secret in (*keys, "cs-very-secret-value", "admin-very-secret-token", "hunter2"):
            assert secret not in text
    assert s.store_scheme == "redis"
    assert s.client_secret is not None
    assert s.client_secret.get_secret_value() == "cs-very-secret-value"
    assert set(AuthpulseSettings.model_fields) >= SECRET_SETTINGS


def test_encryption_keys_as_a_json_list_encrypt_the_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json
    import sqlite3

    key = authpulse.TokenCipher.generate_key()
    monkeypatch.setenv("AUTHPULSE_ENCRYPTION_KEYS", json.dumps([key]))
    monkeypatch.setenv("AUTHPULSE_STORE_URL", f"sqlite:///{tmp_path / 'enc.db'}")
    store = AuthpulseSettings().open_store()
    try:
        assert isinstance(store, authpulse.SQLiteStore)
        token = authpulse.TokenSet(
            access_token=SecretStr("plain-access-token-value"), issued_at=0, expires_at=3600
        )
        store.put_token("s1", token)
        assert store.get_token("s1") is not None
    finally:
        store.close()
    raw = sqlite3.connect(tmp_path / "enc.db").execute("SELECT blob FROM tokens").fetchone()[0]
    assert b"plain-access-token-value" not in bytes(raw)


def test_session_manager_is_built_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHPULSE_IDLE_TIMEOUT", "5m")
    monkeypatch.setenv("AUTHPULSE_TOKEN_RETRY_ATTEMPTS", "2")
    s = AuthpulseSettings()
    manager = s.session_manager()
    try:
        assert manager.settings.idle_timeout == 300
        assert manager.retry == TokenRetry(attempts=2)
        assert manager.policy == RefreshPolicy()
        assert isinstance(manager.store, authpulse.MemoryStore)
    finally:
        manager.shutdown()


def test_refresh_token_grant_needs_the_token_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as exc:
        AuthpulseSettings().refresh_token_grant("rt")
    assert "AUTHPULSE_TOKEN_URL" in str(exc.value)
    assert "AUTHPULSE_CLIENT_ID" in str(exc.value)
    monkeypatch.setenv("AUTHPULSE_TOKEN_URL", "https://idp.example/token")
    monkeypatch.setenv("AUTHPULSE_CLIENT_ID", "cli")
    monkeypatch.setenv("AUTHPULSE_CLIENT_SECRET", "cs-value")
    grant = AuthpulseSettings().refresh_token_grant("rt-value")
    assert grant.token_url == "https://idp.example/token"
    assert grant.client_id == "cli"
    assert grant.auth_method == "client_secret_basic"
    request = grant.build_request(None)
    assert b"rt-value" in request.content
    assert "cs-value" not in repr(grant)


def test_settings_are_immutable() -> None:
    import pydantic

    s = AuthpulseSettings()
    with pytest.raises(pydantic.ValidationError):
        s.tick_interval = 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("1h30m", 5400.0),
        (" 10M ", 600.0),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "5x", "m5", "inf", "nan", "1e3", "5 m s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_every_setting_is_documented() -> None:
    """docs/configuration.md has a row for every AUTHPULSE_* variable, and no other."""
    documented = set(re.findall(r"^\| `(AUTHPULSE_[A-Z0-9_]+)`", DOCS.read_text(), re.M))
    expected = {env_name(n) for n in AuthpulseSettings.model_fields}
    assert documented == expected

"""``AuthpulseSettings``: every default, from ``AUTHPULSE_*`` environment variables.

One field per default of the library's policies (refresh, token retries, the
session manager, API retries, the circuit breaker, the response cache), the
store URL and its encryption keys, the token source the command line uses to
force a refresh, and the log level. Each field reads the environment variable
``AUTHPULSE_<FIELD NAME>``; keyword arguments win over the environment.

Durations accept seconds (``90``, ``1.5``) or a number with a unit: ``90s``,
``30m``, ``24h``, ``7d`` (and combinations such as ``1h30m``). Optional
durations accept ``none`` / ``off`` to disable their rule.

An invalid value raises :class:`~authpulse.ConfigurationError` naming the
variable; the value itself is quoted only for settings that are not secrets.
Secrets (``client_secret``, ``encryption_keys``, ``admin_token`` and
``store_url``, which may carry a password) are :class:`pydantic.SecretStr`:
they never appear in ``str()``, ``repr()`` or an error message.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator

from .._core.errors import ConfigurationError, missing_extra

try:
    from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
except ImportError as exc:  # the settings are part of the ``cli`` extra
    raise missing_extra("authpulse.AuthpulseSettings", "cli") from exc

from .._core.policy import RefreshPolicy
from .._core.retry import TokenRetry
from .._fleet.manager import ManagerSettings
from .._http.cache import CachePolicy
from .._http.retry import RetryPolicy
from .._runtime.breakers import BreakerPolicy

if TYPE_CHECKING:
    from .._fleet.manager import SessionManager
    from .._runtime.clock import Clock
    from .._sessions.sources import RefreshTokenGrant
    from .._stores.base import SessionStore

__all__ = ["ENV_PREFIX", "SECRET_SETTINGS", "AuthpulseSettings", "env_name", "parse_duration"]

ENV_PREFIX = "AUTHPULSE_"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_OFF = frozenset({"none", "off", "null", "disabled"})


def parse_duration(value: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or ``1h30m``.

    Raises :class:`ValueError` (without echoing the text) for anything else,
    negative or non-finite values included, and :class:`TypeError` for a value
    that is neither a string nor a number.
    """
    if isinstance(value, bool):
        raise TypeError("a duration is a number of seconds or a string such as 90s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError("must be a duration such as 90s, 30m, 24h or 7d")
    else:
        raise TypeError("a duration is a number of seconds or a string such as 90s")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite, non-negative duration")
    return seconds


def _seconds(value: object) -> object:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    return value


def _optional_seconds(value: object) -> object:
    if value is None or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    return _seconds(value)


def _key_list(value: object) -> object:
    """Encryption keys: a comma-separated string, a JSON list, or a sequence."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                decoded = json.loads(text)
            except ValueError:
                raise ValueError("must be a JSON list or comma-separated Fernet keys") from None
            return decoded
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
OptionalSeconds = Annotated[float | None, BeforeValidator(_optional_seconds)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]

_RP = RefreshPolicy()
_TR = TokenRetry()
_MS = ManagerSettings()
_AR = RetryPolicy()
_BP = BreakerPolicy()
_CP = CachePolicy()

#: settings whose values are secrets: never quoted, never printed
SECRET_SETTINGS = frozenset({"client_secret", "encryption_keys", "admin_token", "store_url"})

# which setting feeds which policy field: (class name, field) -> setting
_REFRESH = {
    "margin": "refresh_margin",
    "fraction": "refresh_fraction",
    "max_window_fraction": "refresh_max_window_fraction",
    "jitter": "refresh_jitter",
    "expiry_leeway": "expiry_leeway",
    "default_lifetime": "default_token_lifetime",
    "retry_stale_after": "refresh_retry_after",
    "retry_stale_max": "refresh_retry_max",
}
_TOKEN_RETRY = {
    "attempts": "token_retry_attempts",
    "deadline": "token_retry_deadline",
    "attempt_timeout": "token_attempt_timeout",
    "backoff_base": "token_backoff_base",
    "backoff_max": "token_backoff_max",
    "max_response_bytes": "token_max_response_bytes",
}
_MANAGER = {
    "tick_interval": "tick_interval",
    "heartbeat_interval": "heartbeat_interval",
    "idle_timeout": "idle_timeout",
    "max_lifetime": "max_lifetime",
    "stale_timeout": "stale_timeout",
    "refresh_concurrency": "refresh_concurrency",
    "refresh_lead": "refresh_lead",
    "request_window": "request_window",
    "worker_error_memory": "worker_error_memory",
    "revoke_on_close": "revoke_on_close",
}
_RETRY = {
    "attempts": "retry_attempts",
    "deadline": "retry_deadline",
    "backoff_base": "retry_backoff_base",
    "backoff_max": "retry_backoff_max",
    "max_retry_after": "retry_max_retry_after",
    "retry_non_idempotent": "retry_non_idempotent",
    "idempotency_header": "retry_idempotency_header",
}
_BREAKER = {
    "window": "breaker_window",
    "failure_rate": "breaker_failure_rate",
    "minimum_calls": "breaker_minimum_calls",
    "open_for": "breaker_open_for",
    "half_open_probes": "breaker_half_open_probes",
}
_CACHE = {
    "ttl": "cache_ttl",
    "stale_while_revalidate": "cache_stale_while_revalidate",
    "stale_if_error": "cache_stale_if_error",
    "max_entries": "cache_max_entries",
    "max_bytes": "cache_max_bytes",
    "honour_cache_control": "cache_honour_cache_control",
}


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``tick_interval`` -> ``AUTHPULSE_TICK_INTERVAL``."""
    return ENV_PREFIX + setting.upper()


def _clean_message(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _from_validation_error(exc: ValidationError) -> ConfigurationError:
    problems: list[str] = []
    for err in exc.errors(include_url=False, include_input=True):
        loc = err.get("loc") or ("?",)
        name = str(loc[0])
        text = f"{env_name(name)}: {_clean_message(str(err.get('msg', 'invalid value')))}"
        if name not in SECRET_SETTINGS and "input" in err:
            shown = repr(err["input"])
            text += f" (got {shown if len(shown) <= 60 else shown[:59] + '…'})"
        problems.append(text)
    return ConfigurationError("invalid authpulse setting: " + "; ".join(problems))


class AuthpulseSettings(BaseSettings):
    """Every authpulse default, overridable with ``AUTHPULSE_*`` environment variables.

    >>> settings = AuthpulseSettings()            # reads the environment
    >>> manager = settings.session_manager()      # store, policies and retries from it

    The builders (:meth:`refresh_policy`, :meth:`token_retry`,
    :meth:`manager_settings`, :meth:`retry_policy`, :meth:`breaker_policy`,
    :meth:`cache_policy`, :meth:`open_store`) turn the settings into the
    library's objects. Every combination is checked when the settings are
    made: an invalid one raises :class:`~authpulse.ConfigurationError` naming
    the variable(s), never a secret value. See ``docs/configuration.md``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        allow_inf_nan=False,
        validate_default=True,
    )

    # -- token refresh (RefreshPolicy)
    refresh_margin: Seconds = Field(_RP.margin, ge=0)
    refresh_fraction: float = Field(_RP.fraction, ge=0, le=1)
    refresh_max_window_fraction: float = Field(_RP.max_window_fraction, gt=0, le=0.9)
    refresh_jitter: float = Field(_RP.jitter, ge=0, le=0.5)
    expiry_leeway: Seconds = Field(_RP.expiry_leeway, ge=0)
    default_token_lifetime: Seconds = Field(_RP.default_lifetime, gt=0)
    refresh_retry_after: Seconds = Field(_RP.retry_stale_after, gt=0)
    refresh_retry_max: Seconds = Field(_RP.retry_stale_max, gt=0)

    # -- token endpoint retries (TokenRetry)
    token_retry_attempts: int = Field(_TR.attempts, ge=1)
    token_retry_deadline: Seconds = Field(_TR.deadline, gt=0)
    token_attempt_timeout: Seconds = Field(_TR.attempt_timeout, gt=0)
    token_backoff_base: Seconds = Field(_TR.backoff_base, gt=0)
    token_backoff_max: Seconds = Field(_TR.backoff_max, gt=0)
    token_max_response_bytes: int = Field(_TR.max_response_bytes, ge=1024)

    # -- the session manager (ManagerSettings)
    tick_interval: Seconds = Field(_MS.tick_interval, gt=0)
    heartbeat_interval: Seconds = Field(_MS.heartbeat_interval, gt=0)
    idle_timeout: OptionalSeconds = Field(_MS.idle_timeout, gt=0)
    max_lifetime: OptionalSeconds = Field(_MS.max_lifetime, gt=0)
    stale_timeout: OptionalSeconds = Field(_MS.stale_timeout, gt=0)
    refresh_concurrency: int = Field(_MS.refresh_concurrency, ge=1)
    refresh_lead: Seconds = Field(_MS.refresh_lead, ge=0)
    request_window: int = Field(_MS.request_window, ge=1)
    worker_error_memory: Seconds = Field(_MS.worker_error_memory, ge=0)
    revoke_on_close: bool = _MS.revoke_on_close
    #: how often a long-running process of yours should run ``cleanup`` (not read by authpulse)
    cleanup_interval: OptionalSeconds = Field(3600.0, gt=0)

    # -- the store
    store_url: SecretStr = SecretStr("memory://")
    encryption_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_key_list)] = Field(
        default_factory=list
    )

    # -- API retries (RetryPolicy)
    retry_attempts: int = Field(_AR.attempts, ge=1)
    retry_deadline: Seconds = Field(_AR.deadline, gt=0)
    retry_backoff_base: Seconds = Field(_AR.backoff_base, gt=0)
    retry_backoff_max: Seconds = Field(_AR.backoff_max, gt=0)
    retry_max_retry_after: Seconds = Field(_AR.max_retry_after, ge=0)
    retry_non_idempotent: bool = _AR.retry_non_idempotent
    retry_idempotency_header: str = Field(
        _AR.idempotency_header, min_length=1, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
    )

    # -- circuit breaker (BreakerPolicy)
    breaker_window: Seconds = Field(_BP.window, gt=0)
    breaker_failure_rate: float = Field(_BP.failure_rate, gt=0, le=1)
    breaker_minimum_calls: int = Field(_BP.minimum_calls, ge=1)
    breaker_open_for: Seconds = Field(_BP.open_for, gt=0)
    breaker_half_open_probes: int = Field(_BP.half_open_probes, ge=1)

    # -- response cache (CachePolicy)
    cache_ttl: Seconds = Field(_CP.ttl, ge=0)
    cache_stale_while_revalidate: Seconds = Field(_CP.stale_while_revalidate, ge=0)
    cache_stale_if_error: Seconds = Field(_CP.stale_if_error, ge=0)
    cache_max_entries: int = Field(_CP.max_entries, ge=1)
    cache_max_bytes: int = Field(_CP.max_bytes, ge=1)
    cache_honour_cache_control: bool = _CP.honour_cache_control

    # -- the token source the command line uses for `authpulse refresh`
    token_url: str | None = Field(None, pattern=r"^https?://\S+$")
    client_id: str | None = Field(None, min_length=1)
    client_secret: SecretStr | None = None
    client_auth_method: AuthMethod | None = None

    # -- the web dashboard (`authpulse serve`)
    admin_token: SecretStr | None = None

    # -- logging
    log_level: LogLevel = "WARNING"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _from_validation_error(exc) from None
        self._check()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("client_auth_method", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("store_url", mode="after")
    @classmethod
    def _has_scheme(cls, value: SecretStr) -> SecretStr:
        if "://" not in value.get_secret_value():
            raise ValueError("must be a store URL: memory://, sqlite:///path.db or redis://…")
        return value

    # ------------------------------------------------------------------ checks

    def _check(self) -> None:
        """Build every object once, so an inconsistent combination fails now,
        naming the variables concerned."""
        self.refresh_policy()
        self.token_retry()
        self.manager_settings()
        self.retry_policy()
        self.breaker_policy()
        self.cache_policy()
        if self.encryption_keys:
            from .._stores.crypto import TokenCipher

            try:
                TokenCipher(self._keys())
            except ConfigurationError as exc:
                raise ConfigurationError(f"{env_name('encryption_keys')}: {exc}") from None

    def _build(self, cls: type[Any], mapping: dict[str, str]) -> Any:
        try:
            return cls(**{attr: getattr(self, name) for attr, name in mapping.items()})
        except ConfigurationError as exc:
            message = str(exc)
            named = [
                name
                for attr, name in mapping.items()
                if f"{cls.__name__}.{attr}" in message or re.search(rf"\b{attr}\b", message)
            ]
            for attr, name in mapping.items():
                message = message.replace(f"{cls.__name__}.{attr}", env_name(name))
            if named:
                raise ConfigurationError(f"invalid authpulse setting: {message}") from None
            where = ", ".join(env_name(n) for n in mapping.values())
            raise ConfigurationError(
                f"invalid combination of authpulse settings ({where}): {message}"
            ) from None

    # ------------------------------------------------------------------ builders

    def refresh_policy(self) -> RefreshPolicy:
        """The :class:`~authpulse.RefreshPolicy` these settings describe."""
        policy: RefreshPolicy = self._build(RefreshPolicy, _REFRESH)
        return policy

    def token_retry(self) -> TokenRetry:
        """The :class:`~authpulse.TokenRetry` (token endpoint retries)."""
        retry: TokenRetry = self._build(TokenRetry, _TOKEN_RETRY)
        return retry

    def manager_settings(self) -> ManagerSettings:
        """The :class:`~authpulse.ManagerSettings` (lifecycle rules, worker)."""
        settings: ManagerSettings = self._build(ManagerSettings, _MANAGER)
        return settings

    def retry_policy(self) -> RetryPolicy:
        """The :class:`~authpulse.RetryPolicy` (API call retries)."""
        policy: RetryPolicy = self._build(RetryPolicy, _RETRY)
        return policy

    def breaker_policy(self) -> BreakerPolicy:
        """The :class:`~authpulse.BreakerPolicy` (circuit breaker)."""
        policy: BreakerPolicy = self._build(BreakerPolicy, _BREAKER)
        return policy

    def cache_policy(self) -> CachePolicy:
        """The :class:`~authpulse.CachePolicy` (response cache)."""
        policy: CachePolicy = self._build(CachePolicy, _CACHE)
        return policy

    def _keys(self) -> list[str]:
        return [k.get_secret_value() for k in self.encryption_keys]

    def open_store(self, *, clock: Clock | None = None) -> SessionStore:
        """Open the store ``store_url`` names, with ``encryption_keys``."""
        from .._stores.open import open_store

        return open_store(
            self.store_url.get_secret_value(),
            encryption_keys=self._keys() or None,
            clock=clock,
        )

    @property
    def store_scheme(self) -> str:
        """The scheme of ``store_url`` (``memory``, ``sqlite``, ``redis``, ...), safe to show."""
        return self.store_url.get_secret_value().partition("://")[0].lower()

    def session_manager(
        self,
        *,
        store: SessionStore | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> SessionManager:
        """A :class:`~authpulse.SessionManager` on ``store`` (default: :meth:`open_store`)
        with these settings' manager settings, refresh policy and token retries.
        Other keyword arguments go to the manager."""
        from .._fleet.manager import SessionManager

        return SessionManager(
            store if store is not None else self.open_store(clock=clock),
            clock=clock,
            settings=self.manager_settings(),
            policy=self.refresh_policy(),
            retry=self.token_retry(),
            **kwargs,
        )

    def refresh_token_grant(self, refresh_token: str | SecretStr | None) -> RefreshTokenGrant:
        """A :class:`~authpulse.RefreshTokenGrant` from ``token_url``, ``client_id``,
        ``client_secret`` and ``client_auth_method`` with ``refresh_token``.

        Raises :class:`~authpulse.ConfigurationError` naming the variables
        that are missing.
        """
        from .._sessions.sources import RefreshTokenGrant

        missing = [env_name(n) for n in ("token_url", "client_id") if getattr(self, n) is None]
        if missing:
            raise ConfigurationError(
                f"a token source needs {' and '.join(missing)} to be set "
                f"(and {env_name('client_secret')} for a confidential client)"
            )
        token_url, client_id = self.token_url or "", self.client_id or ""
        return RefreshTokenGrant(
            token_url,
            client_id,
            self.client_secret,
            refresh_token=refresh_token,
            auth_method=self.client_auth_method,
        )


# The public names defined here show the module they are imported from.
for _public in (AuthpulseSettings,):
    _public.__module__ = "authpulse"
del _public

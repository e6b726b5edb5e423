"""The exception hierarchy and the error taxonomy.

Every error authpulse raises derives from :class:`AuthpulseError`. Messages
describe what went wrong without quoting secrets: no access token, refresh
token, id token or client secret ever appears in ``str(exc)`` or ``repr``.
"""

from __future__ import annotations

import enum

__all__ = [
    "AccessDeniedError",
    "AuthorizationError",
    "AuthpulseError",
    "ConfigurationError",
    "CredentialsUnavailableError",
    "DeviceCodeExpiredError",
    "DiscoveryError",
    "ErrorClass",
    "LoginCancelledError",
    "LoginRequiredError",
    "LoginTimeoutError",
    "MissingExtraError",
    "NoRefreshTokenError",
    "OAuthError",
    "RefreshError",
    "SubjectTokenError",
    "TokenEndpointError",
    "TokenError",
    "TokenResponseError",
    "TokenVerificationError",
    "UsageError",
]


class ErrorClass(enum.StrEnum):
    """What kind of failure an error is; decides whether and how to retry.

    Computed once per failure and carried on exceptions, events and metrics.
    """

    NETWORK = "network"  #: connect error, read error, timeout
    THROTTLED = "throttled"  #: 429, or 503 with Retry-After
    SERVER = "server"  #: 500, 502, 503, 504 (and other 5xx)
    AUTH = "auth"  #: 401, 403, and OAuth grant/client errors
    CLIENT = "client"  #: any other 4xx, malformed responses

    @property
    def transient(self) -> bool:
        """True when the same request may succeed if tried again later."""
        return self in (ErrorClass.NETWORK, ErrorClass.THROTTLED, ErrorClass.SERVER)


class AuthpulseError(Exception):
    """Base class of every exception raised by authpulse."""

    error_class: ErrorClass | None = None


class ConfigurationError(AuthpulseError, ValueError):
    """An argument or setting is invalid. Raised at construction time."""


class MissingExtraError(ConfigurationError, ImportError):
    """A feature needs packages of an authpulse extra that is not installed.

    ``feature`` is what was used (``"the authpulse command"``), ``extra`` the
    extra that installs what it needs; the message ends with the exact line to
    run, ``pip install 'authpulse[extra]'``. An :class:`ImportError` too, so
    ``except ImportError`` around an optional import also catches it.
    """

    def __init__(self, message: str, *, feature: str, extra: str) -> None:
        super().__init__(message)
        self.feature = feature
        self.extra = extra

    @property
    def install(self) -> str:
        """The command that installs the extra: ``pip install 'authpulse[extra]'``."""
        return f"pip install 'authpulse[{self.extra}]'"


def missing_extra(feature: str, extra: str) -> MissingExtraError:
    """The error for ``feature`` used without the ``extra`` extra installed."""
    return MissingExtraError(
        f"{feature} needs the {extra!r} extra: pip install 'authpulse[{extra}]'",
        feature=feature,
        extra=extra,
    )


class UsageError(AuthpulseError, RuntimeError):
    """The API was called in a way that cannot work (e.g. after ``close()``)."""


class TokenError(AuthpulseError):
    """Obtaining a token failed."""


class OAuthError(TokenError):
    """The token endpoint answered with an RFC 6749 §5.2 error response.

    ``error`` is the registered code (``invalid_grant``, ``invalid_client``,
    ``invalid_scope``, ...). ``description`` and ``uri`` are the server's
    text, shortened and scrubbed of any secret the request carried.
    """

    error_class = ErrorClass.AUTH

    #: codes that mean "this grant or credential will not work again"
    PERMANENT = frozenset(
        {
            "invalid_grant",
            "invalid_client",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "access_denied",
            "invalid_request",
        }
    )

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        status_code: int | None = None,
        uri: str | None = None,
    ) -> None:
        self.error = error
        self.description = description
        self.status_code = status_code
        self.uri = uri
        text = f"token endpoint returned error {error!r}"
        if status_code is not None:
            text += f" (HTTP {status_code})"
        if description:
            text += f": {description}"
        super().__init__(text)

    @property
    def permanent(self) -> bool:
        """True when retrying the same request cannot succeed."""
        return self.error in self.PERMANENT


class TokenResponseError(TokenError):
    """The token endpoint's answer could not be understood.

    Not JSON, no ``access_token``, a field of the wrong type, an absurd
    ``expires_in``. The message names the problem, never the values.
    """

    error_class = ErrorClass.CLIENT

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class TokenEndpointError(TokenError):
    """The token endpoint could not be reached or failed (after retries).

    ``error_class`` says why: ``NETWORK``, ``THROTTLED``, ``SERVER`` or
    ``CLIENT`` (an unexpected 4xx without an OAuth error body). The message
    names the endpoint (``endpoint``: scheme, host, port and path — never a
    query or userinfo) and, for a network failure, the root cause's text.
    ``__cause__`` is then a copy of the httpx error without its request
    (which carried the credentials).

    .. versionchanged:: unreleased
       ``endpoint``; the message names the endpoint and the cause.
    """

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        status_code: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
        endpoint: str | None = None,
    ) -> None:
        self.error_class = error_class
        self.status_code = status_code
        self.retry_after = retry_after
        self.attempts = attempts
        self.endpoint = endpoint
        super().__init__(message)


class DiscoveryError(TokenError):
    """A provider's metadata (RFC 8414 / OpenID Connect Discovery) could not be
    fetched or is not acceptable.

    ``field`` names the metadata member at fault (``"issuer"``,
    ``"token_endpoint"``, ...) when one is; ``issuer`` is the issuer asked for.
    ``error_class`` is ``NETWORK``/``SERVER``/``THROTTLED`` when fetching failed
    (worth trying again), ``CLIENT`` when the document itself is wrong.

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        message: str,
        *,
        issuer: str | None = None,
        field: str | None = None,
        error_class: ErrorClass = ErrorClass.CLIENT,
        status_code: int | None = None,
    ) -> None:
        self.issuer = issuer
        self.field = field
        self.error_class = error_class
        self.status_code = status_code
        super().__init__(message)


class TokenVerificationError(TokenError):
    """A JWT failed verification (signature, algorithm, issuer, audience, time)."""

    error_class = ErrorClass.AUTH


class RefreshError(TokenError):
    """A refresh could not produce a usable token.

    Raised to callers that had to wait for a token (the old one has expired).
    ``__cause__`` holds the underlying :class:`TokenError`.
    """


class NoRefreshTokenError(TokenError):
    """A refresh-token grant has no refresh token to use."""

    error_class = ErrorClass.AUTH


class CredentialsUnavailableError(TokenError):
    """A fallback level has nothing to authenticate with (no stored
    credentials, silent re-authentication impossible)."""

    error_class = ErrorClass.AUTH


class LoginRequiredError(TokenError):
    """Every way to get a token failed: the user must sign in again.

    ``login_url`` is where to send them (``None`` if not configured).
    """

    error_class = ErrorClass.AUTH

    def __init__(self, login_url: str | None, *, reason: str = "a new login is needed") -> None:
        self.login_url = login_url
        self.reason = reason
        super().__init__(f"login required: {reason}")


class AccessDeniedError(OAuthError):
    """The user (or the server's policy) refused the login: the token endpoint
    answered ``access_denied`` (RFC 8628 §3.5). Asking again cannot succeed.

    .. versionadded:: unreleased
    """

    def __init__(self, description: str | None = None, *, status_code: int | None = None) -> None:
        super().__init__("access_denied", description, status_code=status_code)


class DeviceCodeExpiredError(LoginRequiredError):
    """A device login's code expired before the user finished signing in: the
    server answered ``expired_token``, or its ``expires_in`` passed on the
    login's clock. Start a new login (``login_url``: the verification URI).

    .. versionadded:: unreleased
    """

    def __init__(self, login_url: str | None = None) -> None:
        super().__init__(
            login_url, reason="the device code expired before the user finished signing in"
        )


class LoginCancelledError(LoginRequiredError):
    """A login was cancelled (``cancel()``) before the user finished signing in.

    .. versionadded:: unreleased
    """

    def __init__(self, login_url: str | None = None) -> None:
        super().__init__(login_url, reason="the login was cancelled")


class SubjectTokenError(TokenError):
    """A token exchange (RFC 8693) has no subject or actor token to present.

    Its source gave ``None``, an empty string or something not a string.
    ``role`` is ``"subject"`` or ``"actor"``. The message never quotes a token.

    .. versionadded:: unreleased
    """

    error_class = ErrorClass.AUTH

    def __init__(self, role: str, reason: str) -> None:
        self.role = role
        super().__init__(f"token exchange has no usable {role} token: {reason}")


class AuthorizationError(LoginRequiredError):
    """The authorization server's redirect ended a browser login: an ``error``
    answer other than ``access_denied`` (``error``, ``description``: the
    server's code and text, sanitised), or a redirect authpulse refuses (a
    ``state`` or ``iss`` that does not match, no ``code``; ``error`` is then
    ``None``). Start a new login (``login_url``: the authorization endpoint).

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        reason: str,
        *,
        error: str | None = None,
        description: str | None = None,
        login_url: str | None = None,
    ) -> None:
        self.error = error
        self.description = description
        super().__init__(login_url, reason=reason)


class LoginTimeoutError(LoginRequiredError):
    """A browser login was not finished within its ``timeout``: no redirect came
    back to the loopback listener in time. Start a new login.

    .. versionadded:: unreleased
    """

    def __init__(self, login_url: str | None = None, *, timeout: float | None = None) -> None:
        self.timeout = timeout
        within = f" within {timeout:g} s" if timeout is not None else ""
        super().__init__(login_url, reason=f"the browser login did not finish{within}")


class RevocationError(TokenError):
    """The revocation endpoint (RFC 7009) did not confirm a revocation.

    ``error`` is the OAuth error code it answered (``invalid_client``,
    ``unsupported_token_type``, ...) or ``None`` (a network failure, a 5xx,
    an answer without an OAuth error body); ``status_code`` the HTTP status,
    ``endpoint`` the endpoint without query or userinfo. The message never
    holds the token or a client secret.

    .. versionadded:: unreleased
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        status_code: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.error = error
        self.status_code = status_code
        self.endpoint = endpoint
        super().__init__(message)


class IntrospectionError(TokenError):
    """The introspection endpoint (RFC 7662) gave no usable answer: a network
    failure, an HTTP error, or a body without a boolean ``active``.
    ``status_code`` and ``endpoint`` as for :class:`RevocationError`; the
    message never holds the token or a client secret.

    .. versionadded:: unreleased
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, endpoint: str | None = None
    ) -> None:
        self.status_code = status_code
        self.endpoint = endpoint
        super().__init__(message)


# The public names defined here show the module they are imported from.
for _public in (
    AccessDeniedError,
    AuthorizationError,
    AuthpulseError,
    ConfigurationError,
    CredentialsUnavailableError,
    DeviceCodeExpiredError,
    ErrorClass,
    IntrospectionError,
    LoginCancelledError,
    LoginRequiredError,
    DiscoveryError,
    LoginTimeoutError,
    MissingExtraError,
    NoRefreshTokenError,
    OAuthError,
    RefreshError,
    RevocationError,
    SubjectTokenError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TokenVerificationError,
    UsageError,
):
    _public.__module__ = "authpulse"
del _public

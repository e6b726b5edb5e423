"""Generate docs/api.md from ``authpulse.__all__``: every public name, grouped by topic.

    python scripts/gen_api_docs.py          # write the file
    python scripts/gen_api_docs.py --check  # exit 1 if the file is out of date

Signatures come from ``inspect.signature``, descriptions from the first line
of each docstring. tests/test_api_docs.py runs the same comparison, so the
page cannot drift from the code. A name in ``__all__`` that no topic below
lists is an error: add it to ``TOPICS``.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import authpulse

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "api.md"

#: (topic, intro, names) in the order they appear on the page.
TOPICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Sessions and token sources",
        "A `Session` turns a token source into valid tokens; see [tokens.md](tokens.md).",
        (
            "Session",
            "TokenUpdateHook",
            "RefreshStats",
            "TokenSource",
            "ClientCredentials",
            "RefreshTokenGrant",
            "TokenExchange",
            "CallableSource",
            "FetchContext",
            "Fetched",
        ),
    ),
    (
        "Signing users in",
        "Logins that get a user's first tokens and return a `Session`; see "
        "[device-login.md](device-login.md) and [browser-login.md](browser-login.md).",
        (
            "DeviceCodeLogin",
            "DeviceAuthorization",
            "AuthorizationCodeLogin",
            "AuthorizationRequest",
        ),
    ),
    (
        "Provider discovery and client authentication",
        "Provider metadata found from an issuer, and the ways a client proves who it is; "
        "see [discovery.md](discovery.md).",
        (
            "discover",
            "adiscover",
            "ProviderMetadata",
            "ClientAuth",
            "PrivateKeyJWT",
            "ClientSecretJWT",
            "TLSClientAuth",
        ),
    ),
    (
        "Revocation and introspection",
        "Ending a grant at the IdP and asking it about a token; see "
        "[revocation.md](revocation.md).",
        ("RevocationError", "IntrospectionProbe", "Introspection", "IntrospectionError"),
    ),
    (
        "Tokens and freshness",
        "Token sets, their parsing and verification, and when they are due.",
        (
            "TokenSet",
            "parse_token_response",
            "JWTVerifier",
            "RefreshPolicy",
            "Freshness",
            "freshness",
            "TokenRetry",
        ),
    ),
    (
        "HTTP clients and transports",
        "httpx clients on a session, and the transports they stack; see "
        "[resilience.md](resilience.md) and [cache.md](cache.md).",
        (
            "Client",
            "AsyncClient",
            "RetryPolicy",
            "RetryTransport",
            "AsyncRetryTransport",
            "RetryInfo",
            "RetryBudget",
            "BudgetRegistry",
            "is_testing",
            "set_testing",
            "CachePolicy",
            "ResponseCache",
            "CacheTransport",
            "AsyncCacheTransport",
            "CacheStats",
            "authorization_identity",
        ),
    ),
    (
        "Circuit breaker and fallback",
        "Per-origin circuit breakers and the fallback chain; see [resilience.md](resilience.md).",
        (
            "BreakerPolicy",
            "BreakerRegistry",
            "BreakerSnapshot",
            "BreakerState",
            "CircuitBreaker",
            "Permit",
            "FallbackChain",
            "StoredCredentials",
            "SilentReauth",
            "LoginRequired",
            "moves_to_next_level",
        ),
    ),
    (
        "Health",
        "The 0–100 score and what cost the missing points; see [health.md](health.md).",
        ("HealthReport", "HealthComponent", "HealthSignals", "Band", "compute_health"),
    ),
    (
        "Many sessions",
        "`SessionManager` and its records, statistics and events; see [sessions.md](sessions.md).",
        (
            "SessionManager",
            "ManagedSession",
            "ManagerSettings",
            "TickReport",
            "Probe",
            "HttpProbe",
            "SessionRecord",
            "SessionMetadata",
            "SessionKind",
            "SessionStatus",
            "ErrorDetails",
            "SessionStats",
            "RequestWindow",
            "Event",
            "EventKind",
            "SessionEvent",
            "SessionEventKind",
            "ApiEventKind",
            "EventBus",
            "JsonlJournal",
            "read_journal",
            "is_secret_name",
            "redact_mapping",
        ),
    ),
    (
        "Auth-state machine",
        "The per-session auth state; see [state-machine.md](state-machine.md).",
        ("StateMachine", "AuthState", "AuthEvent", "Guards", "Transition"),
    ),
    (
        "Stores",
        "Persistence and cross-process refresh; see [stores.md](stores.md).",
        (
            "open_store",
            "SessionStore",
            "MemoryStore",
            "SQLiteStore",
            "RedisStore",
            "KeyringStore",
            "KeychainUnavailableError",
            "StoredToken",
            "StoreLock",
            "TokenCipher",
        ),
    ),
    (
        "Dashboard, settings and clocks",
        "See [dashboard.md](dashboard.md) and [configuration.md](configuration.md).",
        (
            "Dashboard",
            "DashboardServer",
            "AuthpulseSettings",
            "Clock",
            "SystemClock",
            "__version__",
        ),
    ),
    (
        "Errors",
        "Everything authpulse raises derives from `AuthpulseError`.",
        (
            "AuthpulseError",
            "ConfigurationError",
            "UsageError",
            "MissingExtraError",
            "TokenError",
            "OAuthError",
            "TokenResponseError",
            "TokenEndpointError",
            "ErrorClass",
            "TokenVerificationError",
            "RefreshError",
            "NoRefreshTokenError",
            "CredentialsUnavailableError",
            "LoginRequiredError",
            "AccessDeniedError",
            "DeviceCodeExpiredError",
            "LoginCancelledError",
            "DiscoveryError",
            "AuthorizationError",
            "LoginTimeoutError",
            "SubjectTokenError",
            "RequestFailedError",
            "RetryBudgetExhaustedError",
            "CircuitOpenError",
            "PermissionDenied",
            "SessionNotFoundError",
            "SessionClosedError",
            "InvalidStatusChangeError",
            "IllegalTransition",
            "StoreError",
            "StoreUnavailableError",
            "VersionConflictError",
            "FencingError",
            "CorruptRecordError",
            "DecryptionError",
            "UnauthenticatedRecordError",
            "JournalError",
        ),
    ),
)

_INTRO = """\
<!-- Generated by scripts/gen_api_docs.py from authpulse.__all__; do not edit by hand. -->

# API reference

Every name exported by `authpulse` (its `__all__`), grouped by topic, with
its signature and the first line of its docstring. The fakes for tests live
in `authpulse.testing` (`FakeClock`, `FakeIdP`, `FakeAPI`, `LoopbackServer`);
the httpx/httpx2-specific clients in `authpulse.httpx` and `authpulse.httpx2`.
"""

#: summaries that would otherwise depend on the environment (the default HTTP backend)
_SUMMARIES = {
    "__version__": "The installed version of authpulse.",
    "Client": "A client of the default backend (httpx or httpx2) whose requests carry "
    "``session``'s token.",
    "AsyncClient": "An async client of the default backend (httpx or httpx2) whose requests "
    "carry ``session``'s token.",
}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
#: module prefixes left out of signatures: ``typing.``, ``authpulse.``, and any
#: private path such as ``authpulse._sessions.session.``
_MODULES = re.compile(
    r"\b(?:collections\.abc|typing|authpulse(?:\._[a-z_]+)*(?:\.[a-z_0-9]+)?)\.(?=[A-Za-z_])"
)


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) if not isinstance(obj, str) else None
    line = doc.strip().splitlines()[0].strip() if doc else ""
    return line or "(undocumented)"


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "exception"
        if issubclass(obj, enum.Enum):
            return "enum"
        return "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return "alias" if not isinstance(obj, str) else "constant"


def _annotation(ann: Any) -> str:
    if get_origin(ann) is Annotated:  # pydantic constraints: show the plain type
        ann = get_args(ann)[0]
    text = ann if isinstance(ann, str) else inspect.formatannotation(ann)
    return _MODULES.sub("", text)


def _parameters(sig: inspect.Signature) -> list[str]:
    out: list[str] = []
    kw_marker = False
    for i, p in enumerate(sig.parameters.values()):
        if p.kind is p.POSITIONAL_ONLY and (
            i + 1 == len(sig.parameters)
            or list(sig.parameters.values())[i + 1].kind is not p.POSITIONAL_ONLY
        ):
            slash = True
        else:
            slash = False
        if p.kind is p.KEYWORD_ONLY and not kw_marker:
            out.append("*")
            kw_marker = True
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        if p.kind is p.VAR_POSITIONAL:
            kw_marker = True
        text = prefix + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        out.append(text)
        if slash:
            out.append("/")
    return out


def _signature(name: str, obj: Any) -> str:
    kind = _kind(obj)
    if kind == "constant":
        return f"{name}: str"
    if kind == "enum":
        members = ", ".join(m.name for m in obj)
        return f"class {name}(enum): {members}"
    if kind == "alias":
        return f"{name} = {_annotation(obj)}"
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(*args: object)"
    params = _parameters(sig)
    ret = ""
    if kind == "function" and sig.return_annotation is not sig.empty:
        ret = f" -> {_annotation(sig.return_annotation)}"
    one_line = f"{name}({', '.join(params)}){ret}"
    if len(one_line) <= 88:
        return _ADDRESS.sub("", one_line)
    body = "".join(f"    {p},\n" for p in params)
    return _ADDRESS.sub("", f"{name}(\n{body}){ret}")


def _summary_for(name: str, obj: Any) -> str:
    if name in _SUMMARIES:
        return _SUMMARIES[name]
    if _kind(obj) == "alias":
        return "A type alias, for annotations."
    return _summary(obj)


def missing() -> list[str]:
    """Names in ``authpulse.__all__`` no topic lists (should be empty)."""
    listed = {n for _, _, names in TOPICS for n in names}
    return sorted(set(authpulse.__all__) - listed)


def render() -> str:
    """The full text of docs/api.md."""
    out = [_INTRO]
    for topic, intro, names in TOPICS:
        out += [f"## {topic}", "", intro, ""]
        for name in names:
            obj = getattr(authpulse, name)
            out += [
                f"### `{name}` ({_kind(obj)})",
                "",
                "```python",
                _signature(name, obj),
                "```",
                "",
                _summary_for(name, obj),
                "",
            ]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    if gaps := missing():
        print(f"no topic in scripts/gen_api_docs.py lists: {', '.join(gaps)}", file=sys.stderr)
        return 1
    text = render()
    if args.check:
        current = DOCS_PATH.read_text(encoding="utf-8") if DOCS_PATH.exists() else ""
        if current != text:
            print(f"{DOCS_PATH} is out of date: run scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOCS_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOCS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Round trip to a REAL identity provider: client-credentials token fetches.

Starts ``tests/idp/server.mjs`` (oidc-provider on Node.js, on 127.0.0.1) with
the helpers of ``tests/_idp.py`` and times one client-credentials token fetch,
over real HTTP on loopback, three ways:

- authpulse: ``Session(ClientCredentials(...)).force_refresh()``;
- raw httpx: one ``httpx.Client.post`` to the token endpoint, JSON decoded;
- authlib: ``OAuth2Client.fetch_token(grant_type="client_credentials")``.

The three are interleaved call by call (so machine drift hits them alike);
each gets a few warm-up calls first. Without Node.js (20.18+), npm, the
IdP's node_modules (``npm ci`` is run when missing) or pytest (the helpers
live in the test suite), the section says why and holds no figures.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from authpulse import ClientCredentials, Session
from benchmarks._common import (
    Outcome,
    Section,
    attempt,
    authlib_http,
    authlib_httpx,
    fmt_ms,
    http_label,
    now_ns,
    percentile,
)

if TYPE_CHECKING:
    from _idp import OIDCProvider

TESTS = Path(__file__).resolve().parent.parent / "tests"
TITLE = "Real IdP round trip: client-credentials token fetch (oidc-provider on loopback)"
LIBRARIES = ("raw httpx", "authpulse", "authlib")


@dataclass
class Samples:
    """One library's timed calls."""

    ns: list[int] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)


class IdPUnavailableError(Exception):
    """The real IdP cannot be started here (the reason is the message)."""


@contextlib.contextmanager
def provider(env: dict[str, str] | None = None) -> Iterator[OIDCProvider]:
    """A running oidc-provider (``env``: settings of ``server.mjs``), or
    :class:`IdPUnavailableError`."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    try:
        import pytest

        from _idp import OIDCProvider, ensure_node_modules, require_node
    except ImportError as exc:
        raise IdPUnavailableError(
            f"the IdP helpers (tests/_idp.py) could not be imported: {exc}"
        ) from exc
    # the helpers skip (or, with CI=true, fail) a test when Node.js is missing
    not_here = (pytest.skip.Exception, pytest.fail.Exception)
    try:
        node, npm = require_node()
        ensure_node_modules(npm)
    except not_here as exc:
        raise IdPUnavailableError(str(exc.msg).splitlines()[0]) from None
    with tempfile.TemporaryDirectory(prefix="authpulse-bench-idp-") as tmp:
        try:
            idp = OIDCProvider.start(node, Path(tmp), env=env)
        except (AssertionError, OSError, httpx.HTTPError) as exc:
            raise IdPUnavailableError(f"the IdP did not start: {str(exc).splitlines()[0]}") from exc
        with idp:
            yield idp


def _fetchers(
    idp: OIDCProvider, stack: contextlib.ExitStack
) -> dict[str, Callable[[], httpx.Response]]:
    """One zero-argument token fetch per library (all answering a 200-ish response)."""
    # client_secret_post for all three: authlib sends client_secret_basic credentials
    # without form-encoding them (RFC 6749 §2.3.1), which the IdP rejects for the
    # test clients' secrets
    client = idp.post
    token_url = idp.token_url

    raw = stack.enter_context(httpx.Client(timeout=10.0))
    headers, form = client.authenticate({"grant_type": "client_credentials"})

    def raw_fetch() -> httpx.Response:
        response = raw.post(token_url, data=form, headers=headers)
        response.json()
        return response

    session = stack.enter_context(
        Session(
            ClientCredentials(
                token_url,
                client.client_id,
                client.client_secret,
                auth_method=client.auth_method,
            )
        )
    )
    ok = httpx.Response(200)

    def authpulse_fetch() -> httpx.Response:
        session.force_refresh()  # raises on any failure
        return ok

    oauth = authlib_httpx().OAuth2Client(
        client.client_id,
        client.client_secret,
        token_endpoint_auth_method=client.auth_method,
        timeout=10.0,
    )
    stack.callback(oauth.close)

    def authlib_fetch() -> httpx.Response:
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
        if not token.get("access_token"):
            raise RuntimeError("authlib fetched no access token")
        return ok

    return {"raw httpx": raw_fetch, "authpulse": authpulse_fetch, "authlib": authlib_fetch}


def measure(*, n: int = 200, warmup: int = 10) -> tuple[dict[str, Samples], dict[str, Any]]:
    """Time ``n`` fetches per library, interleaved; raises :class:`IdPUnavailableError`."""
    results = {name: Samples() for name in LIBRARIES}
    with provider() as idp, contextlib.ExitStack() as stack:
        fetchers = _fetchers(idp, stack)
        for _ in range(warmup):
            for fetch in fetchers.values():
                attempt(fetch, Outcome())
        for _ in range(n):
            for name in LIBRARIES:
                samples = results[name]
                t0 = now_ns()
                attempt(fetchers[name], samples.outcome)
                samples.ns.append(now_ns() - t0)
        info = {
            "issuer": idp.issuer,
            "node": idp.node_version,
            "auth_method": idp.post.auth_method,
            "access_ttl": idp.access_ttl,
        }
    return results, info


def section(
    results: dict[str, Samples] | None, info: dict[str, Any], *, n: int, reason: str = ""
) -> Section:
    intro = (
        f"{n} client-credentials token fetches per library against oidc-provider "
        "(tests/idp/server.mjs) over real HTTP on 127.0.0.1, interleaved call by call after "
        "warm-up. authpulse: `Session.force_refresh()` on `ClientCredentials`; raw httpx: one "
        "POST to the token endpoint; authlib: `OAuth2Client.fetch_token`."
    )
    headers = ["library", "p50", "p99", "min", "max", "Δ p50 vs raw", "failed / calls"]
    if results is None:
        return Section(
            key="idp",
            title=TITLE,
            intro=intro,
            headers=headers,
            rows=[],
            notes=[f"Not measured: {reason}"],
            data={"skipped": reason, "n": n},
        )
    raw_p50 = percentile(results["raw httpx"].ns, 50)
    rows, data = [], {}
    for name in LIBRARIES:
        s = results[name]
        p50, p99 = percentile(s.ns, 50), percentile(s.ns, 99)
        rows.append(
            [
                name,
                fmt_ms(p50),
                fmt_ms(p99),
                fmt_ms(min(s.ns)),
                fmt_ms(max(s.ns)),
                "-" if name == "raw httpx" else f"{(p50 - raw_p50) / 1e6:+.2f} ms",
                f"{s.outcome.failures} / {s.outcome.requests}",
            ]
        )
        data[name] = {
            "p50_ns": p50,
            "p99_ns": p99,
            "samples_ns": s.ns,
            "failures": s.outcome.failures,
            "failure_kinds": dict(s.outcome.kinds),
        }
    notes = [
        f"IdP: oidc-provider on Node.js {info.get('node', '?')}, client authentication "
        f"{info.get('auth_method', '?')}; every fetch is a new token (the IdP signs and "
        "stores each).",
        "Most of each figure is the IdP's own work; the differences between rows are the "
        "clients' cost per fetch.",
        "All three authenticate with client_secret_post: authlib sends client_secret_basic "
        "credentials without form-encoding them (RFC 6749 §2.3.1), and the IdP rejects "
        "that for the test clients' secrets.",
        f"authlib ran on {http_label(authlib_http())}.",
    ]
    return Section(
        key="idp",
        title=TITLE,
        intro=intro,
        headers=headers,
        rows=rows,
        notes=notes,
        data={"n": n, **info, "results": data},
    )


def run(*, n: int = 200, warmup: int = 10) -> Section:
    try:
        results, info = measure(n=n, warmup=warmup)
    except IdPUnavailableError as exc:
        return section(None, {}, n=n, reason=str(exc))
    return section(results, info, n=n)

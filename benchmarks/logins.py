"""Getting tokens against a REAL identity provider: client authentication,
discovery, and ``authpulse token`` as a process.

Starts ``tests/idp/server.mjs`` (oidc-provider on Node.js, on 127.0.0.1) with
the helpers of ``tests/_idp.py`` (through :func:`benchmarks.idp.provider`) and
measures three things:

1. one client-credentials token fetch per client authentication method
   (client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt
   RS256), authpulse ``Session.force_refresh()`` beside authlib's
   ``OAuth2Client.fetch_token`` where authlib can, interleaved call by call;
2. ``authpulse.discover(issuer)``: a first fetch (the metadata cache cleared)
   against a cache hit;
3. ``python -m authpulse._surfaces.cli token --store URL`` run as a process,
   with a fresh token in a SQLite store and in the keyring store's encrypted
   file, beside the floors ``python -c pass`` and ``python -c "import httpx"``.

Without Node.js (20.18+), npm or pytest, the sections say why and hold no figures.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import authpulse
from authpulse import (
    ClientCredentials,
    ClientSecretJWT,
    PrivateKeyJWT,
    Session,
    discover,
    open_store,
)
from authpulse._sessions.discovery_fetch import metadata_cache
from authpulse._surfaces.commands.profiles import LoginProfile, profile_id, write_profile
from benchmarks._common import (
    Section,
    authlib_http,
    authlib_httpx,
    fmt_ms,
    fmt_us,
    http_label,
    now_ns,
    percentile,
)
from benchmarks.idp import IdPUnavailableError, provider

__all__ = ["IdPUnavailableError", "LoginsResult", "measure", "run", "section"]

if TYPE_CHECKING:
    from _idp import OIDCProvider

METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt")
LIBRARIES = ("authpulse", "authlib")
#: the access tokens of this run live an hour, so the stored one is fresh for ``authpulse token``
IDP_ENV = {"AUTHPULSE_IDP_ACCESS_TTL": "3600"}
FLOORS = {"python -c pass": ["-c", "pass"], 'python -c "import httpx"': ["-c", "import httpx"]}
STORES = ("sqlite", "keyring file")


@dataclass
class Timed:
    """One row's timed calls and what went wrong in them."""

    ns: list[int] = field(default_factory=list)
    calls: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def run(self, call: Callable[[], bool]) -> None:
        self.calls += 1
        t0 = now_ns()
        try:
            good = call()
        except Exception as exc:
            self.ns.append(now_ns() - t0)
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        else:
            self.ns.append(now_ns() - t0)
            if good:
                self.ok += 1
            else:
                self.errors["wrong result"] = self.errors.get("wrong result", 0) + 1


@dataclass
class LoginsResult:
    """Everything one run measured."""

    #: (method, library) -> fetches; a pair missing here could not be set up
    fetches: dict[tuple[str, str], Timed] = field(default_factory=dict)
    #: (method, library) -> why it is not measured
    unsupported: dict[tuple[str, str], str] = field(default_factory=dict)
    discovery: dict[str, Timed] = field(default_factory=dict)
    #: row label -> process runs (ok: exit 0 and the expected output)
    processes: dict[str, Timed] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------- 1. client auth


def _authpulse_grant(idp: OIDCProvider, method: str) -> ClientCredentials:
    if method in ("client_secret_basic", "client_secret_post"):
        c = idp.basic if method == "client_secret_basic" else idp.post
        return ClientCredentials(
            idp.token_url, c.client_id, c.client_secret, auth_method=c.auth_method
        )
    registered = idp.jwt_clients[method]
    auth: PrivateKeyJWT | ClientSecretJWT = (
        PrivateKeyJWT(registered["private_jwk"])
        if method == "private_key_jwt"
        else ClientSecretJWT(registered["client_secret"])
    )
    return ClientCredentials(idp.token_url, registered["client_id"], client_auth=auth)


def _authlib_client(idp: OIDCProvider, method: str) -> Any:
    from authlib.oauth2.rfc7523 import ClientSecretJWT as AuthlibSecretJWT
    from authlib.oauth2.rfc7523 import PrivateKeyJWT as AuthlibKeyJWT

    oauth2_client = authlib_httpx().OAuth2Client
    if method in ("client_secret_basic", "client_secret_post"):
        c = idp.basic if method == "client_secret_basic" else idp.post
        return oauth2_client(
            c.client_id, c.client_secret, token_endpoint_auth_method=method, timeout=10.0
        )
    from joserfc.jwk import OctKey, RSAKey

    # the keys are imported once, as authpulse loads its own: given the raw JWK or
    # secret, authlib imports it again at every request (for an RSA JWK, ~40 ms)
    registered = idp.jwt_clients[method]
    if method == "private_key_jwt":
        secret: Any = RSAKey.import_key(registered["private_jwk"])
        auth: Any = AuthlibKeyJWT(idp.token_url, headers={"kid": registered["private_jwk"]["kid"]})
    else:
        secret = OctKey.import_key(registered["client_secret"])
        auth = AuthlibSecretJWT(idp.token_url)
    client = oauth2_client(
        registered["client_id"], secret, token_endpoint_auth_method=method, timeout=10.0
    )
    client.register_client_auth_method(auth)
    return client


def _fetchers(
    idp: OIDCProvider, stack: contextlib.ExitStack, result: LoginsResult
) -> dict[tuple[str, str], Callable[[], bool]]:
    """One zero-argument token fetch per (method, library) that works here."""
    calls: dict[tuple[str, str], Callable[[], bool]] = {}
    for method in METHODS:
        session = stack.enter_context(Session(_authpulse_grant(idp, method)))

        def authpulse_fetch(s: Session = session) -> bool:
            return bool(s.force_refresh().access_token.get_secret_value())

        calls[method, "authpulse"] = authpulse_fetch
        oauth = _authlib_client(idp, method)
        stack.callback(oauth.close)

        def authlib_fetch(o: Any = oauth) -> bool:
            return bool(
                o.fetch_token(idp.token_url, grant_type="client_credentials").get("access_token")
            )

        try:  # the probe: authlib cannot do every method the IdP accepts
            authlib_fetch()
        except Exception as exc:
            error = getattr(exc, "error", None)
            result.unsupported[method, "authlib"] = (
                f"refused by the IdP ({error or type(exc).__name__})"
            )
        else:
            calls[method, "authlib"] = authlib_fetch
    return calls


def measure_client_auth(idp: OIDCProvider, result: LoginsResult, *, n: int, warmup: int) -> None:
    with contextlib.ExitStack() as stack:
        fetchers = _fetchers(idp, stack, result)
        for _ in range(warmup):
            for fetch in fetchers.values():
                Timed().run(fetch)
        result.fetches = {key: Timed() for key in fetchers}
        for _ in range(n):
            for key, fetch in fetchers.items():
                result.fetches[key].run(fetch)


# ---------------------------------------------------------------------- 2. discovery


def measure_discovery(idp: OIDCProvider, result: LoginsResult, *, n: int) -> None:
    def first() -> bool:
        metadata_cache.clear()
        return discover(idp.issuer).token_endpoint == idp.token_url

    def hit() -> bool:
        return discover(idp.issuer).token_endpoint == idp.token_url

    result.discovery = {"first fetch": Timed(), "cache hit": Timed()}
    try:
        for _ in range(3):  # warm-up
            first(), hit()
        for _ in range(n):
            result.discovery["first fetch"].run(first)
            result.discovery["cache hit"].run(hit)
    finally:
        metadata_cache.clear()


# -------------------------------------------------------------- 3. authpulse token


def _child_env() -> dict[str, str]:
    """The environment of the processes: this authpulse importable, no store settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPULSE_")}
    if "AUTHPULSE_HTTP_BACKEND" in os.environ:
        env["AUTHPULSE_HTTP_BACKEND"] = os.environ["AUTHPULSE_HTTP_BACKEND"]
    src = str(Path(authpulse.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _seed(idp: OIDCProvider, url: str) -> str:
    """A profile with a fresh token (fetched from the IdP) in the store at ``url``;
    the token."""
    client = idp.post
    with Session(
        ClientCredentials(
            idp.token_url, client.client_id, client.client_secret, auth_method=client.auth_method
        )
    ) as session:
        token = session.force_refresh()
    profile = LoginProfile(
        name="default",
        issuer=idp.issuer,
        client_id=client.client_id,
        token_endpoint=idp.token_url,
        flow="device",
    )
    store = open_store(url)
    try:
        write_profile(store, profile, now=token.issued_at)
        store.put_token(profile_id("default"), token)
    finally:
        store.close()
    return token.access_token.get_secret_value()


def measure_processes(idp: OIDCProvider, result: LoginsResult, *, n: int, tmp: Path) -> None:
    urls = {"sqlite": f"sqlite:///{tmp}/cli.db", "keyring file": f"keyring:///{tmp}/vault"}
    expected = {name: _seed(idp, url) for name, url in urls.items()}
    env = _child_env()
    argvs: dict[str, tuple[list[str], str | None]] = {
        label: (args, None) for label, args in FLOORS.items()
    }
    for name, url in urls.items():
        argvs[f"authpulse token ({name})"] = (
            ["-m", "authpulse._surfaces.cli", "token", "--store", url],
            expected[name],
        )

    def runner(args: list[str], token: str | None) -> Callable[[], bool]:
        def call() -> bool:
            done = subprocess.run(  # noqa: S603 - this interpreter, a fixed argument list
                [sys.executable, *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if token is None:
                return done.returncode == 0 and done.stdout == ""
            return done.returncode == 0 and done.stdout == token + "\n"

        return call

    calls = {label: runner(*spec) for label, spec in argvs.items()}
    for call in calls.values():  # warm-up: the OS caches, the bytecode caches
        Timed().run(call)
    result.processes = {label: Timed() for label in calls}
    for _ in range(n):
        for label, call in calls.items():
            result.processes[label].run(call)


# ---------------------------------------------------------------------------- run


def measure(
    *, fetches: int = 100, warmup: int = 5, discoveries: int = 100, processes: int = 20
) -> LoginsResult:
    """Run all three parts against one IdP; raises :class:`IdPUnavailableError`."""
    result = LoginsResult()
    with provider(IDP_ENV) as idp, tempfile.TemporaryDirectory(prefix="authpulse-bench-") as tmp:
        measure_client_auth(idp, result, n=fetches, warmup=warmup)
        measure_discovery(idp, result, n=discoveries)
        measure_processes(idp, result, n=processes, tmp=Path(tmp))
        result.info = {"issuer": idp.issuer, "node": idp.node_version}
    return result


TITLE = "Getting tokens from a real IdP: client authentication, discovery, `authpulse token`"


def _errors(t: Timed) -> str:
    return f"{t.calls - t.ok} / {t.calls}" + (
        f" ({', '.join(f'{k}: {v}' for k, v in sorted(t.errors.items()))})" if t.errors else ""
    )


def section(result: LoginsResult | None, *, reason: str = "") -> Section:
    intro = (
        "Against oidc-provider (tests/idp/server.mjs) over real HTTP on 127.0.0.1. "
        "(a) One client-credentials token fetch per client authentication method, "
        "authpulse `Session.force_refresh()` and authlib `OAuth2Client.fetch_token`, "
        "interleaved call by call after warm-up; (b) `discover(issuer)` with its cache "
        "cleared vs a cache hit; (c) `python -m authpulse._surfaces.cli token` as a "
        "process with a fresh stored token, beside interpreter floors."
    )
    headers = ["what", "median", "p95", "authpulse / authlib", "failed / calls"]
    if result is None:
        return Section(
            "logins", TITLE, intro, headers, [], [f"Not measured: {reason}"], {"skipped": reason}
        )
    rows: list[list[str]] = []
    data: dict[str, Any] = {"info": result.info, "fetches": [], "discovery": {}, "processes": {}}
    for method in METHODS:
        medians = {
            lib: percentile(result.fetches[method, lib].ns, 50)
            for lib in LIBRARIES
            if (method, lib) in result.fetches
        }
        for lib in LIBRARIES:
            key = (method, lib)
            if key not in result.fetches:
                rows.append([f"{method} · {lib}", "-", "-", "-", result.unsupported.get(key, "-")])
                data["fetches"].append(
                    {"method": method, "library": lib, "unsupported": result.unsupported.get(key)}
                )
                continue
            t = result.fetches[key]
            ratio = (
                f"{medians['authpulse'] / medians['authlib']:.2f}×"
                if lib == "authpulse" and "authlib" in medians
                else "-"
            )
            rows.append(
                [
                    f"{method} · {lib}",
                    fmt_ms(medians[lib]),
                    fmt_ms(percentile(t.ns, 95)),
                    ratio,
                    _errors(t),
                ]
            )
            data["fetches"].append(
                {"method": method, "library": lib, "samples_ns": t.ns, "ok": t.ok, "calls": t.calls}
            )
    for label, t in result.discovery.items():
        rows.append(
            [
                f"discover(issuer) · {label}",
                fmt_us(percentile(t.ns, 50)),
                fmt_us(percentile(t.ns, 95)),
                "-",
                _errors(t),
            ]
        )
        data["discovery"][label] = {"samples_ns": t.ns, "ok": t.ok, "calls": t.calls}
    for label, t in result.processes.items():
        rows.append(
            [
                label,
                fmt_ms(percentile(t.ns, 50), 1),
                fmt_ms(percentile(t.ns, 95), 1),
                "-",
                _errors(t),
            ]
        )
        data["processes"][label] = {"samples_ns": t.ns, "ok": t.ok, "calls": t.calls}
    notes = [
        f"IdP: oidc-provider on Node.js {result.info.get('node', '?')}; every fetch is a new "
        "token, signed and stored by the IdP, so most of each figure is the IdP's work.",
        "private_key_jwt signs with RS256 (the IdP's one key client); client_secret_jwt with "
        "HS256. Each assertion is signed anew per request by both libraries; authlib is given "
        "its keys imported once (joserfc `RSAKey` / `OctKey`): given the raw JWK it imports "
        "it again at every request, which for the RSA key costs tens of ms.",
        "authlib sends client_secret_basic credentials without form-encoding them (RFC 6749 "
        "§2.3.1), which the IdP refuses for the test clients' secrets: no figures for it.",
        "`authpulse token` runs: a process prints the stored token (fresh: no token request) "
        "and exits 0; a run fails if its exit code or output is anything else. The keyring "
        "row uses the encrypted file (`keyring:///<dir>/vault`).",
        "A discovery cache hit makes no request and opens no HTTP client: its figure is the "
        "argument checks and the cache read.",
        f"authlib ran on {http_label(authlib_http())}.",
    ]
    return Section("logins", TITLE, intro, headers, rows, notes, data)


def run(
    *, fetches: int = 100, warmup: int = 5, discoveries: int = 100, processes: int = 20
) -> Section:
    try:
        result = measure(
            fetches=fetches, warmup=warmup, discoveries=discoveries, processes=processes
        )
    except IdPUnavailableError as exc:
        return section(None, reason=str(exc))
    return section(result)

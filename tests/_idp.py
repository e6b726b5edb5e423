"""A real OpenID Connect provider for the conformance tests.

``tests/idp/server.mjs`` runs `oidc-provider <https://github.com/panva/node-oidc-provider>`_
(pinned in ``tests/idp/package-lock.json``) on 127.0.0.1 with two
confidential clients (``client_secret_basic`` and ``client_secret_post``),
client credentials, refresh-token rotation, revocation, introspection and
resource indicators (JWT access tokens for ``urn:authpulse:api*``, opaque
ones otherwise). Its test-only interaction route signs the user in and
consents at once, so :meth:`OIDCProvider.login` gets a refresh token without
a browser. A public client (``device_client_id``) has the device
authorization grant (``deviceFlow``); :meth:`OIDCProvider.approve_device`
is its user, headless. A public native client (``native_client_id``) has the
authorization code grant with PKCE and a loopback redirect URI on any port;
:meth:`OIDCProvider.browse` is its user's browser, headless.

The session-scoped ``oidc_provider`` fixture runs ``npm ci`` in
``tests/idp`` when ``node_modules`` is missing or was not installed from the
current ``package.json`` and ``package-lock.json`` (a stamp file records them),
starts ``node server.mjs``, waits (boundedly) for its one-line JSON ready
message and stops it at the end. Without ``node``/``npm`` (or with a Node.js
too old for oidc-provider 9), or when ``npm ci`` fails, the tests are
skipped — unless the environment says ``CI=true``: then they fail, so CI
cannot go green by silently not testing against a real IdP.
``scripts/ensure-system-deps.sh`` installs Node.js on a fresh Debian machine.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qs, quote

import pytest
from pydantic import SecretStr

from authpulse import RefreshTokenGrant, Session, TokenSet, open_store
from authpulse._runtime.backend import httpx

__all__ = [
    "IDP_DIR",
    "AsyncCountingTransport",
    "CountingTransport",
    "IdPClient",
    "OIDCProvider",
    "StoreWorkerSpec",
    "TokenCalls",
    "ensure_node_modules",
    "expired_token_set",
    "fingerprint",
    "oidc_provider_fixture",
    "require_node",
    "store_refresh_worker",
]

IDP_DIR = Path(__file__).resolve().parent / "idp"
#: oidc-provider 9 uses URL.parse and crypto.hash: Node.js 20.18 or later
#: (Debian 12's nodejs is 18: scripts/ensure-system-deps.sh installs a newer one)
MIN_NODE = (20, 18)
#: bounds on the slow steps (the IdP itself starts in well under a second)
NPM_CI_TIMEOUT = 300.0
READY_TIMEOUT = 30.0
INSTALL_HINT = "run scripts/ensure-system-deps.sh as root (Node.js 20.18+ and npm)"
#: written into node_modules after a successful ``npm ci``: the lockfile it installed
_STAMP = ".authpulse-lock.sha256"

AuthMethod = Literal["client_secret_basic", "client_secret_post"]


def _missing(reason: str, output: str = "") -> NoReturn:
    details = f"\n{output}" if output else ""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{reason}, and CI=true requires the real-IdP tests to run; {INSTALL_HINT}{details}"
        )
    pytest.skip(f"{reason}: the real-IdP conformance tests are skipped ({INSTALL_HINT}){details}")


def _node_version(node: str) -> tuple[int, ...]:
    try:
        out = subprocess.run(  # noqa: S603 - a fixed argument list
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        _missing(f"`node --version` failed ({type(exc).__name__})")
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        _missing(f"`node --version` printed {out[:40]!r}, not a version")
    return tuple(int(part) for part in match.groups())


def require_node() -> tuple[str, str]:
    """The paths of ``node`` and ``npm``; skips without them (fails with ``CI=true``)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        _missing(f"{missing} not on PATH")
    version = _node_version(node)
    if version[:2] < MIN_NODE:
        have = ".".join(map(str, version))
        want = ".".join(map(str, MIN_NODE))
        _missing(f"Node.js {have} is too old for oidc-provider 9 (it needs {want} or later)")
    return node, npm


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((IDP_DIR / name).read_bytes())
    return digest.hexdigest()


def _installed(digest: str) -> bool:
    stamp = IDP_DIR / "node_modules" / _STAMP
    try:
        return stamp.read_text().strip() == digest
    except OSError:
        return False


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One ``npm ci`` at a time per checkout, across pytest processes."""
    key = hashlib.sha256(str(IDP_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"authpulse-idp-{key}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_node_modules(npm: str) -> None:
    """``npm ci`` in tests/idp unless node_modules holds what the lockfile says."""
    digest = _lock_digest()
    if _installed(digest):
        return
    with _install_lock():
        if _installed(digest):  # another process installed meanwhile
            return
        try:
            done = subprocess.run(  # noqa: S603 - a fixed argument list
                [npm, "ci", "--prefix", str(IDP_DIR), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _missing(f"`npm ci` in {IDP_DIR} did not finish within {NPM_CI_TIMEOUT:.0f} s")
        except OSError as exc:
            _missing(f"`npm ci` could not run ({type(exc).__name__}: {exc})")
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-1500:]
            _missing(f"`npm ci` in {IDP_DIR} failed (exit {done.returncode})", output)
        (IDP_DIR / "node_modules" / _STAMP).write_text(digest + "\n")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class IdPClient:
    """A confidential client registered with the provider."""

    name: str
    client_id: str
    client_secret: str
    auth_method: AuthMethod

    def __repr__(self) -> str:  # never print the secret
        return f"IdPClient({self.name!r}, {self.client_id!r}, {self.auth_method!r})"

    def authenticate(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Headers and form for a request authenticated as this client.

        Basic credentials are form-encoded first (RFC 6749 §2.3.1): the test
        secrets hold characters that need it.
        """
        if self.auth_method == "client_secret_post":
            form = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
            return {}, form
        raw = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode("ascii")}, form


class IdPError(AssertionError):
    """The provider did something the test helpers did not expect."""


class OIDCProvider:
    """A running ``tests/idp/server.mjs``: its addresses, clients and helpers.

    Built by :meth:`start`; the endpoints come from the provider's own
    discovery document.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], ready: dict[str, Any], log: Path, started_in: float
    ) -> None:
        self._proc: subprocess.Popen[bytes] | None = proc
        self.log_path = log
        #: seconds from ``node server.mjs`` to the ready line
        self.started_in = started_in
        self.issuer: str = ready["issuer"]
        self.port: int = ready["port"]
        self.redirect_uri: str = ready["redirect_uri"]
        self.access_ttl: int = ready["access_ttl"]
        self.resources: list[str] = ready["resources"]
        self.node_version: str = ready["node"]
        #: the public client of the device authorization grant (no secret)
        self.device_client_id: str = ready["device_client_id"]
        #: clients that authenticate with an assertion (RFC 7523), by method:
        #: ``private_key_jwt`` (``client_id``, ``private_jwk``) and
        #: ``client_secret_jwt`` (``client_id``, ``client_secret``)
        self.jwt_clients: dict[str, dict[str, Any]] = ready["jwt_clients"]
        #: the public native client of the browser login with PKCE (no secret)
        self.native_client_id: str = ready["native_client"]
        self.clients = {
            name: IdPClient(
                name, c["client_id"], c["client_secret"], c["token_endpoint_auth_method"]
            )
            for name, c in ready["clients"].items()
        }
        #: the confidential client allowed the token exchange grant (RFC 8693)
        ex = ready["exchange_client"]
        self.exchange_client = IdPClient(
            "exchange", ex["client_id"], ex["client_secret"], ex["token_endpoint_auth_method"]
        )
        self._http = httpx.Client(timeout=10.0, follow_redirects=False)
        try:
            response = self._http.get(f"{self.issuer}/.well-known/openid-configuration")
            response.raise_for_status()
        except httpx.HTTPError:
            self.stop()
            raise
        self.metadata: dict[str, Any] = response.json()

    # -- lifecycle ------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        node: str,
        directory: Path,
        *,
        env: dict[str, str] | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> OIDCProvider:
        """Run ``node server.mjs`` and return once it printed its ready line.

        Its stdout and stderr go to files in ``directory`` (nothing to drain,
        nothing to block on); the ready line is read from the stdout file.
        """
        out_path, log_path = directory / "idp.stdout", directory / "idp.log"
        began = time.monotonic()
        with out_path.open("wb") as out, log_path.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - a fixed argument list
                [node, "server.mjs"],
                cwd=IDP_DIR,
                stdout=out,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        deadline = began + timeout
        while True:
            text = out_path.read_text(errors="replace")
            if "\n" in text:
                break
            if proc.poll() is not None:
                raise IdPError(
                    f"the IdP exited at start (code {proc.returncode}):\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                _stop(proc)
                raise IdPError(f"the IdP was not ready within {timeout} s:\n{_tail(log_path)}")
            time.sleep(0.02)
        started_in = time.monotonic() - began
        try:
            ready = json.loads(text.splitlines()[0])
        except ValueError:
            _stop(proc)
            raise IdPError(f"the IdP's ready line is not JSON: {text[:200]!r}") from None
        return cls(proc, ready, log_path, started_in)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        self._http.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)

    def __enter__(self) -> OIDCProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the IdP's stderr (oidc-provider's reasons for its errors)."""
        return _tail(self.log_path, chars)

    # -- addresses --------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def authorization_url(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def jwks_uri(self) -> str:
        return str(self.metadata["jwks_uri"])

    @property
    def userinfo_url(self) -> str:
        return str(self.metadata["userinfo_endpoint"])

    @property
    def device_authorization_url(self) -> str:
        return str(self.metadata["device_authorization_endpoint"])

    @property
    def basic(self) -> IdPClient:
        return self.clients["basic"]

    @property
    def post(self) -> IdPClient:
        return self.clients["post"]

    # -- helpers --------------------------------------------------------------------

    def _post(self, url: str, client: IdPClient, form: dict[str, str]) -> httpx.Response:
        headers, form = client.authenticate(form)
        return self._http.post(url, data=form, headers=headers)

    def login(
        self,
        client: IdPClient | None = None,
        *,
        user: str = "alice",
        scope: str = "openid offline_access",
    ) -> str:
        """Sign ``user`` in through the authorization code flow (with PKCE) and
        return the refresh token. Each call is a new browser (cookie jar), so a
        new grant: refresh tokens of different logins never interfere.

        ``prompt=consent`` is always sent: without it oidc-provider silently
        drops ``offline_access`` and issues no refresh token.
        """
        client = client or self.basic
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": client.client_id,
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "prompt": "consent",
            "login_hint": user,
            "state": state,
            "code_challenge": _s256(verifier),
            "code_challenge_method": "S256",
        }
        callback = httpx.URL(self.redirect_uri)
        with httpx.Client(timeout=10.0, follow_redirects=False) as browser:
            response = browser.get(self.authorization_url, params=params)
            target = self._follow(
                browser, response, lambda url: url.copy_with(query=None) == callback, "login"
            )
        query = {k: v[0] for k, v in parse_qs(target.query.decode()).items()}
        if "error" in query or query.get("state") != state or "code" not in query:
            raise IdPError(f"login: unexpected callback {sorted(query)}: {query.get('error')}")
        response = self._post(
            self.token_url,
            client,
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
        )
        body = response.json()
        refresh_token = body.get("refresh_token") if response.status_code == 200 else None
        if not isinstance(refresh_token, str):
            raise IdPError(
                f"login: code exchange gave HTTP {response.status_code} without a refresh "
                f"token: {body.get('error')}\n{self.log_tail(1500)}"
            )
        return refresh_token

    def _follow(
        self,
        browser: httpx.Client,
        response: httpx.Response,
        stop: Callable[[httpx.URL], bool],
        what: str,
    ) -> httpx.URL:
        """Follow the provider's redirects (its interaction route signs the user
        in and consents) up to the first one ``stop`` accepts: its URL."""
        for _ in range(10):
            if response.status_code not in (302, 303) or "location" not in response.headers:
                raise IdPError(
                    f"{what}: HTTP {response.status_code} at {response.url.path}: "
                    f"{response.text[:300]}\n{self.log_tail(1500)}"
                )
            target = response.url.join(response.headers["location"])
            if stop(target):
                return target
            response = browser.get(target)
        raise IdPError(f"{what}: more than 10 redirects")

    def browse(self, url: str) -> httpx.Response:
        """Be the user's browser for a browser login, headless: open the
        authorization ``url``, let the interaction route sign the user in and
        consent, follow the redirects to the first one off the provider (the
        app's loopback redirect URI) and GET it. The loopback listener's answer.
        Each call is a new browser."""
        own = httpx.URL(self.issuer)
        with httpx.Client(timeout=10.0, follow_redirects=False) as browser:
            target = self._follow(
                browser,
                browser.get(url),
                lambda target: (target.host, target.port) != (own.host, own.port),
                "browser login",
            )
            return browser.get(target)

    def approve_device(
        self, verification_uri_complete: str, *, user: str = "alice", abort: bool = False
    ) -> None:
        """Be the user of a device login (RFC 8628 §3.3), headless: open the
        verification URI with the user code, submit the code and confirm it (or
        abort: the device is then refused with ``access_denied``), and let the
        interaction route sign ``user`` in and consent. Each call is a new browser."""
        with httpx.Client(timeout=10.0, follow_redirects=False) as browser:
            # the page with the code auto-submits a form (xsrf, user_code)
            page = browser.get(verification_uri_complete)
            fields = _hidden_fields(page, "device code page")
            # the confirmation page: the same form, with confirm=yes
            page = browser.post(page.url.join(_form_action(page)), data=fields)
            fields = _hidden_fields(page, "device confirmation page")
            if abort:
                fields = {k: v for k, v in fields.items() if k != "confirm"} | {"abort": "yes"}
            response = browser.post(page.url.join(_form_action(page)), data=fields)
            for _ in range(10):
                if response.status_code not in (302, 303) or "location" not in response.headers:
                    break
                response = browser.get(response.url.join(response.headers["location"]))
            else:
                raise IdPError("device login: more than 10 redirects")
            done = "Sign-in Success" if not abort else "interrupted"
            if done not in response.text:
                raise IdPError(
                    f"device login: HTTP {response.status_code} at {response.url.path}: "
                    f"{response.text[:300]}\n{self.log_tail(1500)}"
                )

    def introspect(self, token: str, client: IdPClient | None = None) -> dict[str, Any]:
        """The provider's introspection answer (RFC 7662) for ``token``."""
        response = self._post(
            str(self.metadata["introspection_endpoint"]), client or self.basic, {"token": token}
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def active(self, token: str, client: IdPClient | None = None) -> bool:
        return self.introspect(token, client).get("active") is True

    def revoke(
        self,
        token: str,
        client: IdPClient | None = None,
        *,
        hint: Literal["refresh_token", "access_token"] = "refresh_token",
    ) -> None:
        """Revoke ``token`` at the provider (RFC 7009). Revoking a refresh token
        revokes its whole grant."""
        response = self._post(
            str(self.metadata["revocation_endpoint"]),
            client or self.basic,
            {"token": token, "token_type_hint": hint},
        )
        if response.status_code != 200:
            raise IdPError(f"revocation: HTTP {response.status_code}: {response.text[:200]}")

    def refresh(
        self, refresh_token: str, client: IdPClient | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One raw refresh-token grant, outside authpulse: (status, JSON body)."""
        response = self._post(
            self.token_url,
            client or self.basic,
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        body: dict[str, Any] = response.json()
        return response.status_code, body


def _hidden_fields(page: httpx.Response, what: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    if page.status_code != 200 or "xsrf" not in fields:
        raise IdPError(f"{what}: HTTP {page.status_code} without its form: {page.text[:300]}")
    return fields


def _form_action(page: httpx.Response) -> str:
    match = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    if match is None:
        raise IdPError(f"no form on the page at {page.url.path}")
    return match.group(1)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session", name="oidc_provider")
def oidc_provider_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    """A real oidc-provider shared by the whole test session."""
    node, npm = require_node()
    ensure_node_modules(npm)
    with OIDCProvider.start(node, tmp_path_factory.mktemp("idp")) as idp:
        yield idp


@pytest.fixture(name="idp")
def idp_fixture(oidc_provider: OIDCProvider) -> Iterator[OIDCProvider]:
    """The session's provider for one test; a test that breaks it says so, with the
    IdP's log."""
    assert oidc_provider.running, f"the IdP is not running:\n{oidc_provider.log_tail()}"
    yield oidc_provider
    assert oidc_provider.running, f"the IdP died during the test:\n{oidc_provider.log_tail()}"


# ------------------------------------------------------------------ counting token calls


class TokenCalls:
    """Requests to the token endpoint, by grant type (thread-safe)."""

    def __init__(self, token_url: str) -> None:
        self.path = httpx.URL(token_url).path
        self.grants: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenCalls({dict(self.grants)})"

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.grants.values())

    def record(self, request: httpx.Request) -> None:
        if request.method != "POST" or request.url.path != self.path:
            return
        form = parse_qs(request.read().decode())
        with self._lock:
            self.grants[form.get("grant_type", ["?"])[0]] += 1


class CountingTransport(httpx.BaseTransport):
    """A real ``httpx.HTTPTransport`` that counts the token calls going through it."""

    def __init__(self, calls: TokenCalls) -> None:
        self.calls = calls
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.record(request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncCountingTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`CountingTransport`."""

    def __init__(self, calls: TokenCalls) -> None:
        self.calls = calls
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.record(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


# ------------------------------------------------------ sessions in other processes


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a token (reports never carry tokens)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def expired_token_set(refresh_token: str, now: float) -> TokenSet:
    """A token set whose access token expired a minute ago, with a live refresh token."""
    return TokenSet(
        access_token=SecretStr("at-expired-" + secrets.token_hex(4)),
        refresh_token=SecretStr(refresh_token),
        issued_at=now - 120,
        expires_at=now - 60,
    )


@dataclass(frozen=True)
class StoreWorkerSpec:
    """What a worker process needs to build its session on the shared store."""

    store_url: str
    store_key: str
    token_url: str
    client_id: str
    client_secret: str
    auth_method: AuthMethod


def store_refresh_worker(spec: StoreWorkerSpec, start: Barrier, conn: Connection) -> None:
    """In a process of its own: a :class:`Session` on the shared store, with no
    token and no refresh token of its own, asks for a token once every worker
    is ready. Sends back a report (fingerprints only, never a token)."""
    try:
        report = _refresh_through_store(spec, start)
    except BaseException:
        report = {"error": traceback.format_exc()}
    try:
        conn.send(report)
    finally:
        conn.close()


def _refresh_through_store(spec: StoreWorkerSpec, start: Barrier) -> dict[str, Any]:
    calls = TokenCalls(spec.token_url)
    events: list[dict[str, Any]] = []
    store = open_store(spec.store_url)
    try:
        session = Session(
            # the refresh token comes from the store: this process never had one
            RefreshTokenGrant(
                spec.token_url,
                spec.client_id,
                spec.client_secret,
                refresh_token=None,
                auth_method=spec.auth_method,
            ),
            store=store,
            store_key=spec.store_key,
            transport=CountingTransport(calls),
        )
        session.add_listener(lambda kind, fields: events.append({"kind": kind, **fields}))
        try:
            start.wait(timeout=60)
            access = session.token()
            token = session.token_set
            refresh = token.refresh_token if token is not None else None
        finally:
            session.close()
    finally:
        store.close()
    return {
        "token_calls": dict(calls.grants),
        "access": fingerprint(access),
        "refresh": fingerprint(refresh.get_secret_value()) if refresh is not None else None,
        "refreshed": [e for e in events if e["kind"] == "refreshed"],
        "failed": [e for e in events if e["kind"] == "refresh_failed"],
    }

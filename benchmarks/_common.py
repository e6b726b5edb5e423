"""Shared pieces of the benchmarks: statistics, tables, machine info, peer wiring."""

from __future__ import annotations

import datetime as dt
import gc
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

import authpulse
from authpulse.testing import FakeAPI, FakeIdP

#: the FakeIdP's one client
CLIENT_ID = "client"
CLIENT_SECRET = "secret"
#: latency of the token endpoint in the stampede, stall and stale benchmarks
TOKEN_LATENCY = 0.050

now_ns = time.perf_counter_ns


# --------------------------------------------------------------------------- results


@dataclass
class Section:
    """One benchmark's results: a markdown table plus the raw figures."""

    key: str
    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """The rows as a markdown table, columns padded for reading as text."""
        rows = [[c.replace("|", "\\|") for c in row] for row in self.rows]
        widths = [len(h) for h in self.headers]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [line(self.headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out.extend(line(r) for r in rows)
        return "\n".join(out)

    def markdown(self) -> str:
        parts = [f"## {self.title}", "", self.intro, "", self.table()]
        if self.notes:
            parts.append("")
            parts.extend(f"- {n}" for n in self.notes)
        return "\n".join(parts) + "\n"


@dataclass
class Outcome:
    """What happened to a set of requests: how many failed, and how."""

    requests: int = 0
    failures: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def record(self, response: httpx.Response | None, exc: BaseException | None = None) -> None:
        self.requests += 1
        if exc is not None:
            self.failures += 1
            self.kinds[_describe(exc)] += 1
        elif response is not None and response.status_code != 200:
            self.failures += 1
            self.kinds[f"HTTP {response.status_code}"] += 1

    def merge(self, other: Outcome) -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.kinds.update(other.kinds)


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    error = getattr(exc, "error", None)  # authlib's OAuthError carries the OAuth error code
    return f"{name}({error})" if isinstance(error, str) and error else name


def attempt(call: Callable[[], httpx.Response], outcome: Outcome) -> None:
    """Make one request and record it; any exception is a failed request."""
    try:
        response = call()
    except Exception as exc:
        outcome.record(None, exc)
    else:
        outcome.record(response)


async def aattempt(call: Callable[[], Awaitable[httpx.Response]], outcome: Outcome) -> None:
    """Async twin of :func:`attempt`."""
    try:
        response = await call()
    except Exception as exc:
        outcome.record(None, exc)
    else:
        outcome.record(response)


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Move everything alive now (modules, the peers' too) out of the collector's sight.

    The benchmarks call ``gc.collect()`` before each timed block so that a
    collection does not land inside one; with tens of thousands of objects
    from imports, each such call would cost tens of ms. ``gc.freeze()`` puts
    them in the permanent generation: collections then scan only what the
    benchmark itself allocates. Collection during timing is left on.
    """
    authlib_httpx()  # import the peers now, so that their objects are frozen too
    httpx_auth_module()
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# ------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear interpolation between ranks."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


# ------------------------------------------------------------------------ formatting


def fmt_us(ns: float) -> str:
    return f"{ns / 1e3:.1f} µs"


def fmt_ms(ns: float, digits: int = 2) -> str:
    return f"{ns / 1e6:.{digits}f} ms"


def fmt_ratio(x: float) -> str:
    return f"{x:.3f}×"


def fmt_range(values: Sequence[int]) -> str:
    """``3`` when every run agreed, else ``min–max``."""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def target_mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


# ---------------------------------------------------------------------- environment


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """The header of a results file: what the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} ({usable} usable)",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "httpx": httpx.__version__,
        "authpulse": authpulse.__version__,
        "authlib": _version("authlib"),
        "httpx-auth": _version("httpx-auth"),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "load": load_average(),
        "revision": source_revision(),
    }


def source_revision() -> str:
    """The git commit of the checkout, flagged when src/ has uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    root = str(Path(__file__).resolve().parent.parent)
    try:
        head = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [git, "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [git, "-C", root, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} + uncommitted changes in src/" if dirty else head


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews figures."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# ----------------------------------------------------------------------------- peers


def authlib_httpx() -> Any:
    """``authlib.integrations.httpx_client``.

    Authlib 1.9 prefers the ``httpx2`` fork and warns (AuthlibDeprecationWarning)
    when it falls back to ``httpx`` at import time; the warning is swallowed
    here so that test runs with ``-W error`` can import it.
    """
    with warnings.catch_warnings(record=True):
        from authlib.integrations import httpx_client
    return httpx_client


def httpx_auth_module() -> Any:
    import httpx_auth

    return httpx_auth


def authlib_http() -> Any:
    """The httpx-compatible module authlib's clients are built on.

    Authlib 1.9 builds on the ``httpx2`` fork when it is installed and falls
    back to ``httpx`` otherwise; its transports (and the responses they
    return) must come from that same module.
    """
    for cls in authlib_httpx().OAuth2Client.__mro__:
        top = cls.__module__.split(".")[0]
        if cls.__name__ == "Client" and top in ("httpx", "httpx2"):
            return sys.modules[top]
    return httpx


def authlib_note() -> str:
    """One sentence for the notes: which HTTP library authlib ran on."""
    http = authlib_http()
    if http is httpx:
        return f"authlib ran on {http_label(http)}."
    return (
        f"authlib ran on {http_label(http)} (the fork it prefers when installed); the FakeIdP "
        "and FakeAPI are httpx-based, so requests and answers on its transport are converted "
        "between the two (a few µs per request, charged to authlib)."
    )


def http_label(http: Any) -> str:
    """``httpx 0.28.1``: which HTTP library, which version."""
    return f"{http.__name__} {getattr(http, '__version__', '?')}"


def _to_httpx(request: Any) -> httpx.Request:
    return httpx.Request(
        request.method, str(request.url), headers=request.headers.raw, content=request.content
    )


def bridge(handle: Callable[[httpx.Request], httpx.Response], http: Any) -> Callable[[Any], Any]:
    """``handle`` (an httpx handler such as ``FakeIdP.handle``) as a handler for
    a MockTransport of ``http``: requests and responses are converted when
    ``http`` is not httpx itself (authlib on httpx2)."""
    if http is httpx:
        return handle

    def bridged(request: Any) -> Any:
        r = handle(_to_httpx(request))
        return http.Response(r.status_code, headers=r.headers.raw, content=r.content)

    return bridged


def abridge(
    handle: Callable[[httpx.Request], Awaitable[httpx.Response]], http: Any
) -> Callable[[Any], Awaitable[Any]]:
    """Async twin of :func:`bridge`."""
    if http is httpx:
        return handle

    async def bridged(request: Any) -> Any:
        r = await handle(_to_httpx(request))
        return http.Response(r.status_code, headers=r.headers.raw, content=r.content)

    return bridged


def router(idp: FakeIdP, api: FakeAPI, http: Any = httpx) -> Any:
    """One sync transport (of ``http``) serving both the IdP and the API, by host.

    Authlib's ``OAuth2Client`` sends its token requests through itself, so
    the token endpoint has to live on the client's own transport.
    """
    idp_host = httpx.URL(idp.token_url).host
    idp_handle, api_handle = bridge(idp.handle, http), bridge(api.handle, http)

    def handle(request: Any) -> Any:
        if request.url.host == idp_host:
            return idp_handle(request)
        return api_handle(request)

    return http.MockTransport(handle)


def arouter(idp: FakeIdP, api: FakeAPI, http: Any = httpx) -> Any:
    """Async twin of :func:`router` (latency with ``asyncio.sleep``)."""
    idp_host = httpx.URL(idp.token_url).host
    idp_handle, api_handle = abridge(idp.ahandle, http), abridge(api.ahandle, http)

    async def handle(request: Any) -> Any:
        if request.url.host == idp_host:
            return await idp_handle(request)
        return await api_handle(request)

    return http.MockTransport(handle)


def expired_token_set(refresh_token: str | None, *, now: float | None = None) -> authpulse.TokenSet:
    """A token set that expired an hour ago (optionally carrying a refresh token)."""
    t = time.time() if now is None else now
    return authpulse.TokenSet(
        access_token=SecretStr("at_expired"),
        refresh_token=SecretStr(refresh_token) if refresh_token else None,
        issued_at=t - 7200.0,
        expires_at=t - 3600.0,
    )


def authlib_expired_token(refresh_token: str | None) -> dict[str, Any]:
    """The same expired token, as the dict authlib takes."""
    token: dict[str, Any] = {
        "access_token": "at_expired",
        "token_type": "Bearer",
        "expires_at": int(time.time()) - 3600,
    }
    if refresh_token:
        token["refresh_token"] = refresh_token
    return token


def valid_access_token(idp: FakeIdP) -> str:
    """Ask ``idp`` for a token directly (client credentials, no latency)."""
    latency, idp.latency = idp.latency, 0.0
    try:
        with httpx.Client(transport=idp.transport) as c:
            r = c.post(
                idp.token_url,
                data={"grant_type": "client_credentials"},
                auth=(CLIENT_ID, CLIENT_SECRET),
            )
        r.raise_for_status()
        token = r.json()["access_token"]
    finally:
        idp.latency = latency
    if not isinstance(token, str):
        raise TypeError("the fake IdP returned no access token string")
    return token

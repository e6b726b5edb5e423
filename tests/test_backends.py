"""httpx and httpx2 at once, in one process: one session, both libraries' clients.

The rest of the suite runs on the default backend (``make test`` runs it once
per backend, with ``AUTHPULSE_HTTP_BACKEND``); this module imports both
libraries directly, on purpose, whatever the default is.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import httpx2
import pytest

import authpulse
import authpulse.httpx
import authpulse.httpx2
from _support import cc_session
from authpulse import (
    CachePolicy,
    ConfigurationError,
    RequestFailedError,
    RetryPolicy,
    Session,
)
from authpulse._runtime.backend import BACKEND_ENV, DEFAULT_BACKEND, backend, backend_of
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault


def _bearer_ok(idp: FakeIdP, header: str | None) -> bool:
    return header is not None and header.startswith("Bearer ") and idp.validate(header[7:])


def test_one_auth_is_both_libraries_auth(clock: FakeClock, idp: FakeIdP) -> None:
    auth = cc_session(idp, clock).auth()
    assert isinstance(auth, httpx.Auth)
    assert isinstance(auth, httpx2.Auth)


def test_plain_clients_of_both_libraries_get_the_token_and_the_401_replay(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"ok": True})

    api.handler = handler  # written for httpx: the fake rebuilds its answer for httpx2
    with (
        httpx.Client(auth=session.auth(), transport=httpx.MockTransport(api.handle)) as one,
        httpx2.Client(auth=session.auth(), transport=httpx2.MockTransport(api.handle)) as two,
    ):
        r1 = one.get(f"{api.base_url}/a")
        r2 = two.get(f"{api.base_url}/b")
        assert (r1.status_code, r2.status_code) == (200, 200)
        assert isinstance(r1, httpx.Response)
        assert isinstance(r2, httpx2.Response)
        assert idp.token_calls == 1  # one session, one token, for both
        assert seen[0] == seen[1]
        assert _bearer_ok(idp, seen[0])

        for client, library in ((one, httpx), (two, httpx2)):
            idp.expire_all()  # the API now refuses the token: 401, refresh, replay
            before = (idp.token_calls, api.unauthorized)
            r = client.get(f"{api.base_url}/after-401")
            assert r.status_code == 200
            assert isinstance(r, library.Response)
            assert (idp.token_calls, api.unauthorized) == (before[0] + 1, before[1] + 1)
            assert _bearer_ok(idp, seen[-1])
    assert session.health().score == 100


@pytest.mark.anyio
async def test_plain_async_clients_of_both_libraries(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    async with (
        httpx.AsyncClient(auth=session.auth(), transport=httpx.MockTransport(api.ahandle)) as one,
        httpx2.AsyncClient(auth=session.auth(), transport=httpx2.MockTransport(api.ahandle)) as two,
    ):
        assert (await one.get(f"{api.base_url}/a")).status_code == 200
        assert (await two.get(f"{api.base_url}/b")).status_code == 200
        assert idp.token_calls == 1
        for client in (one, two):
            idp.expire_all()
            before = idp.token_calls
            assert (await client.get(f"{api.base_url}/c")).status_code == 200
            assert idp.token_calls == before + 1
    assert api.unauthorized == 2
    await session.aclose()


def test_authpulse_clients_on_both_libraries_with_retries_and_cache(
    clock: FakeClock, idp: FakeIdP, api: FakeAPI
) -> None:
    session = cc_session(idp, clock)
    cache = CachePolicy(ttl=60.0)
    with (
        authpulse.httpx.Client(
            session, base_url=api.base_url, cache=cache, transport=httpx.MockTransport(api.handle)
        ) as a,
        authpulse.httpx2.Client(
            session, base_url=api.base_url, cache=cache, transport=httpx2.MockTransport(api.handle)
        ) as b,
    ):
        assert isinstance(a, httpx.Client)
        assert isinstance(b, httpx2.Client)
        for client, library in ((a, httpx), (b, httpx2)):
            api.fail_next(1)  # a 503, retried
            r = client.get("/items", extensions={"authpulse_retry": RetryPolicy(attempts=2)})
            assert r.status_code == 200
            assert r.extensions["authpulse_cache"] == "miss"
            hit = client.get("/items")  # answered by the cache, built with the client's library
            assert hit.extensions["authpulse_cache"] == "hit"
            assert isinstance(hit, library.Response)
            assert hit.json() == {"ok": True, "path": "/items"}


def test_transport_errors_of_both_libraries(clock: FakeClock, idp: FakeIdP, api: FakeAPI) -> None:
    session = cc_session(idp, clock)
    api.set_outage(Fault.refused())  # raised as the request's library's ConnectError
    with (
        authpulse.httpx2.Client(
            session, base_url=api.base_url, transport=httpx2.MockTransport(api.handle)
        ) as client,
        pytest.raises(httpx2.TransportError) as caught,
    ):
        client.get("/items", extensions={"authpulse_retry": RetryPolicy(attempts=2)})
    error: object = caught.value  # statically, RequestFailedError is only httpx's
    assert isinstance(error, RequestFailedError)
    assert isinstance(error, httpx.TransportError)
    assert isinstance(error.__cause__, httpx2.ConnectError)


def test_the_token_client_follows_the_transport_library(clock: FakeClock, idp: FakeIdP) -> None:
    session = Session(
        authpulse.ClientCredentials(idp.token_url, "client", "secret"),
        clock=clock,
        transport=httpx2.MockTransport(idp.handle),
    )
    assert session.token()
    assert isinstance(session._token_clients().sync(), httpx2.Client)
    assert idp.token_calls == 1
    session.close()


def test_a_transport_of_the_other_library_is_refused(clock: FakeClock, idp: FakeIdP) -> None:
    session = cc_session(idp, clock)
    with pytest.raises(ConfigurationError, match="httpx transport, but this is a httpx2 client"):
        authpulse.httpx2.Client(session, transport=httpx.MockTransport(idp.handle))
    with pytest.raises(ConfigurationError, match="httpx2 transport, but this is a httpx client"):
        authpulse.httpx.AsyncClient(session, transport=httpx2.MockTransport(idp.ahandle))


def test_the_default_backend_is_what_the_suite_runs_on() -> None:
    wanted = os.environ.get(BACKEND_ENV) or "httpx"
    assert wanted == DEFAULT_BACKEND
    module = backend()
    assert module.__name__ == DEFAULT_BACKEND
    assert issubclass(authpulse.Client, module.Client)
    assert issubclass(authpulse.AsyncClient, module.AsyncClient)
    assert backend_of(module.URL("https://x.test")) is module


def test_backend_names_are_checked() -> None:
    assert backend("httpx2").__name__ == "httpx2"
    with pytest.raises(ConfigurationError, match="one of httpx, httpx2"):
        backend("requests")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("httpx", "httpx.Client"), ("httpx2", "httpx2.Client"), ("HTTPX2", "httpx2.Client")],
)
def test_the_environment_variable_picks_the_default(value: str, expected: str) -> None:
    code = (
        "import authpulse;"
        " b = next(c for c in authpulse.Client.__mro__ if c.__module__.startswith('httpx'));"
        " print(b.__module__.split('.')[0] + '.' + b.__name__)"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        env={**os.environ, BACKEND_ENV: value},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == expected


def test_an_unknown_backend_in_the_environment_fails_at_import() -> None:
    """When the HTTP layer is imported: on first use of a name that needs it
    (``import authpulse`` alone imports no HTTP library)."""
    out = subprocess.run(
        [sys.executable, "-c", "import authpulse; authpulse.Session"],
        env={**os.environ, BACKEND_ENV: "urllib3"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode != 0
    assert "AUTHPULSE_HTTP_BACKEND must be one of httpx, httpx2, not 'urllib3'" in out.stderr

"""authpulse on httpx2, the maintained fork of httpx (``pip install 'authpulse[httpx2]'``).

Runs against the embedded fake IdP and API (no network):

    python examples/httpx2_client.py

``authpulse.httpx2.Client`` / ``AsyncClient`` are real ``httpx2`` clients,
whatever the default backend; ``session.auth()`` plugs into any httpx2
client (and any httpx one). To make httpx2 the default everywhere
(``authpulse.Client`` included), set ``AUTHPULSE_HTTP_BACKEND=httpx2``.
Against a real IdP, drop the ``transport=`` arguments and use real URLs.
"""

from __future__ import annotations

import asyncio

import httpx2

import authpulse
import authpulse.httpx2
from authpulse.testing import FakeAPI, FakeIdP


async def plain_async_client(session: authpulse.Session, api: FakeAPI) -> int:
    """Any httpx2 client: ``auth=session.auth()``."""
    async with httpx2.AsyncClient(
        auth=session.auth(), transport=httpx2.MockTransport(api.ahandle)
    ) as client:
        response = await client.get(f"{api.base_url}/v1/items/async")
        print("plain httpx2.AsyncClient", response.status_code, response.json())
        return response.status_code


def main() -> int:
    idp = FakeIdP(access_ttl=3600)
    api = FakeAPI(idp, base_url="https://api.example.test")

    session = authpulse.Session(
        authpulse.ClientCredentials(idp.token_url, "client", "secret", scope="items:read"),
        origins=[api.base_url],
        # the session's own token requests go out on this transport's library: httpx2
        transport=httpx2.MockTransport(idp.handle),
    )
    statuses: list[int] = []
    with authpulse.httpx2.Client(
        session, base_url=api.base_url, transport=httpx2.MockTransport(api.handle)
    ) as client:
        assert isinstance(client, httpx2.Client)
        for path in ("/v1/items", "/v1/items/1"):
            response = client.get(path)
            statuses.append(response.status_code)
            print(path, response.status_code, response.json())

        idp.expire_all()  # the API now refuses the token: one refresh, one replay
        response = client.get("/v1/items/2")
        statuses.append(response.status_code)
        print("/v1/items/2 after a 401", response.status_code, f"({api.unauthorized} refused)")

        statuses.append(asyncio.run(plain_async_client(session, api)))
        report = client.health()
        print(f"health {report.score} ({report.band.value}); token calls: {idp.token_calls}")
    session.close()
    ok = statuses == [200] * 4 and idp.token_calls == 2 and api.unauthorized == 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A service trading its own token for one meant for a downstream API, with
the token exchange grant (RFC 8693).

Runs against the embedded fake IdP (no network); time is a ``FakeClock``:

    python examples/token_exchange.py

The front service signs in with client credentials; a ``TokenExchange``
session presents that token (the *subject token*) to the token endpoint and
gets a token for the orders API. When the exchanged token is due, the
session exchanges again with the subject's token of that moment.

Against a real IdP, drop ``clock=`` and the ``transport=`` arguments and use
its ``token_endpoint``.
"""

from __future__ import annotations

import asyncio

import authpulse
from authpulse.testing import FakeAPI, FakeClock, FakeIdP


def main() -> int:
    clock = FakeClock()
    idp = FakeIdP(
        clock=clock,
        issuer="https://idp.example.test",
        clients={"front": "front-secret", "gateway": "gateway-secret"},
        access_ttl=300,
    )
    api = FakeAPI(idp, base_url="https://orders.example.test")

    def session(source: authpulse.TokenSource) -> authpulse.Session:
        return authpulse.Session(
            source, clock=clock, transport=idp.transport, async_transport=idp.async_transport
        )

    front = session(authpulse.ClientCredentials(idp.token_url, "front", "front-secret"))
    exchange = authpulse.TokenExchange(
        idp.token_url,
        "gateway",
        "gateway-secret",
        subject_token=front,  # its current fresh access token, taken at each exchange
        audience="https://orders.example.test",
        scope="orders:read",
    )
    print(exchange)
    orders = session(exchange)

    with authpulse.Client(orders, transport=api.transport) as client:
        print("/v1/orders", client.get("https://orders.example.test/v1/orders").status_code)
        if orders.token_set is not None:
            print("issued_token_type:", orders.token_set.issued_token_type)
        clock.advance(301)  # both tokens expired: the next request exchanges again
        print("/v1/orders later", client.get("https://orders.example.test/v1/orders").status_code)

    async def from_async_code() -> int:
        async with authpulse.AsyncClient(orders, transport=api.async_transport) as client:
            clock.advance(301)
            response = await client.get("https://orders.example.test/v1/orders")
            return response.status_code

    print("/v1/orders from async code", asyncio.run(from_async_code()))
    print("exchanges:", idp.exchanges)

    bad = session(
        authpulse.TokenExchange(
            idp.token_url, "gateway", "gateway-secret", subject_token=lambda: ""
        )
    )
    try:
        bad.token()
    except authpulse.SubjectTokenError as exc:
        print("refused:", exc)
    return 0 if idp.exchanges == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())

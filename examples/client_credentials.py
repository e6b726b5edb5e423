"""A service calling an API with the client credentials grant.

Runs against the embedded fake IdP and API (no network):

    python examples/client_credentials.py

Against a real IdP, drop the ``transport=`` arguments and use real URLs.
"""

from __future__ import annotations

import authpulse
from authpulse.testing import FakeAPI, FakeIdP


def main() -> int:
    idp = FakeIdP(access_ttl=3600)
    api = FakeAPI(idp, base_url="https://api.example.test")

    session = authpulse.Session(
        authpulse.ClientCredentials(idp.token_url, "client", "secret", scope="items:read"),
        origins=[api.base_url],
        transport=idp.transport,
    )
    with authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client:
        for path in ("/v1/items", "/v1/items/1", "/v1/items/2"):
            response = client.get(path)
            print(path, response.status_code, response.json())
        report = client.health()
        print(f"health {report.score} ({report.band.value}); token calls: {idp.hits}")
    session.close()
    return 0 if idp.hits == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())

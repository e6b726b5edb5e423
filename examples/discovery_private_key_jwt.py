"""A service that finds its IdP's endpoints by discovery and authenticates with
``private_key_jwt`` (RFC 7523) instead of a shared secret.

Runs against the embedded fake IdP (no network), which serves its metadata at
``/.well-known/openid-configuration`` and checks each client assertion
against the public key registered for the client:

    python examples/discovery_private_key_jwt.py

Against a real IdP, drop the ``transport=`` arguments and the fakes, load
the private key you registered (PEM or JWK), and pass your issuer URL.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import authpulse
from authpulse.testing import FakeAPI, FakeClock, FakeIdP

ISSUER = "https://idp.example.test"


def main() -> int:
    # the client's key pair: the IdP knows the public half, the service keeps the private one
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    clock = FakeClock()
    idp = FakeIdP(clock=clock, issuer=ISSUER, client_keys={"reports": public_pem.decode()})
    api = FakeAPI(idp, base_url="https://api.example.test")

    metadata = authpulse.discover(ISSUER, transport=idp.transport, clock=clock)
    print("token endpoint:", metadata.token_endpoint)
    print("auth methods:", ", ".join(metadata.token_endpoint_auth_methods_supported))

    auth = authpulse.PrivateKeyJWT(private_pem, kid="reports-2026")
    print("client auth:", auth)  # the key is never shown
    session = authpulse.Session(
        authpulse.ClientCredentials(issuer=ISSUER, client_id="reports", client_auth=auth),
        clock=clock,
        transport=idp.transport,  # the same metadata is reused from the cache
    )
    with authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client:
        print("/v1/items", client.get("/v1/items").status_code)
        session.force_refresh()  # a new assertion, with a new jti
        print("/v1/items after a refresh", client.get("/v1/items").status_code)
    session.close()
    print(f"metadata fetched {idp.discovery_calls} time(s), {idp.token_calls} token requests")
    return 0 if idp.discovery_calls == 1 and idp.token_calls == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())

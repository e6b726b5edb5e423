"""A CLI's sign-in that survives restarts, in the OS keychain or an encrypted file.

Runs against the embedded fake IdP and API (no network):

    python examples/keyring_store.py

``KeyringStore`` uses the OS keychain where keyring has a usable backend;
on a headless machine (CI, a container, SSH without D-Bus) it falls back to
an encrypted file — here in a temporary directory — and says which one it
used. The first run rotates the refresh token; a second ``Session`` over a
new store object, as after a restart, picks the stored set up without a
call to the token endpoint. Against a real IdP, drop the ``transport=``
arguments and use real URLs.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import authpulse
from authpulse.testing import FakeAPI, FakeIdP

NAMESPACE = "example"
STORE_KEY = "user-alice"


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="log: %(message)s")
    logging.getLogger("authpulse.store").setLevel(logging.INFO)  # the line saying which backend
    idp = FakeIdP(access_ttl=3600)  # rotating, single-use refresh tokens
    api = FakeAPI(idp, base_url="https://api.example.test")
    login_rt = idp.issue_refresh_token()  # what your login flow would hand you
    statuses: list[int] = []
    calls: list[int] = []
    clean = True

    with tempfile.TemporaryDirectory() as tmp:
        # where the fallback file goes; a real app leaves out path= (the per-user
        # data directory: ~/.local/share/authpulse/<namespace>.store on Linux)
        fallback = Path(tmp) / f"{NAMESPACE}.store"
        # two runs of the app: each opens its own store and Session, as a new process
        for run in ("first run", "after restart"):
            store = authpulse.KeyringStore(namespace=NAMESPACE, path=fallback)
            if run == "first run":
                print(f"store backend: {store.backend}")
            grant = authpulse.RefreshTokenGrant(
                idp.token_url, "client", "secret", refresh_token=login_rt
            )  # after the restart the login token is long spent: the stored one is used
            session = authpulse.Session(
                grant, store=store, store_key=STORE_KEY, transport=idp.transport
            )
            before = idp.token_calls
            with authpulse.Client(
                session, base_url=api.base_url, transport=api.transport
            ) as client:
                statuses.append(client.get("/v1/me").status_code)
            if run == "first run":
                session.force_refresh()  # rotate: a new refresh token, stored at once
            calls.append(idp.token_calls - before)
            print(f"{run}: GET /v1/me -> {statuses[-1]}; token calls: {calls[-1]}")
            stored = store.get_token(STORE_KEY)
            if stored is not None and store.backend.startswith("encrypted-file:"):
                data = fallback.read_bytes()
                tokens = (stored.token.access_token, stored.token.refresh_token)
                leaked = any(t.get_secret_value().encode() in data for t in tokens if t)
                clean = clean and not leaked
                print(f"the file holds no token in the clear: {not leaked}")
            elif run == "after restart":  # a real keychain: leave nothing of the example
                store.delete(STORE_KEY)
            session.close()
            store.close()

    return 0 if statuses == [200, 200] and calls == [2, 0] and clean else 1


if __name__ == "__main__":
    raise SystemExit(main())

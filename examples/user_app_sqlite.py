"""A user app whose rotating refresh token survives restarts, in a SQLite file.

Runs against the embedded fake IdP and API (no network):

    python examples/user_app_sqlite.py

The first run signs in (a refresh token from the fake IdP stands in for the
login), gets an access token and rotates the refresh token; every rotated
set is written to ``tokens.db`` before anyone can use it. A second
``Session`` over the same file — as after a restart — picks the stored set
up without a call to the token endpoint. Against a real IdP, drop the
``transport=`` arguments and use real URLs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import authpulse
from authpulse.testing import FakeAPI, FakeIdP

STORE_KEY = "user-alice"


def make_session(
    idp: FakeIdP, store: authpulse.SessionStore, refresh_token: str
) -> authpulse.Session:
    return authpulse.Session(
        authpulse.RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=refresh_token),
        store=store,
        store_key=STORE_KEY,
        transport=idp.transport,
    )


def main() -> int:
    idp = FakeIdP(access_ttl=3600)  # rotating, single-use refresh tokens
    api = FakeAPI(idp, base_url="https://api.example.test")
    login_rt = idp.issue_refresh_token()  # what your login flow would hand you

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'tokens.db'}"

        # -- first run: get tokens, then rotate them --------------------------------
        store = authpulse.open_store(url)
        session = make_session(idp, store, login_rt)
        with authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client:
            first = client.get("/v1/me").status_code
        rotated = session.force_refresh()  # a new access token and a new refresh token
        stored = store.get_token(STORE_KEY)
        version = stored.version if stored is not None else 0
        print(f"first run: GET /v1/me -> {first}; token calls: {idp.token_calls}")
        print(f"rotated token set stored in tokens.db (write #{version})")
        session.close()
        store.close()
        calls_before_restart = idp.token_calls

        # -- second run: a new Session (and store handle) over the same file ---------
        store = authpulse.open_store(url)
        restarted = make_session(idp, store, login_rt)  # the login token is long spent
        with authpulse.Client(restarted, base_url=api.base_url, transport=api.transport) as client:
            second = client.get("/v1/me").status_code
        current = restarted.token_set
        same = (
            current is not None
            and rotated.refresh_token is not None
            and current.refresh_token is not None
            and current.refresh_token.get_secret_value() == rotated.refresh_token.get_secret_value()
        )
        new_calls = idp.token_calls - calls_before_restart
        print(f"after restart: GET /v1/me -> {second}; new token calls: {new_calls}")
        print(f"adopted the stored (rotated) refresh token: {same}")
        report = restarted.health()
        print(f"health {report.score} ({report.band.value})")
        restarted.close()
        store.close()

    ok = first == 200 and second == 200 and calls_before_restart == 2 and version == 2
    ok = ok and new_calls == 0 and same
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

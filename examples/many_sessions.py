"""A backend holding one refresh-token session per user, with a SessionManager.

Runs against the embedded fake IdP and API (no network):

    python examples/many_sessions.py
"""

from __future__ import annotations

import authpulse
from authpulse.testing import FakeAPI, FakeIdP


def main() -> int:
    idp = FakeIdP(access_ttl=600)
    api = FakeAPI(idp, base_url="https://api.example.test")
    saved: dict[str, str] = {}  # where your app would persist rotated refresh tokens

    def persist(user: str) -> authpulse.TokenUpdateHook:
        def hook(ts: authpulse.TokenSet) -> None:
            if ts.refresh_token is not None:
                saved[user] = ts.refresh_token.get_secret_value()

        return hook

    manager = authpulse.SessionManager(transport=idp.transport)
    with manager:  # starts the one background worker; shuts everything down on exit
        for user in ("alice", "bob", "carol"):
            grant = authpulse.RefreshTokenGrant(
                idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
            )
            ms = manager.create_session(
                user,
                grant,
                kind="integration",
                metadata={"custom": {"plan": "pro"}},
                on_token_update=persist(user),
            )
            with ms.client(base_url=api.base_url, transport=api.transport) as client:
                print(user, client.get("/v1/me").status_code)

        alice = manager.list(owner="alice")[0]
        manager.update(alice.id, phase="sync", step="contacts")
        manager.close(alice.id)
        stats = manager.stats()
        print(f"sessions: {stats.total}, active: {stats.active}, by status: {stats.by_status}")
        for rec in manager.list(status="ACTIVE"):
            report = manager.health(rec.id)
            print(rec.owner, report.score, report.band.value)
    print("persisted refresh tokens for:", sorted(saved))
    return 0 if sorted(saved) == ["alice", "bob", "carol"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

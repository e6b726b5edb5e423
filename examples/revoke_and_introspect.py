"""Disconnecting a user's integration: introspect, then revoke the grant.

Runs against the embedded fake IdP (no network, time on a ``FakeClock``),
which has a revocation (RFC 7009) and an introspection (RFC 7662) endpoint
and refresh tokens that expire after 30 days:

    python examples/revoke_and_introspect.py

Against a real IdP, drop ``clock=`` and the ``transport=`` arguments and use
its ``revocation_endpoint`` and ``introspection_endpoint`` (from
``/.well-known/openid-configuration``).
"""

from __future__ import annotations

import authpulse
from authpulse.testing import FakeClock, FakeIdP

DAY = 86400


def user_grant(idp: FakeIdP) -> authpulse.RefreshTokenGrant:
    """A user's grant, as a sign-in would start it, revocable at the IdP."""
    return authpulse.RefreshTokenGrant(
        idp.token_url,
        "integration",
        "app-secret",
        refresh_token=idp.issue_refresh_token("integration"),
        revocation_url=idp.revocation_url,
    )


def main() -> None:
    clock = FakeClock()
    idp = FakeIdP(
        clock=clock,
        access_ttl=3600,
        refresh_ttl=30 * DAY,
        clients={"integration": "app-secret", "resource-server": "rs-secret"},
    )
    probe = authpulse.IntrospectionProbe(
        idp.introspection_url, "resource-server", "rs-secret", transport=idp.transport
    )
    manager = authpulse.SessionManager(
        clock=clock,
        transport=idp.transport,
        async_transport=idp.async_transport,
        probe=probe,
    )
    ms = manager.create_session("alice", user_grant(idp))
    token = ms.session.force_refresh()
    left = (token.refresh_expires_at or 0) - clock.now()
    print(f"signed in; the refresh token expires in {left / DAY:.0f} days")

    clock.advance(manager.settings.heartbeat_interval)
    manager.tick()  # the heartbeat introspects the access token
    print(f"introspection: active={probe.last[ms.id].active}, health {manager.health(ms.id).score}")

    # an admin revokes the grant elsewhere: the next heartbeat says so
    idp.revoke(token.refresh_token.get_secret_value())  # type: ignore[union-attr]
    clock.advance(manager.settings.heartbeat_interval)
    manager.tick()
    worst = manager.health(ms.id).worst
    print(f"introspection: active={probe.last[ms.id].active}, health {manager.health(ms.id).score}")
    if worst is not None:
        print(f"  -{worst.penalty} {worst.name}: {worst.reason}")

    # a second user disconnects: closing the session revokes its grant
    bob = manager.create_session("bob", user_grant(idp))
    bob.session.token()
    manager.close(bob.id)
    kinds = [e.kind.value for e in manager.timeline(bob.id)]
    print(f"bob disconnected: {'revoked' in kinds}; revocation requests: {idp.revocations}")

    # a session on its own revokes with revoke() / await arevoke()
    solo = authpulse.Session(
        user_grant(idp),
        clock=clock,
        transport=idp.transport,
    )
    solo.token()
    print(f"revoked {solo.revoke()} tokens")
    try:
        solo.token()
    except authpulse.LoginRequiredError as exc:
        print(f"next token(): {exc}")
    solo.close()
    manager.shutdown()


if __name__ == "__main__":
    main()

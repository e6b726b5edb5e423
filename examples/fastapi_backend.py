"""A FastAPI backend that calls an API on each signed-in user's behalf.

Runs in-process against the embedded fake IdP and API (no network, no
server: FastAPI's ``TestClient`` drives the app):

    pip install fastapi        # or: pip install -e '.[dev]'
    python examples/fastapi_backend.py

One ``SessionManager`` holds a refresh-token session per user; its
background worker refreshes each one before it expires. The app's lifespan
starts the worker and shuts every session down on exit. Endpoints:

- ``POST /users/{user}/connect`` — stands in for the end of an OAuth login:
  a refresh token for ``user`` becomes a managed session.
- ``GET /items`` (header ``X-User``) — calls the API as that user, with an
  ``authpulse`` async client: a refresh never blocks the event loop, and a
  ``401`` is answered by one refresh and one replay.
- ``GET /healthz`` — the worst session health, for a load balancer.

Against a real IdP, drop the ``transport=`` arguments and use real URLs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

import authpulse
from authpulse.testing import FakeAPI, FakeIdP


def create_app(idp: FakeIdP, api: FakeAPI) -> FastAPI:
    manager = authpulse.SessionManager(transport=idp.transport, async_transport=idp.async_transport)
    session_of: dict[str, str] = {}  # user -> session id (your user table in real life)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            manager.shutdown()

    app = FastAPI(lifespan=lifespan)

    def user_session(user: str | None) -> authpulse.ManagedSession:
        if user is None or user not in session_of:
            raise HTTPException(status_code=401, detail="not connected")
        # owner-checked: a session id alone does not give access to someone else's session
        return manager.get(session_of[user], owner=user)

    @app.post("/users/{user}/connect")
    def connect(user: str) -> dict[str, Any]:
        refresh_token = idp.issue_refresh_token()  # what the OAuth callback would receive
        grant = authpulse.RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=refresh_token
        )
        ms = manager.create_session(user, grant, kind="user")
        session_of[user] = ms.id
        return {"session": ms.id}

    @app.get("/items")
    async def items(x_user: str | None = Header(default=None)) -> dict[str, Any]:
        ms = user_session(x_user)
        async with ms.async_client(base_url=api.base_url, transport=api.async_transport) as client:
            response = await client.get("/v1/items")
        if response.status_code != 200:
            raise HTTPException(status_code=502, detail=f"upstream {response.status_code}")
        report = ms.health()
        return {"upstream": response.json(), "health": report.score, "band": report.band.value}

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        reports = [manager.health(rec.id) for rec in manager.list(status="ACTIVE")]
        worst = min(reports, key=lambda r: r.score, default=None)
        if worst is not None and worst.band in (authpulse.Band.POOR, authpulse.Band.CRITICAL):
            raise HTTPException(status_code=503, detail=f"worst session {worst.band.value}")
        return {
            "status": "ok",
            "sessions": len(reports),
            "worst": None if worst is None else worst.score,
        }

    return app


def main() -> int:
    idp = FakeIdP(access_ttl=3600)
    api = FakeAPI(idp, base_url="https://api.example.test")
    app = create_app(idp, api)
    checks: list[bool] = []
    with TestClient(app) as http:  # runs the lifespan: the manager's worker starts and stops
        for user in ("alice", "bob"):
            r = http.post(f"/users/{user}/connect")
            print(f"POST /users/{user}/connect", r.status_code)
            checks.append(r.status_code == 200)

        for user in ("alice", "bob"):
            r = http.get("/items", headers={"X-User": user})
            print(f"GET /items as {user}", r.status_code, r.json())
            checks.append(r.status_code == 200 and r.json()["upstream"]["ok"] is True)

        r = http.get("/items", headers={"X-User": "mallory"})
        print("GET /items as mallory", r.status_code, r.json())
        checks.append(r.status_code == 401)

        idp.expire_all()  # the API now refuses every token: one refresh, one replay each
        r = http.get("/items", headers={"X-User": "bob"})
        print("GET /items as bob after the IdP invalidated the tokens", r.status_code)
        checks.append(r.status_code == 200 and api.unauthorized == 1)

        r = http.get("/healthz")
        print("GET /healthz", r.status_code, r.json())
        checks.append(r.status_code == 200 and r.json()["sessions"] == 2)
    print(f"token calls: {idp.token_calls}; API calls: {api.calls} ({api.unauthorized} refused)")
    return 0 if all(checks) and idp.token_calls == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())

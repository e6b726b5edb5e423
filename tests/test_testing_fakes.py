"""The test seams themselves: FakeClock, FakeIdP, FakeAPI, Fault."""

from __future__ import annotations

import base64
import json
from email.utils import parsedate_to_datetime

import jwt
import pytest

from authpulse import Clock
from authpulse._runtime.backend import httpx
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault

# ---------------------------------------------------------------------- FakeClock


class TestFakeClock:
    def test_starts_where_told(self) -> None:
        c = FakeClock(start=1000)
        assert c.now() == 1000
        assert c.monotonic() == 0
        assert isinstance(c, Clock)

    def test_advance_moves_both_clocks(self) -> None:
        c = FakeClock()
        c.advance(12.5)
        assert c.now() == 1_800_000_012.5
        assert c.monotonic() == 12.5

    def test_cannot_go_backwards(self) -> None:
        c = FakeClock()
        with pytest.raises(ValueError, match="backwards"):
            c.advance(-1)
        assert c.monotonic() == 0

    def test_skew_wall_moves_only_the_wall_clock(self) -> None:
        c = FakeClock()
        c.skew_wall(-100)
        assert c.now() == 1_800_000_000 - 100
        assert c.monotonic() == 0
        c.skew_wall(250)
        assert c.now() == 1_800_000_150

    def test_sleep_advances_and_records(self) -> None:
        c = FakeClock()
        c.sleep(1.5)
        c.sleep(0)
        c.sleep(-3)  # recorded, but time does not go back
        assert c.sleeps == [1.5, 0, -3]
        assert c.monotonic() == 1.5

    @pytest.mark.anyio
    async def test_asleep_advances_and_records(self) -> None:
        c = FakeClock()
        await c.asleep(2)
        assert c.sleeps == [2]
        assert c.now() == 1_800_000_002

    def test_repr(self) -> None:
        assert repr(FakeClock(start=5)) == "FakeClock(now=5.000, monotonic=0.000)"


# ------------------------------------------------------------------------ Fault


class TestFault:
    def request(self) -> httpx.Request:
        return httpx.Request("POST", "https://idp.test/token")

    def test_default_is_503(self) -> None:
        r = Fault().response(self.request())
        assert r.status_code == 503
        assert r.content == b""

    @pytest.mark.parametrize(
        ("body", "content"),
        [({"a": 1}, b'{"a": 1}'), ("text", b"text"), (b"\x00raw", b"\x00raw"), (None, b"")],
    )
    def test_bodies(self, body: object, content: bytes) -> None:
        r = Fault(status=500, body=body, headers={"x-a": "b"}).response(self.request())  # type: ignore[arg-type]
        assert r.content == content
        assert r.headers["x-a"] == "b"
        assert r.headers["content-type"] == "application/json"

    def test_refused_and_timeout_raise_transport_errors(self) -> None:
        with pytest.raises(httpx.ConnectError):
            Fault.refused().response(self.request())
        with pytest.raises(httpx.ReadTimeout):
            Fault.timeout().response(self.request())

    def test_oauth(self) -> None:
        r = Fault.oauth("invalid_grant", description="gone").response(self.request())
        assert r.status_code == 400
        assert r.json() == {"error": "invalid_grant", "error_description": "gone"}
        assert Fault.oauth("invalid_client", status=401).status == 401


# ------------------------------------------------------------------------ FakeIdP


def post(idp: FakeIdP, form: dict[str, str], *, basic: bool = True) -> httpx.Response:
    headers = {}
    if basic:
        headers["authorization"] = "Basic " + base64.b64encode(b"client:secret").decode()
    with httpx.Client(transport=idp.transport) as c:
        return c.post(idp.token_url, data=form, headers=headers)


class TestFakeIdP:
    def test_client_credentials(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, access_ttl=120)
        r = post(idp, {"grant_type": "client_credentials", "scope": "read"})
        assert r.status_code == 200
        body = r.json()
        assert body["expires_in"] == 120
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "read"
        assert "refresh_token" not in body
        assert r.headers["cache-control"] == "no-store"
        assert idp.validate(body["access_token"])
        clock.advance(120)
        assert not idp.validate(body["access_token"])
        assert idp.token_calls == 1
        assert idp.hits == 1
        assert idp.grants_issued == 1

    def test_client_secret_post(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        form = {
            "grant_type": "client_credentials",
            "client_id": "client",
            "client_secret": "secret",
        }
        assert post(idp, form, basic=False).status_code == 200
        assert idp.requests == [{"grant_type": "client_credentials", "client_id": "client"}]

    def test_bad_client(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        r = post(idp, {"grant_type": "client_credentials", "client_id": "x"}, basic=False)
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_client"}

    def test_unsupported_grant_and_unknown_path(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        assert post(idp, {"grant_type": "implicit"}).json() == {"error": "unsupported_grant_type"}
        assert post(
            idp, {"grant_type": "password", "username": "alice", "password": "x"}
        ).json() == {"error": "invalid_grant"}
        with httpx.Client(transport=idp.transport) as c:
            assert c.get("https://idp.test/other").status_code == 404

    def test_rotation_and_reuse_detection(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        rt0 = idp.issue_refresh_token()
        r1 = post(idp, {"grant_type": "refresh_token", "refresh_token": rt0}).json()
        rt1 = r1["refresh_token"]
        assert rt1 != rt0
        assert idp.validate(r1["access_token"])
        # presenting rt0 again: reuse → invalid_grant, and the whole grant dies
        again = post(idp, {"grant_type": "refresh_token", "refresh_token": rt0})
        assert again.json() == {"error": "invalid_grant"}
        assert idp.reuse_detected == 1
        assert not idp.validate(r1["access_token"])
        assert post(idp, {"grant_type": "refresh_token", "refresh_token": rt1}).status_code == 400
        assert "refresh_token" not in idp.requests[0]

    def test_without_rotation_the_refresh_token_is_reusable(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, rotate=False)
        rt = idp.issue_refresh_token()
        for _ in range(3):
            body = post(idp, {"grant_type": "refresh_token", "refresh_token": rt}).json()
            assert "refresh_token" not in body
        assert idp.reuse_detected == 0

    def test_rotation_without_single_use(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, single_use=False)
        rt = idp.issue_refresh_token()
        for _ in range(2):
            assert (
                post(idp, {"grant_type": "refresh_token", "refresh_token": rt}).status_code == 200
            )
        assert idp.reuse_detected == 0

    def test_revoke_and_unknown_tokens(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        rt = idp.issue_refresh_token()
        idp.revoke(rt)
        assert post(idp, {"grant_type": "refresh_token", "refresh_token": rt}).status_code == 400
        assert (
            post(idp, {"grant_type": "refresh_token", "refresh_token": "nope"}).status_code == 400
        )
        rt2 = idp.issue_refresh_token()
        at = post(idp, {"grant_type": "refresh_token", "refresh_token": rt2}).json()["access_token"]
        idp.revoke(at)  # revoking by access token kills its grant
        assert not idp.validate(at)
        assert not idp.validate("never-issued")

    def test_refresh_token_of_another_client(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, clients={"client": "secret", "other": "pw"})
        rt = idp.issue_refresh_token(client_id="other")
        assert post(idp, {"grant_type": "refresh_token", "refresh_token": rt}).status_code == 400

    def test_expire_all(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        at = post(idp, {"grant_type": "client_credentials"}).json()["access_token"]
        idp.expire_all()
        assert not idp.validate(at)
        at2 = post(idp, {"grant_type": "client_credentials"}).json()["access_token"]
        assert idp.validate(at2)

    def test_jwt_access_tokens(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, jwt_access_tokens=True, access_ttl=300, clock_offset=50)
        at = post(idp, {"grant_type": "client_credentials"}).json()["access_token"]
        claims = jwt.decode(
            at,
            idp.jwt_key,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims["iss"] == "https://idp.test"
        assert claims["sub"] == "client"
        assert claims["iat"] == int(clock.now() + 50)
        assert claims["exp"] == claims["iat"] + 300

    def test_date_header_and_offset(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, clock_offset=-600)
        r = post(idp, {"grant_type": "client_credentials"})
        assert parsedate_to_datetime(r.headers["date"]).timestamp() == int(clock.now() - 600)
        idp2 = FakeIdP(clock=clock, send_date=False, send_expires_in=False)
        r2 = post(idp2, {"grant_type": "client_credentials"})
        assert "date" not in r2.headers
        assert "expires_in" not in r2.json()

    def test_faults_count_as_hits_not_token_calls(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        idp.fail_next(2)
        assert post(idp, {"grant_type": "client_credentials"}).status_code == 503
        assert post(idp, {"grant_type": "client_credentials"}).status_code == 503
        assert post(idp, {"grant_type": "client_credentials"}).status_code == 200
        assert (idp.hits, idp.token_calls) == (3, 1)

    def test_outage(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        idp.set_outage(Fault(status=500))
        assert all(
            post(idp, {"grant_type": "client_credentials"}).status_code == 500 for _ in range(3)
        )
        idp.fail_next(1, Fault(status=429))  # one-shot faults come before the outage
        assert post(idp, {"grant_type": "client_credentials"}).status_code == 429
        idp.set_outage(None)
        assert post(idp, {"grant_type": "client_credentials"}).status_code == 200
        assert idp.hits == 5
        assert idp.token_calls == 1

    @pytest.mark.anyio
    async def test_async_transport(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock)
        idp.fail_next(1, Fault.refused())
        async with httpx.AsyncClient(transport=idp.async_transport) as c:
            with pytest.raises(httpx.ConnectError):
                await c.post(idp.token_url, data={"grant_type": "client_credentials"})
            r = await c.post(
                idp.token_url,
                data={"grant_type": "client_credentials"},
                headers={"authorization": "Basic " + base64.b64encode(b"client:secret").decode()},
            )
        assert r.status_code == 200
        assert idp.hits == 2


# ------------------------------------------------------------------------ FakeAPI


class TestFakeAPI:
    def test_valid_invalid_and_missing_tokens(self, idp: FakeIdP, api: FakeAPI) -> None:
        at = post(idp, {"grant_type": "client_credentials"}).json()["access_token"]
        with httpx.Client(transport=api.transport, base_url=api.base_url) as c:
            ok = c.get("/v1/items", headers={"authorization": f"Bearer {at}"})
            bad = c.get("/v1/items", headers={"authorization": "Bearer forged"})
            basic = c.get("/v1/items", headers={"authorization": f"Basic {at}"})
            none = c.get("/v1/items")
        assert ok.json() == {"ok": True, "path": "/v1/items"}
        assert [bad.status_code, basic.status_code, none.status_code] == [401, 401, 401]
        assert bad.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert api.calls == 4
        assert api.unauthorized == 3
        assert api.authorization_seen == [True, True, True, False]

    def test_public_and_redirect(self, api: FakeAPI) -> None:
        with httpx.Client(transport=api.transport, base_url=api.base_url) as c:
            assert c.get("/public").json() == {"ok": True, "public": True}
            r = c.get("/redirect", params={"to": "https://x.test/y"})
        assert r.status_code == 302
        assert r.headers["location"] == "https://x.test/y"
        assert api.unauthorized == 0

    def test_handler_replaces_the_success_answer(self, idp: FakeIdP) -> None:
        api = FakeAPI(idp, handler=lambda r: httpx.Response(204))
        at = post(idp, {"grant_type": "client_credentials"}).json()["access_token"]
        with httpx.Client(transport=api.transport) as c:
            assert (
                c.get("https://api.test/", headers={"authorization": f"Bearer {at}"}).status_code
                == 204
            )
            assert c.get("https://api.test/").status_code == 401  # still checks the token

    def test_api_faults(self, api: FakeAPI) -> None:
        api.fail_next(1, Fault(status=502, body=json.dumps({"e": 1})))
        with httpx.Client(transport=api.transport) as c:
            assert c.get("https://api.test/public").status_code == 502
            assert c.get("https://api.test/public").status_code == 200
        assert api.hits == 2
        assert api.calls == 1  # faults never reach the handler

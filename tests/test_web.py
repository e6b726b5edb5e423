"""The web dashboard's HTTP surface: JSON endpoints, /metrics, the page's
assets, admin token rules, strict input handling and no secrets anywhere.

Each test runs a real ``DashboardServer`` on a free loopback port, backed by
a ``SessionManager`` on a ``FakeClock`` whose sessions get their tokens
from a ``FakeIdP`` (and make API calls to a ``FakeAPI``)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import authpulse
from authpulse import (
    AuthpulseError,
    BreakerPolicy,
    ClientCredentials,
    ConfigurationError,
    Dashboard,
    DashboardServer,
    MemoryStore,
    RefreshPolicy,
    RefreshTokenGrant,
    SessionManager,
    SessionRecord,
    SessionStatus,
    StoreUnavailableError,
    TokenSet,
    open_store,
)
from authpulse._runtime.backend import httpx
from authpulse._surfaces.web import BAND_COLOURS, serve
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault

CLIENT_ID = "dash-client"
CLIENT_SECRET = "cs-7Hq2-very-secret-client-value"
ADMIN = "admin-token-0123456789-abcdef"
SECURITY = {"content-security-policy", "x-content-type-options"}


@pytest.fixture
def idp(clock: FakeClock) -> FakeIdP:
    return FakeIdP(clock=clock, access_ttl=600, clients={CLIENT_ID: CLIENT_SECRET})


@pytest.fixture
def manager(clock: FakeClock, idp: FakeIdP) -> Iterator[SessionManager]:
    m = SessionManager(
        clock=clock, transport=idp.transport, async_transport=idp.async_transport, seed=3
    )
    yield m
    m.shutdown()


def cc(idp: FakeIdP) -> ClientCredentials:
    return ClientCredentials(idp.token_url, CLIENT_ID, CLIENT_SECRET)


@contextlib.contextmanager
def running(
    manager: SessionManager | Dashboard, admin_token: str | None = ADMIN
) -> Iterator[tuple[DashboardServer, httpx.Client]]:
    with (
        DashboardServer(manager, admin_token=admin_token, sample_interval=None) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield server, client


@pytest.fixture
def web(manager: SessionManager) -> Iterator[tuple[DashboardServer, httpx.Client]]:
    with running(manager) as pair:
        yield pair


@pytest.fixture
def http(web: tuple[DashboardServer, httpx.Client]) -> httpx.Client:
    return web[1]


def admin(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rows_by_id(http: httpx.Client, **params: Any) -> dict[str, dict[str, Any]]:
    r = http.get("/api/sessions", params=params)
    assert r.status_code == 200, r.text
    return {row["id"]: row for row in r.json()["sessions"]}


def fail_refresh(ms: Any, idp: FakeIdP) -> None:
    """An IdP outage while a refresh is attempted: the refresh fails."""
    idp.set_outage(Fault(status=503))
    try:
        with pytest.raises(AuthpulseError):
            ms.session.force_refresh()
    finally:
        idp.set_outage(None)


# ----------------------------------------------------------------------------- listing


def test_list_shows_each_session_with_score_band_state_status_and_expiry(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, http: httpx.Client
) -> None:
    healthy = manager.create_session("alice", cc(idp), session_id="healthy", kind="integration")
    healthy.session.token()
    manager.create_session("bob", cc(idp), session_id="no-token")
    paused = manager.create_session("carol", cc(idp), session_id="paused")
    paused.session.token()
    manager.pause("paused", "maintenance")
    clock.advance(100)

    rows = rows_by_id(http)
    assert list(rows) == ["healthy", "no-token", "paused"]  # store order: oldest first

    h = rows["healthy"]
    assert h["score"] == manager.health("healthy").score == 100
    assert (h["band"], h["status"], h["auth_state"], h["live"]) == (
        "excellent",
        "ACTIVE",
        "fresh",
        True,
    )
    assert (h["owner"], h["kind"]) == ("alice", "integration")
    assert h["expires_in"] == pytest.approx(500.0)  # 600 s token, 100 s later
    assert h["refreshes"] == 1
    assert h["last_error"] is None

    n = rows["no-token"]
    assert (n["score"], n["band"], n["expires_in"]) == (50, "fair", None)
    assert n["worst"] == {"name": "token", "penalty": 50, "reason": "no token yet"}

    assert rows["paused"]["status"] == "PAUSED"

    clock.advance(450)  # the countdown follows the manager's clock
    assert rows_by_id(http)["healthy"]["expires_in"] == pytest.approx(50.0)


def test_list_shows_the_last_error_and_a_lower_score_after_a_failed_refresh(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    ms = manager.create_session("alice", cc(idp), session_id="s1")
    ms.session.token()
    fail_refresh(ms, idp)

    row = rows_by_id(http)["s1"]
    report = manager.health("s1")
    assert row["score"] == report.score < 100
    assert row["band"] == report.band.value
    assert row["auth_state"] == "degraded"
    assert row["refresh_failures"] == 1
    assert row["consecutive_failures"] == 1
    assert row["last_error"]["error_class"] == "server"
    assert "TokenEndpointError" in row["last_error"]["message"]


def test_list_filters_by_status_and_pages(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    for i in range(5):
        manager.create_session("alice", cc(idp), session_id=f"s{i}")
    manager.cancel("s1")
    manager.pause("s3")
    assert list(rows_by_id(http, status="ACTIVE")) == ["s0", "s2", "s4"]
    assert list(rows_by_id(http, status="cancelled,paused")) == ["s1", "s3"]
    page = http.get("/api/sessions", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in page["sessions"]] == ["s2", "s3"]
    assert (page["limit"], page["offset"], page["count"]) == (2, 2, 2)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "offset=-1",
        "status=sleeping",
        "colour=red",
        "limit=1&limit=2",
        "limit",
    ],
)
def test_list_refuses_bad_query_parameters(http: httpx.Client, query: str) -> None:
    r = http.get(f"/api/sessions?{query}")
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("offset=9223372036854775808", "offset"),
        ("offset=" + "9" * 5000, "limit and offset"),
        ("limit=9223372036854775808", "limit"),
        ("limit=0", "limit"),
    ],
)
def test_out_of_range_pages_are_refused_before_the_sqlite_store(
    tmp_path: Path, clock: FakeClock, idp: FakeIdP, query: str, named: str
) -> None:
    store = authpulse.open_store(f"sqlite:///{tmp_path / 'web.db'}")
    m = SessionManager(store, clock=clock, transport=idp.transport)
    m.create_session("alice", cc(idp))
    try:
        with running(m) as (_, http):
            r = http.get(f"/api/sessions?{query}")
            assert r.status_code == 400
            assert r.json()["error"] == "bad_request"
            assert r.json()["message"].startswith(named)
            assert http.get("/api/sessions?offset=9223372036854775807").json()["count"] == 0
    finally:
        m.shutdown()


def test_the_manager_refuses_out_of_range_pages(manager: SessionManager) -> None:
    with pytest.raises(ConfigurationError, match="offset must be an integer from 0 to"):
        manager.list(offset=2**63)
    with pytest.raises(ConfigurationError, match="limit must be an integer from 0 to"):
        manager.list(limit=-1)


# ----------------------------------------------------------------------------- detail


def test_detail_has_record_health_components_timeline_and_history(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, http: httpx.Client
) -> None:
    ms = manager.create_session("alice", cc(idp), session_id="s1", labels=["checkout"])
    ms.session.token()
    first = http.get("/api/sessions/s1").json()
    assert first["health"]["score"] == 100
    assert first["health"]["components"] == []

    clock.advance(10)
    fail_refresh(ms, idp)
    d = http.get("/api/sessions/s1").json()

    report = manager.health("s1")
    assert d["health"]["score"] == report.score < 100
    assert d["health"]["estimated"] is False
    assert {c["name"] for c in d["health"]["components"]} == {"refresh", "state"}
    assert d["health"]["components"] == [
        {"name": c.name, "penalty": c.penalty, "reason": c.reason} for c in report.components
    ]
    assert d["record"]["id"] == "s1"
    assert d["record"]["owner"] == "alice"
    assert "checkout" in d["record"]["labels"]
    kinds = [e["kind"] for e in d["timeline"]]
    assert kinds[0] == "session_created"
    assert "token_refreshed" in kinds
    assert "refresh_failed" in kinds
    assert d["token"]["token_type"] == "Bearer"
    assert d["token"]["generation"] == 1
    assert d["refresh"]["refreshes"] == 1
    assert d["refresh"]["failures"] == 1
    # one sample when the page first looked, one after the failure
    scores = [p["score"] for p in d["history"]]
    assert scores[0] == 100
    assert scores[-1] == report.score
    assert [p["at"] for p in d["history"]] == sorted(p["at"] for p in d["history"])
    assert d["actions"] == {"refresh": True, "cancel": True}


def test_detail_of_an_ended_session_offers_no_actions(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    manager.create_session("alice", cc(idp), session_id="done")
    manager.close("done", error="finished badly")
    d = http.get("/api/sessions/done").json()
    assert d["session"]["status"] == "COMPLETED"
    assert d["session"]["open"] is False
    assert d["session"]["last_error"]["message"] == "finished badly"
    assert d["actions"] == {"refresh": False, "cancel": False}


def test_history_is_a_bounded_ring_that_skips_repeats(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1").session.token()
    dash = Dashboard(manager, history=4, sample_spacing=5.0)
    for _ in range(3):
        dash.sample()  # same score, same time: one sample
    assert [p["score"] for p in dash.session("s1")["history"]] == [100]
    for _ in range(10):
        clock.advance(5)
        dash.sample()
    history = dash.session("s1")["history"]
    assert len(history) == 4
    assert history[-1]["at"] == clock.now()


def test_history_of_purged_sessions_is_forgotten(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    manager.create_session("alice", cc(idp), session_id="gone")
    dash = Dashboard(manager)
    assert dash.sample() == 1
    manager.cancel("gone")
    clock.advance(10)
    assert manager.purge(0) == 1
    assert dash.sample() == 0
    assert repr(dash) == "<Dashboard live, 0 sessions sampled>"
    assert dash.summary()["total"] == 0


# ----------------------------------------------------------------------------- summary


def test_health_summary_counts_by_band_and_lists_the_worst(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    for sid in ("a", "b"):
        manager.create_session("alice", cc(idp), session_id=sid).session.token()
    manager.create_session("bob", cc(idp), session_id="no-token")
    degraded = manager.create_session("carol", cc(idp), session_id="degraded")
    degraded.session.token()
    fail_refresh(degraded, idp)
    manager.create_session("dave", cc(idp), session_id="ended")
    manager.cancel("ended")

    s = http.get("/api/health").json()
    assert s["total"] == 5
    assert s["open"] == 4
    assert s["statuses"]["ACTIVE"] == 4
    assert s["statuses"]["CANCELLED"] == 1
    assert sum(s["bands"].values()) == 4  # ended sessions are not in a band
    assert s["bands"]["excellent"] == 2
    assert s["bands"]["fair"] == 1
    assert s["bands"][manager.health("degraded").band.value] >= 1
    assert [w["id"] for w in s["worst"]][:2] == ["no-token", "degraded"]
    assert s["admin_enabled"] is True


# ----------------------------------------------------------------------------- /metrics

_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$'
)


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels}`` -> value; checks every line is well formed."""
    out: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"gauge", "counter", "histogram"}
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed exposition line: {line!r}"
        name = m.group(1)
        family = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert family in typed or name in typed, f"{name} has no TYPE line"
        out[name + (m.group(2) or "")] = float(m.group(3))
    return out


def test_metrics_in_prometheus_text_format(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, http: httpx.Client
) -> None:
    api = FakeAPI(idp)
    ok = manager.create_session("alice", cc(idp), session_id="ok")
    ok.session.token()
    bad = manager.create_session("bob", cc(idp), session_id="bad")
    bad.session.token()
    fail_refresh(bad, idp)
    # an API failure burst through a client of "bad": its breaker opens
    api.fail_next(20)
    with bad.client(
        base_url=api.base_url,
        transport=api.transport,
        retry=False,
        breaker=BreakerPolicy(minimum_calls=3),
    ) as client:
        for _ in range(6):
            with contextlib.suppress(AuthpulseError):
                client.get("/items")
    manager.create_session("carol", cc(idp), session_id="ended")
    manager.cancel("ended")

    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse_metrics(r.text)

    def total(prefix: str, **labels: str) -> float:
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(
            v for k, v in m.items() if k.split("{")[0] == prefix and all(w in k for w in wanted)
        )

    assert m['authpulse_sessions{kind="user",status="ACTIVE"}'] == 2
    assert m['authpulse_sessions{kind="user",status="CANCELLED"}'] == 1
    assert m['authpulse_sessions{kind="user",status="PAUSED"}'] == 0
    bad_score = manager.health("bad").score
    assert bad_score < 60
    assert m['authpulse_session_health_score{session="ok"}'] == 100
    assert m['authpulse_session_health_score{session="bad"}'] == bad_score
    assert not any('session="ended"' in k for k in m)  # only open sessions per session
    bad_band = manager.health("bad").band.value
    assert m['authpulse_sessions_by_health_band{band="excellent"}'] == 1
    assert m[f'authpulse_sessions_by_health_band{{band="{bad_band}"}}'] == 1
    assert total("authpulse_sessions_by_health_band") == 2
    assert total("authpulse_token_refreshes_total") == 2
    assert total("authpulse_token_refresh_failures_total") == 1
    expiry = ok.session.token_set.expires_at - clock.now()  # type: ignore[union-attr]
    assert m['authpulse_session_token_expires_in_seconds{session="ok"}'] == pytest.approx(expiry)
    assert total("authpulse_breaker_state", state="open") == 1
    assert total("authpulse_breaker_transitions_total", state="open") == 1
    assert total("authpulse_breaker_opens_total") == 1
    assert "authpulse_manager_ticks_total" in m
    assert "authpulse_manager_worker_running" in m


def test_metrics_escape_label_values(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock
) -> None:
    manager.create_session("alice", cc(idp), session_id='we"ird\\id')
    # a newline create_session refuses, in a record another writer stored
    now = clock.now()
    manager.store.put(
        SessionRecord(
            id="old\nid",
            owner="alice",
            kind=authpulse.SessionKind.USER,
            status=SessionStatus.ACTIVE,
            created_at=now,
            last_activity_at=now,
        ),
        expected_version=None,
    )
    text = Dashboard(manager).metrics()
    assert 'session="we\\"ird\\\\id"' in text
    assert 'session="old\\nid"' in text
    parse_metrics(text)


def test_metrics_per_session_series_are_capped(manager: SessionManager, idp: FakeIdP) -> None:
    for i in range(3):
        manager.create_session("alice", cc(idp), session_id=f"s{i}")
    m = parse_metrics(Dashboard(manager, metrics_session_limit=2).metrics())
    assert sum(1 for k in m if k.startswith("authpulse_session_health_score{")) == 2
    assert sum(v for k, v in m.items() if k.startswith("authpulse_sessions_by_health_band")) == 3


# ----------------------------------------------------------------------------- the page


def test_page_and_assets_are_served_from_the_package(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    html = page.text
    for src in ("/static/app.js", "/static/app.css", "/static/favicon.svg"):
        assert src in html
        assert http.get(src).status_code == 200
    assert "http://" not in html.replace('"http://www.w3.org', "")  # nothing from elsewhere
    assert "https://" not in html
    # the legend: one chip per band, with its range
    for band, rng in [
        ("excellent", "80–100"),
        ("good", "60–79"),
        ("fair", "40–59"),
        ("poor", "20–39"),
        ("critical", "0–19"),
    ]:
        assert f'class="chip band-{band}">{band} {rng}<' in html
    js = http.get("/static/app.js")
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "innerHTML" not in js.text  # values are set as text, never parsed as HTML


def test_band_colours_in_the_stylesheet(http: httpx.Client) -> None:
    css = http.get("/static/app.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert BAND_COLOURS == {
        "excellent": "#1a7f37",
        "good": "#0969da",
        "fair": "#d4a72c",
        "poor": "#e16f24",
        "critical": "#cf222e",
    }
    for band, colour in BAND_COLOURS.items():
        rule = re.search(rf"\.band-{band}\s*\{{([^}}]*)\}}", css.text)
        assert rule, f".band-{band} is not styled"
        assert f"--band: {colour}" in rule.group(1)


def test_assets_ship_in_the_package() -> None:
    web = Path(__file__).resolve().parents[1] / "src" / "authpulse" / "web"
    assert {p.name for p in web.iterdir()} >= {"index.html", "app.js", "app.css", "favicon.svg"}


@pytest.mark.parametrize(
    "path", ["/", "/static/app.js", "/api/sessions", "/api/health", "/metrics", "/nope"]
)
def test_every_answer_has_the_security_headers(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert set(r.headers) >= SECURITY
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "*" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    if path.startswith(("/api", "/metrics")):
        assert r.headers["cache-control"] == "no-store"


def test_head_sends_headers_only(http: httpx.Client) -> None:
    r = http.head("/api/health")
    assert r.status_code == 200
    assert int(r.headers["content-length"]) > 0
    assert r.content == b""


# ----------------------------------------------------------------------------- admin


def test_actions_are_off_without_an_admin_token(manager: SessionManager, idp: FakeIdP) -> None:
    manager.create_session("alice", cc(idp), session_id="s1").session.token()
    calls = idp.token_calls
    with running(manager, admin_token=None) as (_, http):
        assert http.get("/api/health").json()["admin_enabled"] is False
        for action in ("refresh", "cancel"):
            for headers in ({}, admin(), admin("anything-at-all-123456")):
                r = http.post(f"/api/sessions/s1/{action}", headers=headers)
                assert r.status_code == 403
                assert r.json()["error"] == "admin_disabled"
    assert idp.token_calls == calls
    assert manager.record("s1").status is SessionStatus.ACTIVE


@pytest.mark.parametrize(
    "headers",
    [
        {},
        admin("wrong-token-0123456789-abcdef"),
        admin(ADMIN[:-1]),
        admin(ADMIN + "x"),
        {"Authorization": f"Basic {ADMIN}"},
        {"Authorization": ADMIN},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "prefix", "longer", "basic", "no-scheme", "empty"],
)
def test_a_wrong_admin_token_is_refused(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client, headers: dict[str, str]
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1").session.token()
    calls = idp.token_calls
    for action in ("refresh", "cancel"):
        r = http.post(f"/api/sessions/s1/{action}", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert idp.token_calls == calls
    assert manager.record("s1").status is SessionStatus.ACTIVE


def test_the_right_admin_token_refreshes_and_cancels(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    ms = manager.create_session("alice", cc(idp), session_id="s1")
    ms.session.token()
    calls, generation = idp.token_calls, ms.session.generation

    r = http.post("/api/sessions/s1/refresh", headers=admin())
    assert r.status_code == 200, r.text
    assert idp.token_calls == calls + 1
    assert ms.session.generation == generation + 1
    body = r.json()
    assert body["ok"] is True
    assert body["session"]["refreshes"] == 2
    assert rows_by_id(http)["s1"]["refreshes"] == 2

    r = http.post("/api/sessions/s1/cancel", headers=admin())
    assert r.status_code == 200
    assert r.json()["session"]["status"] == "CANCELLED"
    assert manager.record("s1").status is SessionStatus.CANCELLED
    assert "closed" in [e["kind"] for e in http.get("/api/sessions/s1").json()["timeline"]]

    for action in ("refresh", "cancel"):  # an ended session takes no action
        r = http.post(f"/api/sessions/s1/{action}", headers=admin())
        assert r.status_code == 409
        assert r.json()["error"] == "conflict"
    assert idp.token_calls == calls + 1


def test_a_refresh_that_fails_answers_502_without_details(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1").session.token()
    idp.set_outage(Fault(status=503, body={"error": "temporarily_unavailable"}))
    r = http.post("/api/sessions/s1/refresh", headers=admin())
    idp.set_outage(None)
    assert r.status_code == 502
    assert r.json() == {"error": "refresh_failed", "message": "TokenEndpointError (server)"}


def test_cross_origin_actions_are_refused(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1").session.token()
    calls = idp.token_calls
    r = http.post("/api/sessions/s1/refresh", headers={**admin(), "Origin": "https://evil.example"})
    assert r.status_code == 403
    assert idp.token_calls == calls


def test_admin_tokens_must_be_long(manager: SessionManager) -> None:
    for bad in ("short", "a" * 15, "has a space in it 123", "x" * 16 + "\n"):
        with pytest.raises(ConfigurationError, match="admin_token"):
            DashboardServer(manager, admin_token=bad, sample_interval=None)


# ----------------------------------------------------------------------------- strictness


def test_unknown_ids_and_paths_answer_404_json(
    manager: SessionManager, idp: FakeIdP, http: httpx.Client
) -> None:
    calls = idp.token_calls
    for path in ("/api/sessions/nope", "/api/sessions/%2e%2e", "/api/sessions/%ff", "/api/x"):
        r = http.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "not_found"
    for path in ("/api/sessions/a/b", "/static/../_web.py", "/static/", "/web/app.js"):
        assert http.get(path).status_code == 404, path
    assert http.post("/api/sessions/nope/refresh", headers=admin()).status_code == 404
    # unknown ids are not revealed to a caller without the token
    assert http.post("/api/sessions/nope/refresh").status_code == 401
    assert idp.token_calls == calls


def test_ids_are_percent_decoded(manager: SessionManager, idp: FakeIdP, http: httpx.Client) -> None:
    manager.create_session("alice", cc(idp), session_id="tëam:a/42")
    r = http.get("/api/sessions/t%C3%ABam%3Aa%2F42")
    assert r.status_code == 200
    assert r.json()["record"]["id"] == "tëam:a/42"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/sessions", "GET, HEAD"),
        ("POST", "/api/sessions", "GET, HEAD"),
        ("PUT", "/api/sessions/s1", "GET, HEAD"),
        ("POST", "/api/sessions/s1", "GET, HEAD"),
        ("GET", "/api/sessions/s1/refresh", "POST"),
        ("DELETE", "/api/sessions/s1/cancel", "POST"),
        ("POST", "/metrics", "GET, HEAD"),
        ("PATCH", "/api/health", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
    ],
)
def test_a_wrong_method_answers_405(
    manager: SessionManager,
    idp: FakeIdP,
    http: httpx.Client,
    method: str,
    path: str,
    allow: str,
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1")
    r = http.request(method, path, headers=admin(), content=b"{}")
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"] == "method_not_allowed"
    assert manager.record("s1").status is SessionStatus.ACTIVE
    assert http.get("/api/health").status_code == 200  # the connection is still usable


def test_query_strings_are_refused_where_none_is_taken(http: httpx.Client) -> None:
    for path in ("/api/health?x=1", "/metrics?debug=1", "/api/sessions/s1?x=1"):
        assert http.get(path).status_code == 400


def test_a_large_or_chunked_body_is_refused(
    manager: SessionManager, idp: FakeIdP, web: tuple[DashboardServer, httpx.Client]
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1")
    server, _ = web
    with httpx.Client(base_url=server.url) as http:
        r = http.post("/api/sessions/s1/refresh", headers=admin(), content=b"x" * 100_000)
        assert r.status_code == 413
    with httpx.Client(base_url=server.url) as http:
        r = http.post("/api/sessions/s1/refresh", headers=admin(), content=iter([b"chunk"]))
        assert r.status_code == 411


def test_a_malformed_request_gets_a_json_400(web: tuple[DashboardServer, httpx.Client]) -> None:
    server, _ = web
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/9.9 extra\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400"))
    assert b"x-content-type-options: nosniff" in head.lower()
    assert b'"error":"bad_request"' in body


def test_only_localhost_names_are_answered_on_loopback(http: httpx.Client) -> None:
    # a page on another site whose name resolves to 127.0.0.1 (DNS rebinding)
    r = http.get("/api/sessions", headers={"Host": "attacker.example:8080"})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden_host"
    for host in ("localhost", "localhost:8080", "127.0.0.1:1", "[::1]:8080"):
        assert http.get("/api/health", headers={"Host": host}).status_code == 200, host


# ----------------------------------------------------------------------------- secrets


def test_no_secret_in_any_response(
    manager: SessionManager, idp: FakeIdP, clock: FakeClock, http: httpx.Client
) -> None:
    seen: list[TokenSet] = []
    rt = idp.issue_refresh_token(CLIENT_ID)
    user = manager.create_session(
        "alice",
        RefreshTokenGrant(idp.token_url, CLIENT_ID, CLIENT_SECRET, refresh_token=rt),
        session_id="user",
        metadata={"custom": {"api_key": "meta-secret-value-1234", "plan": "pro"}},
        on_token_update=seen.append,
    )
    user.session.token()
    service = manager.create_session(
        "svc", cc(idp), session_id="service", kind="system", on_token_update=seen.append
    )
    service.session.token()
    api = FakeAPI(idp)
    with user.client(base_url=api.base_url, transport=api.transport) as client:
        assert client.get("/me").status_code == 200
    fail_refresh(service, idp)
    clock.advance(10)

    bodies: list[str] = []

    def grab(r: httpx.Response) -> None:
        bodies.append(r.text)
        bodies.append(str(r.headers))

    for path in (
        "/",
        "/static/app.js",
        "/api/sessions",
        "/api/sessions/user",
        "/api/sessions/service",
        "/api/health",
        "/metrics",
        "/api/sessions/nope",
    ):
        grab(http.get(path))
    grab(http.post("/api/sessions/user/refresh", headers=admin()))
    grab(http.post("/api/sessions/user/refresh", headers=admin("not-the-token-1234567890")))
    grab(http.get("/api/sessions/user"))
    grab(http.post("/api/sessions/service/cancel", headers=admin()))
    grab(http.get("/api/sessions/service"))

    secrets = {rt, CLIENT_SECRET, ADMIN, "meta-secret-value-1234"}
    for ts in seen:
        secrets.add(ts.access_token.get_secret_value())
        if ts.refresh_token is not None:
            secrets.add(ts.refresh_token.get_secret_value())
    assert len(seen) >= 3  # user, service, and the user's refresh from the dashboard
    text = "\n".join(bodies)
    leaked = [s[:6] + "…" for s in secrets if s in text]
    assert not leaked, f"secrets in responses: {leaked}"
    assert '"api_key":"[redacted]"' in text
    assert '"plan":"pro"' in text


# ----------------------------------------------------------------------------- store only


def test_a_store_only_dashboard_estimates_health_and_refuses_actions(
    tmp_path: Path, clock: FakeClock, idp: FakeIdP
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    owner_store = open_store(url, clock=clock)
    owner = SessionManager(owner_store, clock=clock, transport=idp.transport, seed=1)
    try:
        owner.create_session("alice", cc(idp), session_id="s1").session.token()
        owner.create_session("bob", cc(idp), session_id="no-token")
        clock.advance(100)
        reader = open_store(url, clock=clock)
        try:
            dash = Dashboard(store=reader, clock=clock)
            with running(dash) as (_, http):
                rows = rows_by_id(http)
                assert rows["s1"]["live"] is False
                assert rows["s1"]["score"] == 100
                assert rows["s1"]["expires_in"] == pytest.approx(495.0, abs=0.5)  # minus leeway
                assert rows["s1"]["refreshes"] is None
                assert rows["no-token"]["score"] == 50
                d = http.get("/api/sessions/s1").json()
                assert d["health"]["estimated"] is True
                assert d["actions"] == {"refresh": False, "cancel": False}
                assert d["timeline"][0]["kind"] == "session_created"
                calls = idp.token_calls
                r = http.post("/api/sessions/s1/refresh", headers=admin())
                assert r.status_code == 409
                assert "not live in this process" in r.json()["message"]
                assert idp.token_calls == calls
                clock.advance(600)  # the stored token has expired by now
                assert rows_by_id(http)["s1"]["score"] == 50
                m = parse_metrics(http.get("/metrics").text)
                assert not any(k.startswith("authpulse_token_refreshes") for k in m)
                assert m['authpulse_sessions_by_health_band{band="fair"}'] == 2
        finally:
            reader.close()
    finally:
        owner.shutdown()


class DownStore(MemoryStore):
    """A store that cannot be reached (a Redis server that went away)."""

    def get(self, session_id: str) -> SessionRecord | None:
        raise StoreUnavailableError("connection refused")

    def query(self, **kwargs: Any) -> list[SessionRecord]:
        raise StoreUnavailableError("connection refused")


def test_a_store_outage_answers_503(clock: FakeClock) -> None:
    with running(Dashboard(store=DownStore(), clock=clock)) as (_, http):
        for path in ("/api/sessions", "/api/sessions/s1", "/api/health", "/metrics"):
            r = http.get(path)
            assert r.status_code == 503, path
            assert r.json() == {
                "error": "store_unavailable",
                "message": "StoreUnavailableError",
            }
            assert r.headers["retry-after"] == "5"
        r = http.post("/api/sessions/s1/refresh", headers=admin())
        assert r.status_code == 503
        assert http.get("/").status_code == 200  # the page still loads, and says so


def test_serve_runs_a_store_only_dashboard_until_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[int] = []

    def wait(self: DashboardServer, timeout: float | None = None) -> None:
        with httpx.Client(base_url=self.url) as http:
            answers.append(http.get("/api/health").status_code)
            answers.append(http.post("/api/sessions/x/refresh", headers=admin()).status_code)
        raise KeyboardInterrupt

    monkeypatch.setattr(DashboardServer, "wait", wait)
    serve(f"sqlite:///{tmp_path / 's.db'}", port=0, admin_token=ADMIN)
    assert answers == [200, 404]
    out = capsys.readouterr().out
    assert "authpulse dashboard: http://127.0.0.1:" in out
    assert "admin actions on" in out
    assert ADMIN not in out


def test_serve_refuses_a_short_admin_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="admin_token"):
        serve("memory://", port=0, admin_token="short")


# ----------------------------------------------------------------------------- server


def test_the_server_closes_cleanly_and_frees_its_port(manager: SessionManager) -> None:
    server = DashboardServer(manager, sample_interval=None)
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/health").status_code == 200  # a kept-alive connection
        server.close()
        server.close()  # idempotent
        assert server.closed
        with pytest.raises(httpx.TransportError):
            http.get("/api/health")
    assert repr(server).endswith("closed, admin off>")


class RecordingDashboard(Dashboard):
    """Says when the server's timer has taken a sample."""

    def __init__(self, manager: SessionManager) -> None:
        super().__init__(manager)
        self.sampled = threading.Event()

    def sample(self) -> int:
        count = super().sample()
        self.sampled.set()
        return count


def test_the_sampler_fills_the_history_without_requests(
    manager: SessionManager, idp: FakeIdP
) -> None:
    manager.create_session("alice", cc(idp), session_id="s1")
    dash = RecordingDashboard(manager)
    with DashboardServer(dash, sample_interval=0.01):
        assert dash.sampled.wait(30)
    assert dash._history("s1")[0]["score"] == 50  # no API call was made: the timer sampled


def test_configuration_is_checked(manager: SessionManager) -> None:
    with pytest.raises(ConfigurationError):
        Dashboard()
    with pytest.raises(ConfigurationError):
        Dashboard(manager, history=1)
    with pytest.raises(ConfigurationError):
        DashboardServer(manager, port=70000)
    with pytest.raises(ConfigurationError):
        DashboardServer(manager, sample_interval=0)
    with pytest.raises(ConfigurationError):
        DashboardServer(Dashboard(manager), clock=FakeClock())
    with (
        DashboardServer(manager, sample_interval=None) as first,
        pytest.raises(ConfigurationError, match="cannot listen"),
    ):
        DashboardServer(manager, port=first.port, sample_interval=None)


# ----------------------------------------------------------------- one stored-health estimate


def test_an_unreadable_stored_token_gets_the_managers_estimate_everywhere(
    tmp_path: Path, clock: FakeClock, idp: FakeIdP, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dashboard (with a manager, or on the store alone) and the manager agree on a
    session whose stored token set cannot be read: never "fresh, has a token"."""
    from authpulse._core.health import stored_health
    from authpulse._surfaces.cli import main

    key = authpulse.TokenCipher.generate_key()
    url = f"sqlite:///{tmp_path / 'enc.db'}"
    writer = SessionManager(
        open_store(url, encryption_keys=[key], clock=clock), clock=clock, transport=idp.transport
    )
    ms = writer.create_session("alice", cc(idp), session_id="enc")
    ms.session.token()
    admin = SessionManager(open_store(url, clock=clock), clock=clock)  # no key
    try:
        expected = stored_health(
            auth_state="fresh", token=None, now=clock.now(), policy=RefreshPolicy(), readable=False
        )
        assert expected.score == 50
        assert expected.worst is not None
        assert expected.worst.reason == "the stored token set cannot be read"

        exported = admin.export("enc")
        assert exported["token_error"] == "DecryptionError"
        with pytest.raises(authpulse.DecryptionError):
            admin.health("enc")

        for dash in (Dashboard(admin), Dashboard(store=admin.store, clock=clock)):
            (row,) = dash.sessions()["sessions"]
            assert row["live"] is False
            assert row["token_error"] == exported["token_error"]
            assert (row["score"], row["band"]) == (expected.score, expected.band.value)
            assert row["freshness"] is None  # not "fresh": nothing is known about the token
            detail = dash.session("enc")["health"]
            assert detail["components"] == [
                {"name": c.name, "penalty": c.penalty, "reason": c.reason}
                for c in expected.components
            ]

        assert main(["health", "enc", "--store", url]) == 1  # the CLI refuses to guess
        assert "AUTHPULSE_ENCRYPTION_KEYS" in capsys.readouterr().err

        # with the key, every view gives the manager's number
        keyed = SessionManager(open_store(url, encryption_keys=[key], clock=clock), clock=clock)
        try:
            score = keyed.health("enc").score
            (row,) = Dashboard(keyed).sessions()["sessions"]
            assert row["token_error"] is None
            assert row["score"] == score
        finally:
            keyed.shutdown()
    finally:
        admin.shutdown()
        writer.shutdown()


def test_the_dashboard_import_paths_are_kept() -> None:
    """``authpulse._surfaces.web`` (a package of small modules) still offers its names,
    lazily importable by name, with the public ``__module__``."""
    import importlib

    import authpulse

    web = importlib.import_module("authpulse._surfaces.web")
    assert web.Dashboard is authpulse.Dashboard is Dashboard
    assert web.DashboardServer is authpulse.DashboardServer is DashboardServer
    assert callable(web.serve)
    assert web.BAND_COLOURS is BAND_COLOURS
    assert set(web.__all__) == {"BAND_COLOURS", "Dashboard", "DashboardServer", "serve"}
    assert Dashboard.__module__ == DashboardServer.__module__ == "authpulse"

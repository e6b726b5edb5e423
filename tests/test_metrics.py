"""Metrics (Prometheus, OpenTelemetry) and structured logging."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest

import authpulse
from _support import NO_JITTER, assert_no_secret, cc_session
from authpulse import (
    BreakerPolicy,
    CachePolicy,
    CircuitOpenError,
    ConfigurationError,
    OAuthError,
    ResponseCache,
    Session,
    SessionEvent,
    SessionEventKind,
    SessionManager,
    TokenRetry,
)
from authpulse.logging_config import LOGGERS, JsonFormatter, authpulse_fields, json_formatter
from authpulse.metrics import METRICS, MissingExtraError, otel, prometheus
from authpulse.metrics._watch import SessionWatch
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault

CLIENT_SECRET = "cs_METRICS_SECRET_client_value"


# ------------------------------------------------------------------------- helpers


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def exposition(reg: CollectorRegistry) -> str:
    return generate_latest(reg).decode()


def secret_session(idp: FakeIdP, clock: FakeClock, **kwargs: Any) -> Session:
    grant = authpulse.RefreshTokenGrant(
        idp.token_url, "client", CLIENT_SECRET, refresh_token=idp.issue_refresh_token()
    )
    return Session(grant, clock=clock, transport=idp.transport, **kwargs)


@pytest.fixture
def idp(clock: FakeClock) -> FakeIdP:
    return FakeIdP(clock=clock, access_ttl=600, clients={"client": "secret"})


@pytest.fixture
def sidp(clock: FakeClock) -> FakeIdP:
    """An IdP whose client secret the secret scans look for."""
    return FakeIdP(clock=clock, access_ttl=600, clients={"client": CLIENT_SECRET})


class Otel:
    """An SDK meter provider with an in-memory reader and a tracer with an in-memory exporter."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def points(self) -> dict[str, list[tuple[dict[str, Any], float]]]:
        """name -> [(attributes, value or histogram count)]"""
        out: dict[str, list[tuple[dict[str, Any], float]]] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        v: Any = getattr(p, "value", None)
                        if v is None:
                            v = getattr(p, "count", 0)
                        out.setdefault(metric.name, []).append((dict(p.attributes or {}), float(v)))
        return out

    def total(self, name: str, **attrs: Any) -> float:
        return sum(
            v
            for a, v in self.points().get(name, [])
            if all(a.get(k) == want for k, want in attrs.items())
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def close(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


@pytest.fixture
def tel() -> Iterator[Otel]:
    t = Otel()
    yield t
    t.close()


# ------------------------------------------------------------------------- catalogue


def test_catalogue_names_are_prefixed_and_unique() -> None:
    names = [m.name for m in METRICS]
    assert len(set(names)) == len(names)
    assert len({m.otel for m in METRICS}) == len(METRICS)
    for m in METRICS:
        assert m.name.startswith("authpulse_"), m.name
        assert m.otel.startswith("authpulse."), m.otel
        assert not m.name.endswith("_total")
        assert "token" not in m.labels
        assert "owner" not in m.labels


def test_docs_table_lists_every_metric() -> None:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    table = text.split("<!-- metrics:start -->")[1].split("<!-- metrics:end -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = [
        (cells[1].strip(" `"), cells[2].strip(" `"), cells[3].strip())
        for cells in (row.split("|") for row in rows)
    ]
    expected = [
        (m.name + ("_total" if m.type == "counter" else ""), m.otel, m.type) for m in METRICS
    ]
    assert documented == expected


# ------------------------------------------------------------------------- prometheus


def test_prometheus_refresh_success_failure_and_retry_move_counters(
    idp: FakeIdP, clock: FakeClock
) -> None:
    reg = CollectorRegistry()
    s = cc_session(idp, clock, name="billing", retry=TokenRetry(attempts=3))
    prometheus.instrument_session(s, reg)

    s.token()
    assert value(reg, "authpulse_token_refreshes_total", reason="expired") == 1
    assert value(reg, "authpulse_session_health_score", session="billing") == 100
    assert value(reg, "authpulse_sessions_by_health_band", band="excellent") == 1

    idp.fail_next(1, Fault.oauth("invalid_client", status=401))
    with pytest.raises(OAuthError):
        s.force_refresh()
    assert (
        value(reg, "authpulse_token_refresh_failures_total", reason="forced", error_class="auth")
        == 1
    )
    assert value(reg, "authpulse_session_health_score", session="billing") == 85

    idp.fail_next(1, Fault(status=503))
    s.force_refresh()
    assert value(reg, "authpulse_token_retries_total", error_class="server") == 1
    assert value(reg, "authpulse_token_refreshes_total", reason="forced") == 1
    assert value(reg, "authpulse_session_health_score", session="billing") == 100
    count = "authpulse_token_refresh_duration_seconds_count"
    assert value(reg, count, reason="forced", outcome="failure") == 1
    assert value(reg, count, reason="forced", outcome="success") == 1
    assert value(reg, "authpulse_login_required_total") == 0  # unlabelled: exported from 0
    assert (value(reg, "authpulse_session_token_expires_in_seconds", session="billing") or 0) > 0
    s.close()


def test_prometheus_api_retries_breaker_and_cache(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock
) -> None:
    reg = CollectorRegistry()
    s = cc_session(idp, clock, name="orders")
    upstream = "https://api.test:443"
    with authpulse.Client(
        s, base_url=api.base_url, transport=api.transport, cache=CachePolicy(ttl=30)
    ) as c:
        handle = prometheus.instrument_client(c, reg)
        assert handle.active
        c.get("/warm")
        api.fail_next(2, Fault(status=503))
        assert c.get("/retried").status_code == 200
        assert (
            value(reg, "authpulse_api_retries_total", upstream=upstream, error_class="server") == 2
        )
        assert value(reg, "authpulse_breaker_state", upstream=upstream, state="closed") == 1
        assert value(reg, "authpulse_breaker_state", upstream=upstream, state="open") == 0

        c.get("/warm")  # fresh: a hit
        assert value(reg, "authpulse_cache_hits_total", cache="orders") == 1
        assert value(reg, "authpulse_cache_misses_total", cache="orders") == 2
        assert value(reg, "authpulse_cache_entries", cache="orders") == 2

        clock.advance(40)  # stale: served while one background request revalidates
        c.get("/warm")
        c.join_background(10)
        assert value(reg, "authpulse_cache_stale_served_total", cache="orders", mode="revalidate")
        assert value(reg, "authpulse_cache_revalidations_total", cache="orders") == 1

        clock.advance(400)  # expired, but usable if the upstream fails
        api.set_outage(Fault(status=503))
        assert c.get("/warm").status_code == 200  # stale-if-error
        c.join_background(10)
        assert value(reg, "authpulse_cache_stale_served_total", cache="orders", mode="error") == 1
        assert value(reg, "authpulse_api_stale_served_total", mode="stale-if-error") == 1
        assert value(
            reg,
            "authpulse_api_gave_up_total",
            upstream=upstream,
            reason="attempts",
            error_class="server",
        )
        api.set_outage(None)

    # a breaker that opens: state, transitions, opens and refused calls
    with authpulse.Client(
        s,
        base_url=api.base_url,
        transport=api.transport,
        retry=False,
        breaker=BreakerPolicy(minimum_calls=4, failure_rate=0.5, window=60, open_for=30),
    ) as c2:
        c2.get("/warm")
        api.set_outage(Fault(status=500))
        for _ in range(3):
            c2.get("/x")
        with pytest.raises(CircuitOpenError):
            c2.get("/x")
        assert value(reg, "authpulse_breaker_state", upstream=upstream, state="open") == 1
        assert value(reg, "authpulse_breaker_transitions_total", upstream=upstream, state="open")
        assert value(reg, "authpulse_breaker_opens_total", upstream=upstream) == 1
        assert value(reg, "authpulse_breaker_rejected_calls_total", upstream=upstream) == 1
        score = value(reg, "authpulse_session_health_score", session="orders")
        assert score == s.health().score
        assert score is not None
        assert score <= 75  # the open breaker alone costs 25
        api.set_outage(None)
    retries = value(reg, "authpulse_api_retries_total", upstream=upstream, error_class="server")
    assert retries is not None
    assert retries > 2  # the stale-if-error call retried too
    handle.remove()
    assert repr(handle).endswith("removed>")
    assert value(reg, "authpulse_session_health_score", session="orders") is None
    assert value(reg, "authpulse_cache_hits_total", cache="orders") is None
    # counters keep what they counted
    assert (
        value(reg, "authpulse_api_retries_total", upstream=upstream, error_class="server")
        == retries
    )
    s.close()


def test_prometheus_manager_collector_reports_sessions_by_status_and_health(
    idp: FakeIdP, clock: FakeClock
) -> None:
    reg = CollectorRegistry()
    manager = SessionManager(clock=clock, transport=idp.transport, policy=NO_JITTER)
    source = authpulse.ClientCredentials(idp.token_url, "client", "secret")
    before = manager.create_session("alice", source, kind="integration")
    before.session.token()  # not counted: the manager was not instrumented yet
    handle = prometheus.instrument_manager(manager, reg)
    assert prometheus.instrument_manager(manager, reg) is handle  # idempotent

    others = [manager.create_session(f"user-{i}", source) for i in range(3)]
    for ms in [before, *others]:
        ms.session.force_refresh()
    manager.pause(others[0].id)
    manager.close(others[1].id, "FAILED", error="gone")
    idp.fail_next(1, Fault.oauth("invalid_client", status=401))
    with pytest.raises(OAuthError):
        others[2].session.force_refresh()

    assert value(reg, "authpulse_sessions", status="ACTIVE", kind="integration") == 1
    assert value(reg, "authpulse_sessions", status="ACTIVE", kind="user") == 1
    assert value(reg, "authpulse_sessions", status="PAUSED", kind="user") == 1
    assert value(reg, "authpulse_sessions", status="FAILED", kind="user") == 1
    assert value(reg, "authpulse_sessions", status="COMPLETED", kind="system") == 0
    assert value(reg, "authpulse_sessions_created_total", kind="user") == 3
    assert value(reg, "authpulse_session_status_changes_total", status="PAUSED") == 1
    # bands count open sessions only (the failed one is closed)
    bands = {
        b.value: value(reg, "authpulse_sessions_by_health_band", band=b.value)
        for b in authpulse.Band
    }
    assert sum(v or 0 for v in bands.values()) == 3
    assert (bands["excellent"] or 0) >= 1
    assert value(reg, "authpulse_token_refreshes_total", reason="forced") == 4
    assert (
        value(reg, "authpulse_token_refresh_failures_total", reason="forced", error_class="auth")
        == 1
    )
    assert value(reg, "authpulse_manager_ticks_total") == 0
    manager.tick()
    assert value(reg, "authpulse_manager_ticks_total") == 1

    text = exposition(reg)
    assert "authpulse_session_health_score" not in text  # ids are opt-in
    for ms in [before, *others]:
        assert ms.id not in text
    assert "alice" not in text  # owners are opt-in
    assert "user-0" not in text
    handle.remove()
    manager.shutdown()


def test_prometheus_manager_session_ids_and_owners_are_opt_in(
    idp: FakeIdP, clock: FakeClock
) -> None:
    reg = CollectorRegistry()
    manager = SessionManager(clock=clock, transport=idp.transport)
    ms = manager.create_session(
        "alice", authpulse.ClientCredentials(idp.token_url, "client", "secret")
    )
    ms.session.token()
    prometheus.instrument_manager(manager, reg, session_ids=True, owners=True)
    assert value(reg, "authpulse_session_health_score", session=ms.id) == 100
    assert value(reg, "authpulse_sessions", status="ACTIVE", kind="user", owner="alice") == 1
    with pytest.raises(ConfigurationError, match="other options"):
        prometheus.instrument_manager(manager, reg)
    manager.shutdown()


def test_prometheus_manager_health_can_be_left_out(idp: FakeIdP, clock: FakeClock) -> None:
    reg = CollectorRegistry()
    manager = SessionManager(clock=clock, transport=idp.transport)
    manager.create_session("alice", authpulse.ClientCredentials(idp.token_url, "client", "secret"))
    prometheus.instrument_manager(manager, reg, health=False)
    assert value(reg, "authpulse_sessions", status="ACTIVE", kind="user") == 1
    assert value(reg, "authpulse_sessions_by_health_band", band="critical") is None
    manager.shutdown()


def test_prometheus_heartbeats_are_counted(idp: FakeIdP, clock: FakeClock) -> None:
    reg = CollectorRegistry()
    manager = SessionManager(
        clock=clock,
        transport=idp.transport,
        settings=authpulse.ManagerSettings(heartbeat_interval=10, idle_timeout=None),
    )
    prometheus.instrument_manager(manager, reg)
    results = iter([True, False])
    manager.create_session(
        "alice",
        authpulse.ClientCredentials(idp.token_url, "client", "secret"),
        probe=lambda ms: next(results),
    )
    clock.advance(11)
    manager.tick()
    clock.advance(11)
    manager.tick()
    assert value(reg, "authpulse_heartbeats_total", outcome="ok") == 1
    assert value(reg, "authpulse_heartbeats_total", outcome="failed") == 1
    manager.shutdown()


def test_prometheus_labels_and_duplicates(idp: FakeIdP, clock: FakeClock) -> None:
    reg = CollectorRegistry()
    a = cc_session(idp, clock, name="same")
    b = cc_session(idp, clock, name="same")
    handle = prometheus.instrument_session(a, reg)
    assert prometheus.instrument_session(a, reg) is handle
    with pytest.raises(ConfigurationError, match="already instrumented here as 'same'"):
        prometheus.instrument_session(b, reg)
    with pytest.raises(ConfigurationError, match="already instrumented here as 'same'"):
        prometheus.instrument_session(a, reg, name="other")
    prometheus.instrument_session(b, reg, name="second")
    a.token()
    b.token()
    assert value(reg, "authpulse_token_refreshes_total", reason="expired") == 2
    assert value(reg, "authpulse_session_health_score", session="second") == 100

    manager = SessionManager(clock=clock, transport=idp.transport)
    ms = manager.create_session(
        "alice", authpulse.ClientCredentials(idp.token_url, "client", "secret")
    )
    with pytest.raises(ConfigurationError, match="named by its id"):
        prometheus.instrument_session(ms.session, reg)
    prometheus.instrument_session(ms.session, reg, name="alice-session")
    other = SessionManager(clock=clock)
    prometheus.instrument_manager(other, reg)
    with pytest.raises(ConfigurationError, match="same owners= option"):
        prometheus.instrument_manager(manager, reg, owners=True)
    # the manager's session instrumented on its own is not counted twice
    prometheus.instrument_manager(manager, reg)
    ms.session.token()
    assert value(reg, "authpulse_token_refreshes_total", reason="expired") == 3
    with pytest.raises(ConfigurationError, match="through its SessionManager"):
        prometheus.instrument_session(
            manager.create_session("bob", ms.session.source).session, reg, name="bob"
        )
    with pytest.raises(ConfigurationError):
        prometheus.instrument_session(a, "not a registry")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        prometheus.instrument_cache(ResponseCache(), reg, name="")
    manager.shutdown()


def test_prometheus_collector_shares_one_registry_and_default_registry(
    idp: FakeIdP, clock: FakeClock
) -> None:
    reg = CollectorRegistry()
    assert prometheus.collector(reg) is prometheus.collector(reg)
    default = prometheus.collector()
    from prometheus_client import REGISTRY

    assert prometheus.collector(REGISTRY) is default
    s = cc_session(idp, clock, name="global-test-session")
    handle = prometheus.instrument_session(s, None)
    s.token()
    assert REGISTRY.get_sample_value(
        "authpulse_session_health_score", {"session": "global-test-session"}
    )
    handle.remove()
    assert (
        REGISTRY.get_sample_value(
            "authpulse_session_health_score", {"session": "global-test-session"}
        )
        is None
    )


def test_prometheus_counts_are_exact_under_concurrency(idp: FakeIdP, clock: FakeClock) -> None:
    reg = CollectorRegistry()
    sessions = [cc_session(idp, clock, name=f"s{i}") for i in range(4)]
    for s in sessions:
        prometheus.instrument_session(s, reg)
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            exposition(reg)

    def work(s: Session) -> None:
        for _ in range(25):
            s.force_refresh()

    scraper = threading.Thread(target=scrape)
    scraper.start()
    workers = [threading.Thread(target=work, args=(s,)) for s in sessions]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    scraper.join()
    assert value(reg, "authpulse_token_refreshes_total", reason="forced") == 100
    assert (
        value(
            reg,
            "authpulse_token_refresh_duration_seconds_count",
            reason="forced",
            outcome="success",
        )
        == 100
    )


def test_prometheus_exposition_has_no_secret(sidp: FakeIdP, clock: FakeClock) -> None:
    reg = CollectorRegistry()
    api = FakeAPI(sidp)
    s = secret_session(sidp, clock, name="scan")
    seen: list[str] = []
    prometheus.instrument_session(s, reg)
    manager = SessionManager(clock=clock, transport=sidp.transport)
    prometheus.instrument_manager(manager, reg)
    grant = authpulse.RefreshTokenGrant(
        sidp.token_url, "client", CLIENT_SECRET, refresh_token=sidp.issue_refresh_token()
    )
    ms = manager.create_session("owner-alice", grant, on_token_update=lambda ts: None)
    with authpulse.Client(s, base_url=api.base_url, transport=api.transport, cache=True) as c:
        prometheus.instrument_cache(c.cache or ResponseCache(), reg, name="scan-cache")
        c.get("/a")
        clock.advance(601)
        c.get("/b")
        ms.session.token()
        ms.session.force_refresh()
        sidp.fail_next(1, Fault.oauth("invalid_grant", description=f"bad {CLIENT_SECRET}"))
        with pytest.raises(OAuthError):
            s.force_refresh()
        text = exposition(reg)
    for session in (s, ms.session):
        ts = session.token_set
        assert ts is not None
        seen.append(ts.access_token.get_secret_value())
        if ts.refresh_token is not None:
            seen.append(ts.refresh_token.get_secret_value())
    assert_no_secret(text, [CLIENT_SECRET, *seen])
    assert "owner-alice" not in text
    assert ms.id not in text
    manager.shutdown()
    s.close()


def test_prometheus_missing_package_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch, idp: FakeIdP, clock: FakeClock
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    s = cc_session(idp, clock)
    calls: list[Callable[[], object]] = [
        lambda: prometheus.instrument_session(s),
        lambda: prometheus.instrument_manager(SessionManager(clock=clock)),
        lambda: prometheus.instrument_cache(ResponseCache()),
        lambda: prometheus.collector(),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError, match=r"authpulse\[prometheus\]") as info:
            call()
        assert isinstance(info.value, MissingExtraError)
        assert info.value.extra == "prometheus"
        assert info.value.package == "prometheus-client"
        assert "prometheus-client" in str(info.value)


# ------------------------------------------------------------------------- opentelemetry


def _attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return dict(span.attributes or {})


def test_otel_spans_and_counters_for_refreshes(idp: FakeIdP, clock: FakeClock, tel: Otel) -> None:
    s = cc_session(idp, clock, name="billing", retry=TokenRetry(attempts=3))
    otel.instrument_session(s, tel.meters, tel.tracers)
    s.token()
    idp.fail_next(1, Fault(status=503))
    s.force_refresh()  # one retry, then success
    idp.fail_next(1, Fault.oauth("invalid_client", status=401))
    with pytest.raises(OAuthError):
        s.force_refresh()

    spans = tel.spans()
    assert [sp.name for sp in spans] == ["authpulse.refresh"] * 3
    first, retried, failed = (_attrs(sp) for sp in spans)
    assert first["authpulse.refresh.reason"] == "expired"
    assert first["authpulse.refresh.outcome"] == "success"
    assert first["authpulse.token.generation"] == 1
    assert first["authpulse.fallback.level"] == 0
    assert first["authpulse.session"] == "billing"
    assert retried["authpulse.token.generation"] == 2
    assert [e.name for e in spans[1].events] == ["authpulse.retry"]
    assert dict(spans[1].events[0].attributes or {})["authpulse.error_class"] == "server"
    assert failed["authpulse.refresh.outcome"] == "failure"
    assert failed["authpulse.error_class"] == "auth"
    assert failed["error.type"] == "OAuthError"
    assert failed["authpulse.token.generation"] == 2
    assert spans[2].status.status_code is StatusCode.ERROR
    assert spans[0].status.status_code is StatusCode.UNSET

    assert tel.total("authpulse.token.refreshes", reason="expired") == 1
    assert tel.total("authpulse.token.refreshes", reason="forced") == 1
    assert tel.total("authpulse.token.refresh_failures", error_class="auth") == 1
    assert tel.total("authpulse.token.retries", error_class="server") == 1
    assert tel.total("authpulse.token.refresh.duration", outcome="success") == 2
    assert tel.total("authpulse.session.health_score", session="billing") == 85
    assert tel.total("authpulse.sessions.health_band", band="excellent") == 1
    s.close()


def test_otel_background_refresh_span_ends_in_the_refresh_thread(
    idp: FakeIdP, clock: FakeClock, tel: Otel
) -> None:
    s = cc_session(idp, clock, policy=NO_JITTER)
    otel.instrument_session(s, tel.meters, tel.tracers)
    s.token()
    clock.advance(400)  # stale: served, refreshed in the background
    s.token()
    s.join_background(10)
    spans = tel.spans()
    assert [_attrs(sp)["authpulse.refresh.reason"] for sp in spans] == ["expired", "stale"]
    assert all(sp.end_time is not None for sp in spans)
    s.close()


@pytest.mark.anyio
async def test_otel_async_refresh_span(idp: FakeIdP, clock: FakeClock, tel: Otel) -> None:
    s = cc_session(idp, clock)
    otel.instrument_session(s, tel.meters, tel.tracers, name="async")
    await s.atoken()
    await s.aforce_refresh()
    spans = tel.spans()
    assert [_attrs(sp)["authpulse.refresh.outcome"] for sp in spans] == ["success", "success"]
    assert [_attrs(sp)["authpulse.token.generation"] for sp in spans] == [1, 2]
    await s.aclose()


def test_otel_manager_gauges_breakers_and_spans(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock, tel: Otel
) -> None:
    manager = SessionManager(clock=clock, transport=idp.transport)
    handle = otel.instrument_manager(manager, tel.meters, tel.tracers)
    source = authpulse.ClientCredentials(idp.token_url, "client", "secret")
    a = manager.create_session("alice", source)
    b = manager.create_session("bob", source, kind="system")
    a.session.token()
    manager.pause(b.id)
    with a.client(
        base_url=api.base_url,
        transport=api.transport,
        retry=False,
        breaker=BreakerPolicy(minimum_calls=2, failure_rate=0.5, open_for=30),
    ) as c:
        api.set_outage(Fault(status=500))
        c.get("/x")
        c.get("/y")
        api.set_outage(None)
        assert tel.total("authpulse.sessions", status="ACTIVE", kind="user") == 1
        assert tel.total("authpulse.sessions", status="PAUSED", kind="system") == 1
        assert tel.total("authpulse.sessions.health_band") == 2
        upstream = "https://api.test:443"
        assert tel.total("authpulse.breaker.state", upstream=upstream, state="open") == 1
        assert tel.total("authpulse.breaker.transitions", upstream=upstream, state="open") == 1
        assert tel.total("authpulse.session.status_changes", status="PAUSED") == 1
    spans = tel.spans()
    assert len(spans) == 1
    assert "authpulse.session" not in _attrs(spans[0])  # ids are opt-in
    assert "authpulse.session.health_score" not in tel.points()
    handle.remove()
    a.session.force_refresh()
    assert len(tel.spans()) == 1  # removed: no more spans
    manager.shutdown()


def test_otel_cache_and_spans_can_be_disabled(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock, tel: Otel
) -> None:
    s = cc_session(idp, clock, name="c")
    with authpulse.Client(s, base_url=api.base_url, transport=api.transport, cache=True) as c:
        otel.instrument_client(c, tel.meters, tel.tracers, spans=False, cache_name="main")
        c.get("/a")
        c.get("/a")
        assert tel.total("authpulse.cache.hits", cache="main") == 1
        assert tel.total("authpulse.cache.misses", cache="main") == 1
    assert tel.spans() == []
    assert tel.total("authpulse.token.refreshes") == 1
    s.close()


def test_otel_attributes_have_no_secret(sidp: FakeIdP, clock: FakeClock, tel: Otel) -> None:
    s = secret_session(sidp, clock, name="scan")
    otel.instrument_session(s, tel.meters, tel.tracers)
    manager = SessionManager(clock=clock, transport=sidp.transport)
    otel.instrument_manager(manager, tel.meters, tel.tracers)
    ms = manager.create_session(
        "owner-bob",
        authpulse.RefreshTokenGrant(
            sidp.token_url, "client", CLIENT_SECRET, refresh_token=sidp.issue_refresh_token()
        ),
    )
    issued: list[str] = []
    for session in (s, ms.session):
        session.token()
        session.force_refresh()
        ts = session.token_set
        assert ts is not None
        assert ts.refresh_token is not None
        issued += [ts.access_token.get_secret_value(), ts.refresh_token.get_secret_value()]
    sidp.fail_next(1, Fault.oauth("invalid_grant", description=f"echo {CLIENT_SECRET}"))
    with pytest.raises(OAuthError):
        s.force_refresh()
    texts = [repr(tel.points())]
    for sp in tel.spans():
        texts.append(repr(_attrs(sp)))
        texts.append(repr([(e.name, dict(e.attributes or {})) for e in sp.events]))
        texts.append(repr(sp.status.description))
    for text in texts:
        assert_no_secret(text, [CLIENT_SECRET, *issued, "owner-bob", ms.id])
    manager.shutdown()
    s.close()


def test_otel_missing_package_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch, idp: FakeIdP, clock: FakeClock
) -> None:
    for name in ("opentelemetry", "opentelemetry.metrics", "opentelemetry.trace"):
        monkeypatch.setitem(sys.modules, name, None)
    s = cc_session(idp, clock)
    calls: list[Callable[[], object]] = [
        lambda: otel.instrument_session(s),
        lambda: otel.instrument_manager(SessionManager(clock=clock)),
        lambda: otel.instrument_cache(ResponseCache()),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError, match=r"authpulse\[otel\]") as info:
            call()
        assert isinstance(info.value, MissingExtraError)
        assert info.value.extra == "otel"


def test_otel_rejects_wrong_providers(idp: FakeIdP, clock: FakeClock) -> None:
    s = cc_session(idp, clock)
    with pytest.raises(ConfigurationError):
        otel.instrument_session(s, "meters")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- pairing


class RecordingSink:
    def __init__(self) -> None:
        self.counts: list[tuple[str, tuple[str, ...]]] = []
        self.ended_with: list[tuple[str, object, bool]] = []
        self.retries: list[object] = []
        self._n = 0

    def count(self, key: str, labels: tuple[str, ...]) -> None:
        self.counts.append((key, labels))

    def started(self, watch: SessionWatch, reason: str) -> object:
        self._n += 1
        return f"{reason}-{self._n}"

    def ended(
        self,
        watch: SessionWatch,
        outcome: str,
        fields: Mapping[str, Any],
        handle: object,
        duration: float | None,
    ) -> None:
        self.ended_with.append((outcome, handle, duration is not None))

    def retried(self, watch: SessionWatch, fields: Mapping[str, Any], handle: object) -> None:
        self.retries.append(handle)


def _ev(kind: str, fields: Mapping[str, Any]) -> SessionEvent:
    return SessionEvent.of(SessionEventKind(kind), fields)


def test_watch_pairs_starts_and_ends_by_reason(idp: FakeIdP, clock: FakeClock) -> None:
    sink = RecordingSink()
    watch = SessionWatch(sink, cc_session(idp, clock), "x")
    watch(_ev("refresh_started", {"reason": "stale"}))
    watch(_ev("refresh_started", {"reason": "forced"}))
    watch(_ev("retry", {"error_class": "network"}))
    watch(_ev("refreshed", {"reason": "forced", "generation": 2}))
    watch(_ev("refreshed", {"reason": "initial", "generation": 3}))  # set_token: no start
    watch(_ev("refresh_failed", {"reason": "stale", "error_class": "server"}))
    assert sink.retries == ["stale-1"]
    assert sink.ended_with == [
        ("success", "forced-2", True),
        ("success", None, False),
        ("failure", "stale-1", True),
    ]
    assert ("refreshes", ("initial",)) in sink.counts
    assert ("refresh_failures", ("stale", "server")) in sink.counts
    watch.active = False
    watch(_ev("refreshed", {"reason": "forced"}))
    assert len(sink.ended_with) == 3


def test_watch_forgets_refreshes_that_never_end(idp: FakeIdP, clock: FakeClock) -> None:
    sink = RecordingSink()
    watch = SessionWatch(sink, cc_session(idp, clock), None)
    for _ in range(9):
        watch(_ev("refresh_started", {"reason": "stale"}))
    assert sink.ended_with == [("abandoned", "stale-1", False)]


def test_upstream_labels_never_carry_user_info() -> None:
    from authpulse.metrics._labels import increments

    out = increments(
        _ev(
            "api_retry_scheduled", {"upstream": "https://user:pw@api.test:443", "error_class": None}
        )
    )
    assert out == [("api_retries", ("https://api.test:443", "unknown"))]
    assert increments(_ev("refresh_started", {})) == []


def test_public_metrics_names_show_the_public_module() -> None:
    """``MetricSpec``, ``Instrumentation`` and ``MissingExtraError`` show
    ``authpulse.metrics`` even when the private module that defines them is
    imported first; a spec pickles by that name."""
    import pickle
    import subprocess

    code = (
        "import authpulse.metrics._catalogue as c, authpulse.metrics._handles as h\n"
        "import authpulse.metrics._extras as e\n"
        "print(c.MetricSpec.__module__, h.Instrumentation.__module__, "
        "e.MissingExtraError.__module__)"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["authpulse.metrics"] * 3
    data = pickle.dumps(METRICS[0])
    assert b"authpulse.metrics" in data
    assert b"_catalogue" not in data
    assert pickle.loads(data) == METRICS[0]  # noqa: S301 - our own bytes


def test_the_dashboard_reads_the_same_series_as_the_collector() -> None:
    """The names the web dashboard imports from ``authpulse.metrics._core`` are the
    ones the Prometheus collector and the OpenTelemetry hub are built on."""
    from authpulse.metrics import _core, _counts, _exposition, _labels, _reading, _watch

    assert _core.Counts is _counts.Counts
    assert _core.ManagerWatch is _watch.ManagerWatch
    assert _core.State is _reading.State
    assert _core.read_breakers is _reading.read_breakers
    assert _core.families is _exposition.families
    assert _core.exposition is _exposition.exposition
    assert _core.label_value is _labels.label_value


# ------------------------------------------------------------------------- logging


def test_refresh_log_records_carry_consistent_fields(
    idp: FakeIdP, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    s = cc_session(idp, clock, name="logged")
    with caplog.at_level(logging.INFO, logger="authpulse"):
        s.token()
        idp.fail_next(1, Fault.oauth("invalid_client", status=401))
        with pytest.raises(OAuthError):
            s.force_refresh()
    ok, failed = (r for r in caplog.records if r.name == "authpulse.session")
    assert authpulse_fields(ok) == {
        "authpulse_event": "refreshed",
        "authpulse_session": "logged",
        "authpulse_reason": "expired",
        "authpulse_generation": 1,
        "authpulse_level": 0,
        "authpulse_adopted": False,
    }
    assert authpulse_fields(failed) == {
        "authpulse_event": "refresh_failed",
        "authpulse_session": "logged",
        "authpulse_reason": "forced",
        "authpulse_generation": 1,
        "authpulse_error": "OAuthError",
        "authpulse_error_class": "auth",
        "authpulse_consecutive_failures": 1,
    }
    for r in caplog.records:  # nothing without the prefix came in through extra
        extras = {k for k in vars(r) if k.startswith(("reason", "generation", "error_class"))}
        assert not extras
    s.close()


def test_every_authpulse_record_has_an_event_field(
    idp: FakeIdP, api: FakeAPI, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    s = cc_session(idp, clock, name="events")
    with caplog.at_level(logging.DEBUG, logger="authpulse"):
        with authpulse.Client(
            s,
            base_url=api.base_url,
            transport=api.transport,
            retry=False,
            breaker=BreakerPolicy(minimum_calls=2, failure_rate=0.5, open_for=30),
        ) as c:
            api.set_outage(Fault(status=500))
            c.get("/x")
            c.get("/y")
            api.set_outage(None)
            clock.advance(31)
            c.get("/z")

        def broken(kind: str, fields: dict[str, Any]) -> None:
            raise ZeroDivisionError

        s.add_listener(broken)
        s.force_refresh()
    names = {r.name for r in caplog.records}
    assert names <= set(LOGGERS)
    breaker = [r for r in caplog.records if r.name == "authpulse.breaker"]
    assert [(vars(r)["authpulse_from"], vars(r)["authpulse_to"]) for r in breaker] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert breaker[0].levelno == logging.WARNING
    for r in caplog.records:
        if r.name.startswith("authpulse.") and r.name != "authpulse.testing":
            assert "authpulse_event" in vars(r), r.getMessage()
    s.close()


def test_json_formatter_writes_one_object_per_record() -> None:
    logger = logging.getLogger("authpulse.session")
    record = logger.makeRecord(
        "authpulse.session",
        logging.WARNING,
        __file__,
        1,
        "token refresh failed: %s",
        ("OAuthError",),
        None,
        extra={"authpulse_session": "s", "authpulse_generation": 3, "other": object()},
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING"
    assert data["logger"] == "authpulse.session"
    assert data["message"] == "token refresh failed: OAuthError"
    assert data["authpulse_session"] == "s"
    assert data["authpulse_generation"] == 3
    assert "other" not in data
    assert data["time"].endswith("+00:00")

    everything = json.loads(json_formatter(all_extras=True, static={"service": "b"}).format(record))
    assert everything["service"] == "b"
    assert everything["other"].startswith("<object")
    assert "args" not in everything
    assert "msg" not in everything

    record.exc_info = (ValueError, ValueError("boom"), None)
    record.exc_text = None
    with_exc = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in with_exc["exc_info"]


def test_json_formatter_in_dict_config() -> None:
    import logging.config

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "authpulse.logging_config.json_formatter"}},
            "handlers": {"h": {"class": "logging.NullHandler", "formatter": "json"}},
            "loggers": {},
        }
    )
    handler = logging._handlers["h"]  # type: ignore[attr-defined]  # getHandlerByName: 3.12
    assert isinstance(handler.formatter, JsonFormatter)
    handler.close()


def test_json_formatter_never_prints_secret_values() -> None:
    from pydantic import SecretStr

    record = logging.LogRecord("authpulse.session", logging.INFO, __file__, 1, "m", None, None)
    record.authpulse_thing = SecretStr("at_SECRET_in_extra")
    assert "at_SECRET_in_extra" not in JsonFormatter().format(record)


def test_logger_names_are_one_per_layer() -> None:
    import authpulse._fleet.manager
    import authpulse._http.cache_core
    import authpulse._http.retry_call
    import authpulse._runtime.breakers
    import authpulse._runtime.events
    import authpulse._sessions.coordination
    import authpulse._sessions.fallback
    import authpulse._sessions.session

    # the logger names are public (logging configuration uses them) and stay
    # what they were, whatever package the module lives in
    modules: dict[str, Any] = {
        "authpulse.session": authpulse._sessions.session,
        "authpulse.manager": authpulse._fleet.manager,
        "authpulse.coordination": authpulse._sessions.coordination,
        "authpulse.fallback": authpulse._sessions.fallback,
        "authpulse.resilience": authpulse._http.retry_call,
        "authpulse.breaker": authpulse._runtime.breakers,
        "authpulse.cache": authpulse._http.cache_core,
        "authpulse.events": authpulse._runtime.events,
    }
    for name, module in modules.items():
        logger = getattr(module, "log", None) or module._log
        assert logger.name == name
        assert logger.name in LOGGERS


# ------------------------------------------------------------------- one catalogue


def _families(text: str) -> dict[str, str]:
    """``# TYPE`` lines of an exposition: family name -> type."""
    return {
        line.split(" ")[2]: line.split(" ")[3]
        for line in text.splitlines()
        if line.startswith("# TYPE ")
    }


def _samples(text: str, family: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith((family + "{", family + " ")):
            key, _, number = line.rpartition(" ")
            out[key] = float(number)
    return out


def test_serve_and_the_prometheus_collector_publish_the_same_series(
    idp: FakeIdP, clock: FakeClock
) -> None:
    """``authpulse serve``'s /metrics and ``authpulse.metrics.prometheus`` use one catalogue."""
    from authpulse import Dashboard

    reg = CollectorRegistry()
    m = SessionManager(clock=clock, transport=idp.transport)
    try:
        prometheus.instrument_manager(m, reg, session_ids=True)
        dash = Dashboard(m)
        api = FakeAPI(idp)
        ok = m.create_session(
            "alice", authpulse.ClientCredentials(idp.token_url, "client", "secret")
        )
        ok.session.token()
        idp.set_outage(Fault(status=503))
        with pytest.raises(authpulse.AuthpulseError):
            ok.session.force_refresh()
        idp.set_outage(None)
        ok.session.force_refresh()
        api.fail_next(20)
        with ok.client(
            base_url=api.base_url, transport=api.transport, breaker=BreakerPolicy(minimum_calls=3)
        ) as client:
            for _ in range(4):
                with contextlib.suppress(authpulse.AuthpulseError, CircuitOpenError):
                    client.get("/items")
        m.tick()
        web, prom = dash.metrics(), exposition(reg)
        catalogue = {s.name + ("_total" if s.type == "counter" else "") for s in METRICS}
        assert _families(web) == _families(prom)
        assert set(_families(web)) <= catalogue
        assert {"authpulse_token_refreshes_total", "authpulse_sessions"} <= set(_families(web))
        for family in (
            "authpulse_token_refreshes_total",
            "authpulse_token_refresh_failures_total",
            "authpulse_token_retries_total",
            "authpulse_api_retries_total",
            "authpulse_breaker_transitions_total",
            "authpulse_sessions_by_health_band",
            "authpulse_session_health_score",
            "authpulse_manager_ticks_total",
        ):
            assert _samples(web, family) == _samples(prom, family), family
    finally:
        m.shutdown()

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authpulse import Band, HealthSignals, compute_health
from authpulse._core.health import RULES, band_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "health.md"


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (100, Band.EXCELLENT),
        (80, Band.EXCELLENT),
        (79, Band.GOOD),
        (60, Band.GOOD),
        (59, Band.FAIR),
        (40, Band.FAIR),
        (39, Band.POOR),
        (20, Band.POOR),
        (19, Band.CRITICAL),
        (0, Band.CRITICAL),
    ],
)
def test_band_edges(score: int, band: Band) -> None:
    assert band_for(score) is band


def test_perfect_session_scores_100_with_no_components() -> None:
    report = compute_health(HealthSignals())
    assert report.score == 100
    assert report.band is Band.EXCELLENT
    assert report.components == ()
    assert report.worst is None


def test_expired_token_costs_50_and_is_explained() -> None:
    report = compute_health(HealthSignals(freshness="expired"))
    assert report.score == 50
    assert report.band is Band.FAIR
    assert report.worst is not None
    assert report.worst.name == "token"
    assert "expired" in report.worst.reason


def test_refresh_failures_cost_15_each_capped_at_45() -> None:
    scores = [compute_health(HealthSignals(consecutive_refresh_failures=n)).score for n in range(6)]
    assert scores == [100, 85, 70, 55, 55, 55]


def test_penalties_add_up_and_clamp_at_zero() -> None:
    s = HealthSignals(
        freshness="expired",
        consecutive_refresh_failures=5,
        auth_state="login_required",
        breaker_state="open",
    )
    report = compute_health(s)
    assert report.score == 0
    assert report.band is Band.CRITICAL
    assert [c.penalty for c in report.components] == sorted(
        (c.penalty for c in report.components), reverse=True
    )


def test_requests_component_needs_five_requests() -> None:
    assert compute_health(HealthSignals(requests=4, success_rate=0.0)).score == 100
    assert compute_health(HealthSignals(requests=5, success_rate=0.5)).score == 80


def test_latency_component_against_baseline() -> None:
    def score(p95: float, requests: int = 20) -> int:
        return compute_health(
            HealthSignals(p95_latency=p95, baseline_latency=0.1, requests=requests)
        ).score

    assert [score(0.2), score(0.21), score(0.41), score(0.81)] == [100, 95, 90, 85]
    assert score(0.81, requests=19) == 100  # too few requests for a p95 to mean anything


signals = st.builds(
    HealthSignals,
    freshness=st.sampled_from(["fresh", "stale", "expired"]),
    has_token=st.booleans(),
    remaining_fraction=st.none() | st.floats(min_value=-1, max_value=2),
    consecutive_refresh_failures=st.integers(min_value=0, max_value=1000),
    auth_state=st.none() | st.sampled_from(["fresh", "degraded", "stuck", "closed", "x"]),
    requests=st.integers(min_value=0, max_value=10**6),
    success_rate=st.none() | st.floats(min_value=0, max_value=1),
    p95_latency=st.none() | st.floats(min_value=0, max_value=100),
    baseline_latency=st.none() | st.floats(min_value=0, max_value=100),
    heartbeat_ok=st.none() | st.booleans(),
    fallback_level=st.integers(min_value=0, max_value=5),
    breaker_state=st.none() | st.sampled_from(["closed", "open", "half_open"]),
    stale_served=st.integers(min_value=0, max_value=100),
    store_available=st.none() | st.booleans(),
    worker_errors=st.integers(min_value=0, max_value=3),
    refresh_token_remaining=st.none() | st.floats(min_value=-1e9, max_value=1e9),
    token_active=st.none() | st.booleans(),
)


@given(signals)
def test_score_is_bounded_explained_and_banded(s: HealthSignals) -> None:
    report = compute_health(s)
    assert 0 <= report.score <= 100
    assert report.band is band_for(report.score)
    assert report.score == max(0, 100 - sum(c.penalty for c in report.components))
    limits = {name: cap for name, _, cap in RULES}
    for c in report.components:
        assert 0 < c.penalty <= limits[c.name]
        assert c.reason


def test_docs_table_matches_rules() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, rule, cap in RULES:
        assert f"| `{name}` | {rule} | {cap} |" in text

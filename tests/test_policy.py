"""RefreshPolicy, schedule() and freshness(): band edges, clamp, jitter, skew."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support import make_token, rt_session
from authpulse import ConfigurationError, Freshness, RefreshPolicy, freshness
from authpulse._core.policy import schedule
from authpulse.testing import FakeClock, FakeIdP

NOW = 1_800_000_000.0


def test_defaults_are_documented_values() -> None:
    p = RefreshPolicy()
    assert p.margin == 300
    assert p.fraction == 0.10
    assert p.max_window_fraction == 0.5
    assert p.jitter == 0.10
    assert p.expiry_leeway == 5
    assert p.default_lifetime == 3600


class TestWindow:
    def test_margin_dominates_for_short_tokens(self) -> None:
        p = RefreshPolicy(jitter=0)
        assert p.window(1000) == 300  # max(300, 100), under the 500 clamp

    def test_fraction_dominates_for_long_tokens(self) -> None:
        p = RefreshPolicy(jitter=0)
        assert p.window(86400) == pytest.approx(8640)

    def test_clamped_to_half_the_lifetime(self) -> None:
        p = RefreshPolicy(jitter=0)
        assert p.window(60) == 30
        assert p.window(600) == 300  # 300 == 0.5 × 600: the clamp and the margin agree

    def test_zero_or_negative_lifetime(self) -> None:
        p = RefreshPolicy()
        assert p.window(0) == 0
        assert p.window(-10) == 0

    def test_jitter_stretches_the_window(self) -> None:
        p = RefreshPolicy(jitter=0.1)
        assert p.window(1000, u=0.0) == 300
        assert p.window(1000, u=0.5) == pytest.approx(315)
        assert p.window(1000, u=1.0) == pytest.approx(330)

    def test_jitter_draw_is_clamped_to_unit_interval(self) -> None:
        p = RefreshPolicy(jitter=0.1)
        assert p.window(1000, u=-5) == 300
        assert p.window(1000, u=7) == pytest.approx(330)

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        lifetime=st.floats(min_value=0, max_value=10**8),
        u=st.floats(min_value=0, max_value=1),
        jitter=st.floats(min_value=0, max_value=0.5),
    )
    def test_window_bounds(self, lifetime: float, u: float, jitter: float) -> None:
        p = RefreshPolicy(jitter=jitter)
        base = min(max(p.margin, p.fraction * lifetime), p.max_window_fraction * lifetime)
        w = p.window(lifetime, u)
        assert base <= w <= base * (1 + jitter) + 1e-9
        assert w <= lifetime * p.max_window_fraction * (1 + jitter) + 1e-9


class TestSchedule:
    def test_sixty_second_token_keeps_useful_life(self) -> None:
        """A 60 s token turns stale after 30 s, not at once (the window clamp)."""
        p = RefreshPolicy(jitter=0)
        t = make_token(NOW, lifetime=60)
        s = schedule(t, p)
        assert s.refresh_at == NOW + 30
        assert s.expires_at == NOW + 55  # leeway 5 s (≤ 10 % of 60 s = 6 s)
        assert freshness(t, NOW, p) is Freshness.FRESH
        assert freshness(t, NOW + 29.9, p) is Freshness.FRESH
        assert freshness(t, NOW + 30, p) is Freshness.STALE

    def test_leeway_is_at_most_ten_percent_of_lifetime(self) -> None:
        p = RefreshPolicy(jitter=0, expiry_leeway=5)
        t = make_token(NOW, lifetime=20)
        assert schedule(t, p).expires_at == NOW + 18
        t = make_token(NOW, lifetime=3600)
        assert schedule(t, p).expires_at == NOW + 3595

    def test_refresh_at_never_after_expiry(self) -> None:
        p = RefreshPolicy(jitter=0, margin=0, fraction=0, expiry_leeway=5)
        t = make_token(NOW, lifetime=100)
        s = schedule(t, p)
        assert s.refresh_at == s.expires_at == NOW + 95

    def test_skew_shifts_both_instants(self) -> None:
        """Token times are on the IdP clock; schedule() converts them to local time."""
        p = RefreshPolicy(jitter=0)
        t = make_token(NOW + 100, lifetime=1000)  # issued at IdP time NOW+100
        s0 = schedule(t, p)
        s = schedule(t, p, skew=100)  # the IdP clock runs 100 s ahead of ours
        assert s.refresh_at == s0.refresh_at - 100 == NOW + 700
        assert s.expires_at == s0.expires_at - 100 == NOW + 995

    def test_skew_changes_freshness(self) -> None:
        p = RefreshPolicy(jitter=0)
        t = make_token(NOW, lifetime=1000)
        assert freshness(t, NOW + 800, p) is Freshness.STALE
        assert freshness(t, NOW + 800, p, skew=-200) is Freshness.FRESH  # IdP behind us
        assert freshness(t, NOW + 800, p, skew=200) is Freshness.EXPIRED  # IdP ahead

    def test_jitter_moves_refresh_earlier_only(self) -> None:
        p = RefreshPolicy(jitter=0.5)
        t = make_token(NOW, lifetime=10_000)
        s0 = schedule(t, p, u=0)
        s1 = schedule(t, p, u=1)
        assert s1.refresh_at < s0.refresh_at
        assert s1.expires_at == s0.expires_at
        assert s0.refresh_at - s1.refresh_at == pytest.approx(0.5 * 1000)


class TestFreshnessEdges:
    """Band edges, exactly: refresh_at is STALE, expires_at is EXPIRED."""

    p = RefreshPolicy(jitter=0)
    t = make_token(NOW, lifetime=1000)  # refresh_at NOW+700, expires_at NOW+995

    @pytest.mark.parametrize(
        ("offset", "band"),
        [
            (-50, Freshness.FRESH),  # before issue: still fresh (clock behind)
            (0, Freshness.FRESH),
            (699.999, Freshness.FRESH),
            (700, Freshness.STALE),
            (994.999, Freshness.STALE),
            (995, Freshness.EXPIRED),
            (1000, Freshness.EXPIRED),
            (10**6, Freshness.EXPIRED),
        ],
    )
    def test_edges(self, offset: float, band: Freshness) -> None:
        assert freshness(self.t, NOW + offset, self.p) is band

    def test_no_token_is_expired(self) -> None:
        assert freshness(None, NOW, self.p) is Freshness.EXPIRED

    def test_zero_lifetime_token_is_expired_at_issue(self) -> None:
        t = make_token(NOW, lifetime=0)
        assert freshness(t, NOW, self.p) is Freshness.EXPIRED

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        lifetime=st.floats(min_value=0.001, max_value=10**7),
        offset=st.floats(min_value=-(10**7), max_value=10**7),
        u=st.floats(min_value=0, max_value=1),
        skew=st.floats(min_value=-(10**5), max_value=10**5),
    )
    def test_bands_are_ordered(self, lifetime: float, offset: float, u: float, skew: float) -> None:
        p = RefreshPolicy()
        t = make_token(NOW, lifetime=lifetime)
        s = schedule(t, p, skew=skew, u=u)
        assert s.refresh_at <= s.expires_at
        band = freshness(t, NOW + offset, p, skew=skew, u=u)
        now = NOW + offset
        expected = (
            Freshness.EXPIRED
            if now >= s.expires_at
            else Freshness.STALE
            if now >= s.refresh_at
            else Freshness.FRESH
        )
        assert band is expected


class TestStaleRetryDelay:
    def test_doubles_up_to_the_max(self) -> None:
        p = RefreshPolicy(retry_stale_after=2, retry_stale_max=60)
        assert [p.stale_retry_delay(n) for n in range(8)] == [0, 2, 4, 8, 16, 32, 60, 60]

    def test_huge_failure_counts_do_not_overflow(self) -> None:
        p = RefreshPolicy()
        assert p.stale_retry_delay(10**9) == p.retry_stale_max
        assert p.stale_retry_delay(-3) == 0


class TestValidation:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"margin": -1},
            {"margin": math.nan},
            {"margin": math.inf},
            {"fraction": -0.1},
            {"fraction": 1.5},
            {"max_window_fraction": 0},
            {"max_window_fraction": 0.95},
            {"jitter": -0.1},
            {"jitter": 0.6},
            {"jitter": math.nan},
            {"expiry_leeway": -1},
            {"default_lifetime": 0},
            {"default_lifetime": math.inf},
            {"retry_stale_after": 0},
            {"retry_stale_after": 10, "retry_stale_max": 5},
            {"margin": "300"},
            {"jitter": None},
            {"fraction": True},
        ],
        ids=repr,
    )
    def test_bad_values(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ConfigurationError) as info:
            RefreshPolicy(**kwargs)  # type: ignore[arg-type]
        assert "RefreshPolicy." in str(info.value)

    def test_edge_values_are_allowed(self) -> None:
        p = RefreshPolicy(
            margin=0, fraction=1, max_window_fraction=0.9, jitter=0.05, expiry_leeway=0
        )
        assert p.window(100) == 90
        assert p.window(100, u=1) == pytest.approx(90 * 1.05)
        q = RefreshPolicy(max_window_fraction=0.5, jitter=0.5)
        assert q.window(100, u=1) == pytest.approx(75)

    def test_policy_is_immutable(self) -> None:
        p = RefreshPolicy()
        with pytest.raises(AttributeError):
            p.margin = 5  # type: ignore[misc]
        assert p.margin == 300


class TestSeededJitter:
    @staticmethod
    def refresh_offsets(seed: int | None) -> list[float]:
        """Seconds from each new token's receipt to its refresh_at, for 5 tokens."""
        clock = FakeClock()
        idp = FakeIdP(clock=clock, access_ttl=3600)
        s = rt_session(idp, clock, policy=RefreshPolicy(jitter=0.5), seed=seed)
        offsets = []
        for _ in range(5):
            s.force_refresh()
            assert s._cur is not None
            offsets.append(s._cur.refresh_at - clock.now())
        s.close()
        return offsets

    def test_same_seed_same_schedule(self) -> None:
        a = self.refresh_offsets(7)
        assert a == self.refresh_offsets(7)
        assert len(set(a)) == 5  # one draw per token
        base = 3600 - 360  # window = max(300, 360), stretched by up to 50 %
        for off in a:
            assert base - 180 <= off <= base

    def test_different_seeds_differ(self) -> None:
        assert self.refresh_offsets(7) != self.refresh_offsets(8)

    def test_pure_schedule_is_a_function_of_the_draw(self) -> None:
        p = RefreshPolicy(jitter=0.5)
        t = make_token(NOW, lifetime=10_000)
        a = schedule(t, p, u=random.Random(1).random())
        assert a == schedule(t, p, u=random.Random(1).random())
        assert a != schedule(t, p, u=random.Random(2).random())


def test_jittered_window_can_never_cover_the_whole_lifetime() -> None:
    with pytest.raises(ConfigurationError, match="jitter"):
        RefreshPolicy(max_window_fraction=0.9, jitter=0.5)
    p = RefreshPolicy(max_window_fraction=0.8, jitter=0.1)
    assert p.window(100.0, u=1.0) <= 95.0

"""The health score: a pure function from signals to an explained 0–100 score.

Every point lost is attributed to a named component with a reason, so a
score is never a mystery. The table of rules is in ``docs/health.md`` and
in :data:`RULES`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .policy import RefreshPolicy, freshness, schedule
from .tokens import TokenSet

__all__ = [
    "RULES",
    "Band",
    "HealthComponent",
    "HealthReport",
    "HealthSignals",
    "band_for",
    "compute_health",
    "refresh_token_remaining",
    "stored_health",
]


class Band(enum.StrEnum):
    """The five bands of the score."""

    EXCELLENT = "excellent"  #: 80–100
    GOOD = "good"  #: 60–79
    FAIR = "fair"  #: 40–59
    POOR = "poor"  #: 20–39
    CRITICAL = "critical"  #: 0–19


def band_for(score: int) -> Band:
    """The band a score falls in."""
    if score >= 80:
        return Band.EXCELLENT
    if score >= 60:
        return Band.GOOD
    if score >= 40:
        return Band.FAIR
    if score >= 20:
        return Band.POOR
    return Band.CRITICAL


@dataclass(frozen=True, slots=True)
class HealthSignals:
    """What the score is computed from. ``None`` means "not known": no penalty.

    Shells gather these; :func:`compute_health` never reads anything else.
    """

    freshness: str = "fresh"  #: "fresh", "stale" or "expired" (see Freshness)
    has_token: bool = True
    remaining_fraction: float | None = None  #: remaining lifetime / lifetime, 0..1
    consecutive_refresh_failures: int = 0
    seconds_since_refresh_failure: float | None = None
    auth_state: str | None = None  #: state machine state name
    requests: int = 0  #: requests in the rolling window
    success_rate: float | None = None  #: 0..1 over the rolling window
    p95_latency: float | None = None  #: seconds
    baseline_latency: float | None = None  #: seconds
    heartbeat_ok: bool | None = None
    fallback_level: int = 0  #: 0 = primary source
    breaker_state: str | None = None  #: "closed", "open", "half_open"
    stale_served: int = 0  #: stale cache responses served in the window
    store_available: bool | None = None
    worker_errors: int = 0  #: ticks that raised, recently
    #: ``False``: a token set is stored but cannot be read (wrong key, corrupt)
    token_readable: bool | None = None
    #: seconds until the refresh token expires (``None``: the IdP did not say)
    refresh_token_remaining: float | None = None
    #: what the IdP's introspection endpoint said of the access token at the last probe
    token_active: bool | None = None


@dataclass(frozen=True, slots=True)
class HealthComponent:
    """One reason the score is lower than 100."""

    name: str
    penalty: int
    reason: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A score from 0 to 100, its band, and what cost the missing points."""

    score: int
    band: Band
    components: tuple[HealthComponent, ...] = ()
    signals: HealthSignals = field(default_factory=HealthSignals)

    @property
    def worst(self) -> HealthComponent | None:
        """The component that costs the most points, if any."""
        return max(self.components, key=lambda c: c.penalty, default=None)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (signals included)."""
        from dataclasses import asdict

        return {
            "score": self.score,
            "band": self.band.value,
            "components": [asdict(c) for c in self.components],
            "signals": asdict(self.signals),
        }


#: (component, rule, maximum penalty) — the documented formula.
RULES: tuple[tuple[str, str, int], ...] = (
    (
        "token",
        "no token, an unreadable stored token or expired: 50; stale (refresh due): "
        "5 + 10 × (1 − remaining fraction × 2), at least 5",
        50,
    ),
    ("refresh", "15 per consecutive refresh failure, at most 45", 45),
    ("state", "degraded 10, refreshing-stuck 20, fallback 10, login required 60, closed 100", 100),
    ("requests", "with at least 5 requests in the window: 40 × failure rate", 40),
    (
        "latency",
        "with at least 20 requests in the window: p95 over 2× baseline: 5; over 4×: 10; "
        "over 8×: 15",
        15,
    ),
    ("heartbeat", "last heartbeat failed: 15", 15),
    ("fallback", "10 per fallback level in use, at most 25", 25),
    ("breaker", "open: 25; half-open: 10", 25),
    ("cache", "stale responses served in the window: 5", 5),
    ("store", "shared store unavailable: 10", 10),
    ("worker", "a maintenance tick failed recently: 5", 5),
    (
        "refresh_token",
        "refresh token expired: 40; expires within 1 day: 20; within 2 days: 10; within 7 days: 5",
        40,
    ),
    ("introspection", "the IdP says the token is inactive: 30", 30),
)

_DAY = 86400.0
#: (seconds left below which, penalty) for the refresh token, tightest first
_REFRESH_TOKEN_STEPS = ((0.0, 40), (_DAY, 20), (2 * _DAY, 10), (7 * _DAY, 5))


def _in_words(seconds: float) -> str:
    if seconds >= _DAY:
        return f"{seconds / _DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(seconds, 0.0) / 60:.0f} minutes"


def _refresh_token_part(left: float) -> HealthComponent | None:
    for limit, penalty in _REFRESH_TOKEN_STEPS:
        if left <= limit:
            why = (
                "the refresh token has expired: a new login is needed"
                if limit == 0.0
                else f"the refresh token expires in {_in_words(left)}"
            )
            return HealthComponent("refresh_token", penalty, why)
    return None


_STATE_PENALTY = {
    "degraded": (10, "refresh is failing; the current token is still valid"),
    "stuck": (20, "a state has been held longer than its limit"),
    "fallback": (10, "a fallback source is in use"),
    "login_required": (60, "a new login is needed"),
    "closed": (100, "the session is closed"),
}


def compute_health(s: HealthSignals) -> HealthReport:
    """The score for ``s``. Pure and cheap (no allocation beyond the report)."""
    parts: list[HealthComponent] = []
    add = parts.append

    if s.token_readable is False:
        add(HealthComponent("token", 50, "the stored token set cannot be read"))
    elif not s.has_token:
        add(HealthComponent("token", 50, "no token yet"))
    elif s.freshness == "expired":
        add(HealthComponent("token", 50, "the access token has expired"))
    elif s.freshness == "stale":
        rem = 0.0 if s.remaining_fraction is None else min(max(s.remaining_fraction, 0.0), 1.0)
        p = max(5, round(5 + 10 * (1 - rem * 2)))
        add(HealthComponent("token", p, f"refresh due: {rem:.0%} of the token's lifetime left"))

    if s.consecutive_refresh_failures > 0:
        n = s.consecutive_refresh_failures
        add(
            HealthComponent(
                "refresh",
                min(15 * n, 45),
                f"{n} consecutive refresh failure{'s' if n != 1 else ''}",
            )
        )

    if s.auth_state in _STATE_PENALTY:
        p, why = _STATE_PENALTY[s.auth_state]
        add(HealthComponent("state", p, why))

    if s.requests >= 5 and s.success_rate is not None and s.success_rate < 1.0:
        fail = 1.0 - max(s.success_rate, 0.0)
        p = round(40 * fail)
        if p:
            add(HealthComponent("requests", p, f"{fail:.0%} of recent requests failed"))

    if (
        s.requests >= 20
        and s.p95_latency is not None
        and s.baseline_latency
        and s.baseline_latency > 0
    ):
        ratio = s.p95_latency / s.baseline_latency
        p = 15 if ratio > 8 else 10 if ratio > 4 else 5 if ratio > 2 else 0
        if p:
            add(HealthComponent("latency", p, f"p95 latency is {ratio:.1f}× the baseline"))

    if s.heartbeat_ok is False:
        add(HealthComponent("heartbeat", 15, "the last heartbeat failed"))

    if s.fallback_level > 0:
        add(
            HealthComponent(
                "fallback",
                min(10 * s.fallback_level, 25),
                f"fallback level {s.fallback_level} in use",
            )
        )

    if s.breaker_state == "open":
        add(HealthComponent("breaker", 25, "circuit breaker is open"))
    elif s.breaker_state == "half_open":
        add(HealthComponent("breaker", 10, "circuit breaker is half-open"))

    if s.stale_served > 0:
        add(HealthComponent("cache", 5, f"{s.stale_served} stale cached responses served"))

    if s.store_available is False:
        add(HealthComponent("store", 10, "the shared store is unavailable"))

    if s.worker_errors > 0:
        add(HealthComponent("worker", 5, "a maintenance tick failed recently"))

    if s.refresh_token_remaining is not None:
        part = _refresh_token_part(s.refresh_token_remaining)
        if part is not None:
            add(part)

    if s.token_active is False:
        add(HealthComponent("introspection", 30, "the IdP says the token is inactive"))

    score = max(0, 100 - sum(c.penalty for c in parts))
    parts.sort(key=lambda c: -c.penalty)
    return HealthReport(score=score, band=band_for(score), components=tuple(parts), signals=s)


def stored_health(
    *,
    auth_state: str | None,
    token: TokenSet | None,
    now: float,
    policy: RefreshPolicy,
    skew: float = 0.0,
    closed: bool = False,
    readable: bool = True,
) -> HealthReport:
    """The health estimate of a session known only from the store.

    The one estimate behind :meth:`SessionManager.health <authpulse.SessionManager.health>`
    for a session not loaded in the process, the web dashboard, ``authpulse
    health`` and ``authpulse sessions export``. It uses what the store
    knows: whether the session is ``closed``, its last persisted
    ``auth_state``, and the stored ``token`` (with its ``skew``) at local
    time ``now``; request, heartbeat, breaker and worker signals are unknown
    and cost nothing. ``readable=False`` means a token set is stored but
    cannot be read (encrypted with a key this process lacks, or corrupt):
    it costs the token's 50 points, and is never reported as fresh.
    """
    state = "closed" if closed else auth_state
    if not readable:
        return compute_health(
            HealthSignals(
                freshness="expired", has_token=False, auth_state=state, token_readable=False
            )
        )
    if token is None:
        return compute_health(HealthSignals(freshness="expired", has_token=False, auth_state=state))
    expires_at = schedule(token, policy, skew=skew).expires_at
    life = token.lifetime
    return compute_health(
        HealthSignals(
            freshness=freshness(token, now, policy, skew=skew).value,
            has_token=True,
            remaining_fraction=max(expires_at - now, 0.0) / life if life > 0 else 0.0,
            auth_state=state,
            refresh_token_remaining=refresh_token_remaining(token, expires_at, now),
        )
    )


def refresh_token_remaining(token: TokenSet, expires_local: float, now: float) -> float | None:
    """Seconds from local time ``now`` until ``token``'s refresh token expires
    (``None`` if the IdP did not say), given the access token's local expiry
    ``expires_local``: both expiries are on the IdP's clock, so their
    difference carries over."""
    if token.refresh_expires_at is None or token.refresh_token is None:
        return None
    return token.refresh_expires_at - token.expires_at + expires_local - now


# The public names defined here show the module they are imported from.
for _public in (
    Band,
    HealthComponent,
    HealthReport,
    HealthSignals,
    compute_health,
):
    _public.__module__ = "authpulse"
del _public

"""Refresh policy and token freshness: pure functions of (token, now, policy)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .errors import ConfigurationError
from .tokens import TokenSet

__all__ = ["Freshness", "RefreshPolicy", "Schedule", "freshness", "schedule"]


class Freshness(enum.StrEnum):
    """How usable a token is at a given moment."""

    FRESH = "fresh"  #: valid and outside the refresh window
    STALE = "stale"  #: still valid, inside the refresh window: refresh in the background
    EXPIRED = "expired"  #: not valid (or no token): callers must wait for a new one


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """When to refresh.

    The refresh window (time before expiry when a token turns STALE) is
    ``max(margin, fraction × lifetime)``, clamped to at most
    ``max_window_fraction × lifetime`` so a short-lived token keeps useful
    life (a 60 s token turns stale after 30 s, not immediately). The window
    is then stretched by ``jitter × window × u`` with ``u`` drawn once per
    token in ``[0, 1)``, so a fleet does not refresh in lockstep.

    ``expiry_leeway`` treats a token as expired this many seconds early (at
    most 10 % of its lifetime), to cover the flight time of the request that
    carries it.
    """

    margin: float = 300.0
    fraction: float = 0.10
    max_window_fraction: float = 0.5
    jitter: float = 0.10
    expiry_leeway: float = 5.0
    default_lifetime: float = 3600.0
    #: after a failed background refresh, wait this long (doubling per
    #: consecutive failure, up to ``retry_stale_max``) before trying again
    retry_stale_after: float = 2.0
    retry_stale_max: float = 60.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"RefreshPolicy.{name} must be a number: {value!r}")
        checks = {
            "margin": self.margin >= 0,
            "fraction": 0 <= self.fraction <= 1,
            "max_window_fraction": 0 < self.max_window_fraction <= 0.9,
            "jitter": 0 <= self.jitter <= 0.5
            and self.max_window_fraction * (1 + self.jitter) <= 0.95,
            "expiry_leeway": self.expiry_leeway >= 0,
            "default_lifetime": self.default_lifetime > 0,
            "retry_stale_after": self.retry_stale_after > 0,
            "retry_stale_max": self.retry_stale_max >= self.retry_stale_after,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise ConfigurationError(f"RefreshPolicy.{name} has an invalid value: {value!r}")

    def window(self, lifetime: float, u: float = 0.0) -> float:
        """Seconds before expiry at which a token of ``lifetime`` turns STALE."""
        lifetime = max(lifetime, 0.0)
        base = min(max(self.margin, self.fraction * lifetime), self.max_window_fraction * lifetime)
        return base * (1.0 + self.jitter * min(max(u, 0.0), 1.0))

    def stale_retry_delay(self, consecutive_failures: int) -> float:
        """Back-off before the next background refresh after failures."""
        if consecutive_failures <= 0:
            return 0.0
        exp = min(consecutive_failures - 1, 30)
        return float(min(self.retry_stale_after * (2.0**exp), self.retry_stale_max))


@dataclass(frozen=True, slots=True)
class Schedule:
    """The two instants that matter for a token, on the *local* clock."""

    refresh_at: float  #: the token turns STALE at this local time
    expires_at: float  #: the token turns EXPIRED at this local time


def schedule(
    token: TokenSet, policy: RefreshPolicy, *, skew: float = 0.0, u: float = 0.0
) -> Schedule:
    """When ``token`` turns stale and expired, in local time.

    ``skew`` is ``IdP clock - local clock``; ``u`` is the token's jitter draw.
    """
    leeway = min(policy.expiry_leeway, 0.1 * token.lifetime)
    expires_local = token.expires_at - skew - leeway
    refresh_local = token.expires_at - skew - policy.window(token.lifetime, u)
    return Schedule(refresh_at=min(refresh_local, expires_local), expires_at=expires_local)


def freshness(
    token: TokenSet | None, now: float, policy: RefreshPolicy, *, skew: float = 0.0, u: float = 0.0
) -> Freshness:
    """FRESH, STALE or EXPIRED for ``token`` at local time ``now``."""
    if token is None:
        return Freshness.EXPIRED
    s = schedule(token, policy, skew=skew, u=u)
    if now >= s.expires_at:
        return Freshness.EXPIRED
    if now >= s.refresh_at:
        return Freshness.STALE
    return Freshness.FRESH


# The public names defined here show the module they are imported from.
for _public in (
    Freshness,
    RefreshPolicy,
    freshness,
):
    _public.__module__ = "authpulse"
del _public

"""The decisions about a stored token set, pure functions of what the store
holds: adopt it or refresh, which refresh token is the live one, what an
unreadable record means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from .._core.errors import LoginRequiredError
from .._core.policy import Freshness, RefreshPolicy, freshness
from .._core.tokens import TokenSet
from .._stores.base import (
    CorruptRecordError,
    StoredToken,
    StoreError,
    StoreUnavailableError,
)
from .._stores.crypto import DecryptionError
from .fetch import Fetched

if TYPE_CHECKING:
    pass

__all__ = [
    "REVOKED",
    "REVOKED_REASON",
    "Outcome",
    "Reason",
    "access_of",
    "afresh_reason",
    "defer_local_refresh",
    "is_revoked",
    "login_required_after_revocation",
    "login_required_for",
    "newest",
    "raise_if_unreadable",
    "revoked_token_set",
    "stored_is_usable",
]

Reason = Literal["expired", "stale", "forced", "rejected", "initial"]


def stored_is_usable(
    stored: StoredToken | None,
    *,
    reason: Reason,
    known_version: int | None,
    rejected_access: SecretStr | None,
    now: float,
    policy: RefreshPolicy,
    held_access: SecretStr | None = None,
) -> bool:
    """Whether the stored token set can be adopted instead of refreshing.

    It must not be due (FRESH by our policy). For a forced refresh it must
    also be newer than what we last saw (a peer refreshed after we asked);
    for a STALE refresh it must not be the set we already hold
    (``held_access``: our schedule, jitter included, says that one is due);
    after a 401 it must not be the token the API rejected. Tokens stay
    wrapped, so no frame of a refresh holds one in clear.
    """
    if stored is None:
        return False
    if freshness(stored.token, now, policy, skew=stored.skew) is not Freshness.FRESH:
        return False
    if reason == "forced" and stored.version == known_version:
        return False
    if reason == "stale" and held_access is not None and stored.token.access_token == held_access:
        return False
    return not (rejected_access is not None and stored.token.access_token == rejected_access)


def access_of(token: TokenSet | None) -> SecretStr | None:
    return token.access_token if token is not None else None


def newest(a: TokenSet | None, b: TokenSet | None) -> TokenSet | None:
    """The more recently issued of two token sets (its refresh token is the live one)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a.issued_at >= b.issued_at else b


@dataclass
class Outcome:
    fetched: Fetched
    adopted: bool
    version: int | None
    #: the unusable stored record this outcome replaced (or tried to: ``version``
    #: is ``None`` when the write did not reach the store)
    discarded: CorruptRecordError | None = None


def afresh_reason(exc: CorruptRecordError) -> str:
    """Why a source is asked afresh: the record's problem, never its contents."""
    return f"the stored token set is unusable ({exc.reason})"


def login_required_for(exc: CorruptRecordError) -> LoginRequiredError:
    """The end of a source that cannot start afresh (raised ``from None``: the
    store's error and its frames, which held the record, are not chained)."""
    return LoginRequiredError(
        None,
        reason=f"{afresh_reason(exc)} and the refresh token it held is lost; sign in again",
    )


def raise_if_unreadable(exc: StoreError) -> None:
    """A stored set encrypted with keys we lack is no outage but a
    configuration error: refreshing alone, maybe with an already rotated
    refresh token, could get the grant revoked, and overwriting it would
    destroy what correctly configured peers can read. The refresh fails
    with the store's error."""
    if isinstance(exc, DecryptionError):
        raise exc


def defer_local_refresh(
    reason: Reason, local: TokenSet | None, cause: BaseException | None
) -> None:
    """Raise instead of refreshing process-locally while our token is still valid.

    Peers that cannot reach the store either would each refresh the same
    single-use refresh token, and the IdP would revoke the grant. A STALE
    token is still good: keep it, and let the session retry later.
    """
    if reason == "stale" and local is not None:
        raise StoreUnavailableError(
            "the shared store is unavailable; the still-valid token is kept and the "
            "refresh will be retried"
        ) from cause


#: the access token of the set that replaces a revoked session's in its store
REVOKED = "revoked"


def revoked_token_set(now: float) -> TokenSet:
    """What the store holds for a revoked session: expired at ``now``, with no
    refresh token, so that no peer sharing the store uses or refreshes it."""
    return TokenSet(access_token=SecretStr(REVOKED), issued_at=now, expires_at=now)


def is_revoked(token: TokenSet) -> bool:
    """Whether ``token`` is the set a revocation left in the store."""
    return token.refresh_token is None and token.access_token.get_secret_value() == REVOKED


#: why a peer of a revoked session is asked afresh
REVOKED_REASON = "the grant was revoked by a session sharing the store"


def login_required_after_revocation() -> LoginRequiredError:
    return LoginRequiredError(None, reason=f"{REVOKED_REASON}; sign in again")

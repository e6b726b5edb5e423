"""Refresh-token expiry: parsed, kept across refreshes and in stored records,
and counted by health before it bites."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authpulse import (
    MemoryStore,
    OAuthError,
    RefreshTokenGrant,
    Session,
    TokenResponseError,
    TokenSet,
    compute_health,
    parse_token_response,
)
from authpulse._core.health import HealthSignals, stored_health
from authpulse._core.policy import RefreshPolicy
from authpulse._stores.crypto import decode_token_set, encode_token_set
from authpulse.testing import FakeClock, FakeIdP

DAY = 86400.0


def answer(**fields: object) -> bytes:
    return json.dumps({"access_token": "at", "expires_in": 300, **fields}).encode()


class TestParsing:
    @pytest.mark.parametrize("name", ["refresh_expires_in", "refresh_token_expires_in"])
    def test_either_name_is_read(self, name: str) -> None:
        token = parse_token_response(200, answer(refresh_token="rt", **{name: 7200}), now=1000.0)
        assert token.refresh_expires_at == 8200.0

    def test_absent_or_zero_means_unknown(self) -> None:
        assert (
            parse_token_response(200, answer(refresh_token="rt"), now=0).refresh_expires_at is None
        )
        zero = answer(refresh_token="rt", refresh_expires_in=0)
        assert parse_token_response(200, zero, now=0).refresh_expires_at is None

    def test_without_a_refresh_token_there_is_no_expiry(self) -> None:
        token = parse_token_response(200, answer(refresh_expires_in=60), now=0)
        assert token.refresh_expires_at is None

    @pytest.mark.parametrize("bad", ["soon", -5, True, 1e300, [1]])
    def test_a_bad_value_is_a_typed_error_naming_the_field(self, bad: object) -> None:
        with pytest.raises(TokenResponseError, match="refresh_token_expires_in"):
            parse_token_response(
                200, answer(refresh_token="rt", refresh_token_expires_in=bad), now=0
            )

    @given(st.integers(min_value=1, max_value=366 * 86400))
    def test_any_positive_lifetime(self, seconds: int) -> None:
        token = parse_token_response(
            200, answer(refresh_token="rt", refresh_expires_in=str(seconds)), now=5.0
        )
        assert token.refresh_expires_at == 5.0 + seconds


class TestKept:
    def test_across_refreshes_and_rotations(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, access_ttl=600, refresh_ttl=30 * DAY)
        session = Session(
            RefreshTokenGrant(
                idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
            ),
            clock=clock,
            transport=idp.transport,
        )
        first = session.force_refresh()
        assert first.refresh_expires_at == clock.now() + 30 * DAY
        idp.refresh_ttl = None  # the next answers do not say: the known expiry stays
        clock.advance(DAY)
        second = session.force_refresh()
        assert second.refresh_token != first.refresh_token
        assert second.refresh_expires_at == first.refresh_expires_at

    def test_an_expired_refresh_token_is_refused_by_the_fake(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, access_ttl=600, refresh_ttl=DAY)
        grant = RefreshTokenGrant(
            idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
        )
        session = Session(grant, clock=clock, transport=idp.transport)
        clock.advance(DAY + 1)
        with pytest.raises(OAuthError, match="invalid_grant"):
            session.token()

    def test_in_stored_records(self, clock: FakeClock) -> None:
        store = MemoryStore()
        token = TokenSet(
            access_token="at",  # type: ignore[arg-type]
            refresh_token="rt",  # type: ignore[arg-type]
            issued_at=0,
            expires_at=60,
            refresh_expires_at=DAY,
        )
        store.put_token("k", token)
        stored = store.get_token("k")
        assert stored is not None
        assert stored.token.refresh_expires_at == DAY
        blob = encode_token_set(token, None)
        assert decode_token_set(blob, None, session_id="k").refresh_expires_at == DAY

    def test_a_record_written_before_the_field_still_loads(self) -> None:
        old = {
            "format": 1,
            "access_token": "at",
            "token_type": "Bearer",
            "refresh_token": "rt",
            "id_token": None,
            "scope": None,
            "issued_at": 0.0,
            "expires_at": 60.0,
            "expires_at_source": "expires_in",
        }
        token = decode_token_set(json.dumps(old).encode(), None, session_id="k")
        assert token.refresh_expires_at is None
        # and a set without an expiry is written exactly as before
        no_expiry = token.model_copy()
        assert "refresh_expires_at" not in json.loads(encode_token_set(no_expiry, None))


class TestHealth:
    @pytest.mark.parametrize(
        ("left", "penalty"),
        [(30 * DAY, 0), (6 * DAY, 5), (2 * DAY - 1, 10), (3600.0, 20), (0.0, 40), (-5.0, 40)],
    )
    def test_thresholds(self, left: float, penalty: int) -> None:
        report = compute_health(HealthSignals(refresh_token_remaining=left))
        parts = [c for c in report.components if c.name == "refresh_token"]
        assert sum(c.penalty for c in parts) == penalty
        assert report.score == 100 - penalty

    def test_a_session_counts_it_before_it_bites(self, clock: FakeClock) -> None:
        idp = FakeIdP(clock=clock, access_ttl=600, refresh_ttl=10 * DAY)
        session = Session(
            RefreshTokenGrant(
                idp.token_url, "client", "secret", refresh_token=idp.issue_refresh_token()
            ),
            clock=clock,
            transport=idp.transport,
        )
        session.token()
        assert not [c for c in session.health().components if c.name == "refresh_token"]
        idp.refresh_ttl = None  # an absolute grant lifetime: later answers do not restate it
        clock.advance(8.5 * DAY)
        session.token()  # the access token is refreshed; the refresh token's expiry stays
        worst = session.health().worst
        assert worst is not None
        assert worst.name == "refresh_token"
        assert worst.reason == "the refresh token expires in 1.5 days"
        assert worst.penalty == 10

    def test_the_stored_estimate_counts_it(self) -> None:
        token = TokenSet(
            access_token="at",  # type: ignore[arg-type]
            refresh_token="rt",  # type: ignore[arg-type]
            issued_at=0,
            expires_at=3600,
            refresh_expires_at=DAY + 100,
        )
        report = stored_health(auth_state=None, token=token, now=200.0, policy=RefreshPolicy())
        assert [c.penalty for c in report.components if c.name == "refresh_token"] == [20]

"""Typed session events: one vocabulary from the emitters to the bus, journal, machine, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import authpulse
from authpulse import (
    ApiEventKind,
    AuthEvent,
    CallableSource,
    ClientCredentials,
    EventKind,
    LoginRequiredError,
    OAuthError,
    Session,
    SessionEvent,
    SessionEventKind,
    SessionManager,
    read_journal,
)
from authpulse._core.signals import api_kind, journal_entry
from authpulse._core.state import auth_event_for
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault


class AppLoginNeededError(LoginRequiredError):
    """An application's own 'log in again' error (a LoginRequiredError by class)."""


def _session(idp: FakeIdP, clock: FakeClock) -> Session:
    return Session(
        ClientCredentials(idp.token_url, "client", "secret"),
        clock=clock,
        transport=idp.transport,
    )


def test_hooks_get_typed_events_and_listeners_keep_their_strings(
    idp: FakeIdP, clock: FakeClock
) -> None:
    s = _session(idp, clock)
    typed: list[SessionEvent] = []
    legacy: list[tuple[str, dict[str, Any]]] = []
    s.add_event_hook(typed.append)
    s.add_listener(lambda kind, fields: legacy.append((kind, fields)))
    s.token()
    idp.fail_next(5, Fault(status=400, body={"error": "invalid_client"}))
    with pytest.raises(OAuthError):
        s.force_refresh()
    kinds = [e.kind for e in typed]
    assert kinds[:2] == [SessionEventKind.REFRESH_STARTED, SessionEventKind.REFRESHED]
    assert SessionEventKind.REFRESH_FAILED in kinds
    failed = next(e for e in typed if e.kind is SessionEventKind.REFRESH_FAILED)
    assert failed.error is OAuthError
    assert failed.failed_with(authpulse.TokenError)
    assert not failed.failed_with(LoginRequiredError)
    assert failed.fields["error"] == "OAuthError"  # the journalled field is unchanged
    with pytest.raises(TypeError):
        failed.fields["error"] = "x"  # type: ignore[index]
    # the same events, as (kind value, fields) for add_listener
    assert [k for k, _ in legacy] == [e.kind.value for e in typed]
    assert all(type(k) is str for k, _ in legacy)
    assert [f for _, f in legacy] == [dict(e.fields) for e in typed]
    assert len(s.event_hooks) == 2


def test_an_event_hook_must_be_callable(idp: FakeIdP, clock: FakeClock) -> None:
    with pytest.raises(authpulse.ConfigurationError):
        _session(idp, clock).add_event_hook("print")  # type: ignore[arg-type]


def test_login_required_is_matched_by_class_not_by_name(clock: FakeClock) -> None:
    """A subclass of LoginRequiredError moves the machine to login_required."""

    def fn(current: object) -> authpulse.TokenSet:
        raise AppLoginNeededError("the user must log in again")

    m = SessionManager(clock=clock)
    ms = m.create_session("alice", CallableSource(fn))
    with pytest.raises(AppLoginNeededError):
        ms.session.token()
    assert ms.auth_state is authpulse.AuthState.LOGIN_REQUIRED
    failed = [e for e in m.timeline(ms.id) if e.kind is EventKind.REFRESH_FAILED]
    assert failed
    assert failed[-1].fields["error"] == "AppLoginNeededError"


def test_api_client_events_arrive_typed(idp: FakeIdP, api: FakeAPI, clock: FakeClock) -> None:
    s = _session(idp, clock)
    typed: list[SessionEvent] = []
    s.add_event_hook(typed.append)
    with authpulse.Client(s, base_url=api.base_url, transport=api.transport) as c:
        api.fail_next(2, Fault(status=503))
        assert c.get("/y").status_code == 200
    retries = [e for e in typed if e.kind is SessionEventKind.API_RETRY_SCHEDULED]
    assert len(retries) == 2
    assert str(retries[0].fields["upstream"]).startswith("http")
    assert s.api_retries == 2


def test_every_api_kind_has_a_session_kind() -> None:
    for kind in ApiEventKind:
        event = SessionEvent.from_api(kind, {})
        assert event.kind.value == f"api_{kind.value}"
        assert api_kind(kind.value) is kind
    assert api_kind("not_a_kind") is None
    assert api_kind(3) is None


def test_the_machine_reads_the_event_table() -> None:
    def ev(kind: SessionEventKind, error: type[BaseException] | None = None, **f: Any) -> Any:
        return auth_event_for(SessionEvent.of(kind, f, error))

    assert ev(SessionEventKind.REFRESH_STARTED) is AuthEvent.REFRESH_STARTED
    assert ev(SessionEventKind.REFRESHED, level=0) is AuthEvent.REFRESH_SUCCEEDED
    assert ev(SessionEventKind.REFRESHED, level=1) is AuthEvent.FALLBACK_USED
    assert ev(SessionEventKind.REFRESH_FAILED, OAuthError) is AuthEvent.REFRESH_FAILED
    assert ev(SessionEventKind.REFRESH_FAILED, AppLoginNeededError) is AuthEvent.LOGIN_NEEDED
    assert ev(SessionEventKind.PRIMARY_RECOVERED) is AuthEvent.PRIMARY_RECOVERED
    assert ev(SessionEventKind.LOGIN_COMPLETED) is AuthEvent.LOGIN_COMPLETED
    assert ev(SessionEventKind.RETRY) is None
    assert ev(SessionEventKind.API_GAVE_UP) is None


def test_journal_entries_keep_the_old_kinds_and_fields() -> None:
    event = SessionEvent.of(SessionEventKind.PRIMARY_RECOVERED, {"previous_level": 1})
    assert journal_entry(event) == (
        EventKind.RECOVERED,
        {"reason": "primary source works again", "previous_level": 1},
    )
    assert journal_entry(SessionEvent.of(SessionEventKind.RETRY, {})) == (
        EventKind.RETRY_SCHEDULED,
        {},
    )
    assert journal_entry(SessionEvent.of(SessionEventKind.REFRESH_STARTED, {})) is None


#: a journal line as written before session events were typed
OLD_LINE = (
    '{"kind":"token_refreshed","at":1800000000.0,"session_id":"s-1","owner":"alice",'
    '"labels":["session","active"],"fields":{"reason":"initial","generation":1,'
    '"expires_in":3600.0,"rotated":false,"level":0,"adopted":false}}'
)


def test_an_old_journal_line_reads_and_matches_what_is_written_now(
    tmp_path: Path, idp: FakeIdP, clock: FakeClock
) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(OLD_LINE + "\n", encoding="utf-8")
    (event,) = read_journal(old)
    assert event.kind is EventKind.TOKEN_REFRESHED
    assert event.fields["reason"] == "initial"
    assert json.loads(event.to_json()) == json.loads(OLD_LINE)

    path = tmp_path / "new.jsonl"
    m = SessionManager(clock=clock, transport=idp.transport, journal=str(path))
    ms = m.create_session("alice", ClientCredentials(idp.token_url, "client", "secret"))
    ms.session.token()
    m.shutdown()
    written = [e for e in read_journal(path) if e.kind is EventKind.TOKEN_REFRESHED]
    assert written
    assert set(written[0].fields) == set(event.fields)
    assert written[0].labels == event.labels

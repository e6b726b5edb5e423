"""The ``authpulse`` command: every subcommand, in-process with ``main([...])``,
against SQLite stores populated through a SessionManager; and a smoke test of
the installed console script."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import authpulse
from _redis import free_port
from authpulse import SessionManager, SessionStatus
from authpulse._surfaces.cli import _FAULT_NAMES, main
from authpulse._surfaces.demo import FAULTS
from authpulse.testing import FakeClock, FakeIdP, LoopbackServer

DAY = 86400.0
CLIENT_ID = "cli-client"
CLIENT_SECRET = "cli-S3CRET-client-secret-value"


@dataclass
class Populated:
    """A SQLite store with sessions of every kind, and every secret it holds."""

    path: Path
    url: str
    ids: dict[str, str]
    secrets: list[str] = field(default_factory=list)
    idp: FakeIdP | None = None

    def store(self) -> authpulse.SessionStore:
        return authpulse.open_store(self.url)

    def record(self, sid: str) -> authpulse.SessionRecord:
        store = self.store()
        try:
            record = store.get(sid)
        finally:
            store.close()
        assert record is not None
        return record

    def count(self) -> int:
        store = self.store()
        try:
            return len(store.query())
        finally:
            store.close()

    def assert_no_secrets(self, *texts: str) -> None:
        for text in texts:
            for secret in self.secrets:
                assert secret not in text


def populate(path: Path, idp: FakeIdP, clock: FakeClock) -> Populated:
    """Sessions created over three days of ``clock`` (which ends near real now)."""
    url = f"sqlite:///{path}"
    m = SessionManager(authpulse.open_store(url, clock=clock), clock=clock, transport=idp.transport)

    def grant() -> authpulse.RefreshTokenGrant:
        return authpulse.RefreshTokenGrant(
            idp.token_url,
            CLIENT_ID,
            CLIENT_SECRET,
            refresh_token=idp.issue_refresh_token(CLIENT_ID),
        )

    old = m.create_session(
        "alice",
        grant(),
        session_id="old-active",
        metadata={"device": "ios", "custom": {"plan": "[bold]pro[/bold]"}},
        labels=["slack"],
    )
    old.session.token()
    m.close(m.create_session("bob", grant(), kind="integration", session_id="old-done").id)
    m.pause(m.create_session("alice", grant(), session_id="old-paused").id, "lunch")
    clock.advance(2 * DAY)
    m.create_session("carol", grant(), kind="system", session_id="new-active").session.token()
    m.cancel(m.create_session("alice", grant(), session_id="new-cancelled").id, "user left")
    idp.access_ttl = 60.0
    m.create_session("dave", grant(), session_id="expired").session.token()
    idp.access_ttl = 10 * DAY
    clock.advance(DAY - 120)
    m.shutdown()
    ids = {
        "old_active": "old-active",
        "old_done": "old-done",
        "old_paused": "old-paused",
        "new_active": "new-active",
        "cancelled": "new-cancelled",
        "expired": "expired",
    }
    secrets = [CLIENT_SECRET]
    store = authpulse.open_store(url)
    try:
        for sid in ids.values():
            stored = store.get_token(sid)
            if stored is not None:
                secrets.append(stored.token.access_token.get_secret_value())
                if stored.token.refresh_token is not None:
                    secrets.append(stored.token.refresh_token.get_secret_value())
    finally:
        store.close()
    assert len(secrets) == 7
    return Populated(path, url, ids, secrets, idp)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AUTHPULSE_") and name.upper() != "AUTHPULSE_HTTP_BACKEND":
            monkeypatch.delenv(name)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Populated:
    clock = FakeClock(start=time.time() - 3 * DAY)
    idp = FakeIdP(clock=clock, access_ttl=10 * DAY, clients={CLIENT_ID: CLIENT_SECRET})
    populated = populate(tmp_path / "sessions.db", idp, clock)
    monkeypatch.setenv("AUTHPULSE_STORE_URL", populated.url)
    return populated


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*argv, stdin="")`` -> (exit code, stdout, stderr); argparse exits become codes."""

    def go(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return go


def run_json(run: Run, *argv: str) -> Any:
    code, out, err = run(*argv, "--json")
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------- list / show / stats


def test_list_shows_every_session_oldest_first(db: Populated, run: Run) -> None:
    code, out, _ = run("sessions", "list")
    assert code == 0
    for sid in db.ids.values():
        assert sid in out
    assert "6 session(s)" in out
    data = run_json(run, "sessions", "list")
    assert data["count"] == 6
    assert [s["id"] for s in data["sessions"]][:3] == ["old-active", "old-done", "old-paused"]
    db.assert_no_secrets(out, json.dumps(data))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--owner", "alice"], {"old-active", "old-paused", "new-cancelled"}),
        (["--status", "active"], {"old-active", "new-active", "expired"}),
        (["--status", "PAUSED,cancelled"], {"old-paused", "new-cancelled"}),
        (["--status", "ended"], {"old-done", "new-cancelled"}),
        (["--status", "open", "--owner", "alice"], {"old-active", "old-paused"}),
        (["--kind", "integration"], {"old-done"}),
        (["--limit", "2"], {"old-active", "old-done"}),
        (["--limit", "2", "--offset", "4"], {"new-active", "new-cancelled"}),
        (["--owner", "nobody"], set()),
    ],
)
def test_list_filters_and_pages(
    db: Populated, run: Run, args: list[str], expected: set[str]
) -> None:
    data = run_json(run, "sessions", "list", *args)
    assert {s["id"] for s in data["sessions"]} == expected


@pytest.mark.parametrize("option", ["--offset", "--limit"])
def test_list_refuses_pages_sqlite_cannot_hold(db: Populated, run: Run, option: str) -> None:
    code, _, err = run("sessions", "list", option, str(2**63))
    assert code == 2
    assert f"{option}: must be at most {2**63 - 1}" in err


def test_list_reports_an_empty_page_and_the_next_offset(db: Populated, run: Run) -> None:
    code, out, _ = run("sessions", "list", "--owner", "nobody")
    assert (code, out.strip()) == (0, "no sessions match")
    code, out, _ = run("sessions", "list", "--limit", "2")
    assert "--offset 2" in out


def test_show_prints_the_record_and_timeline(db: Populated, run: Run) -> None:
    code, out, _ = run("sessions", "show", "old-active")
    assert code == 0
    assert "alice" in out
    assert "[bold]pro[/bold]" in out  # user data is printed as it is, not as markup
    assert "session_created" in out
    assert "token_refreshed" in out
    data = run_json(run, "sessions", "show", "new-cancelled")
    assert data["session"]["status"] == "CANCELLED"
    assert data["session"]["error"]["message"] == "user left"
    kinds = [e["kind"] for e in data["timeline"]]
    assert kinds[0] == "session_created"
    assert "closed" in kinds
    db.assert_no_secrets(out, json.dumps(data))


def test_stats_cover_the_whole_store(db: Populated, run: Run) -> None:
    data = run_json(run, "sessions", "stats")
    assert data["total"] == 6
    assert data["active"] == 3
    assert data["paused"] == 1
    assert data["by_status"]["COMPLETED"] == 1
    assert data["by_status"]["CANCELLED"] == 1
    assert data["success_rate"] == 0.5
    assert data["failure_distribution"] == {"cancelled": 1}
    assert run_json(run, "sessions", "stats", "--owner", "alice")["total"] == 3
    assert run_json(run, "sessions", "stats", "--kind", "system")["total"] == 1
    code, out, _ = run("sessions", "stats")
    assert code == 0
    assert "success rate" in out
    assert "50.0%" in out


# ----------------------------------------------------------------------------- changes


def test_cancel_ends_a_stored_session(db: Populated, run: Run) -> None:
    code, out, _ = run("sessions", "cancel", "new-active", "--reason", "ops ticket 42")
    assert (code, out.strip()) == (0, "session new-active cancelled")
    record = db.record("new-active")
    assert record.status is SessionStatus.CANCELLED
    assert record.error is not None
    assert record.error.message == "ops ticket 42"
    code, _, err = run("sessions", "cancel", "new-active")
    assert code == 1
    assert "closed (CANCELLED)" in err
    data = run_json(run, "sessions", "cancel", "old-paused")
    assert data["session"]["status"] == "CANCELLED"


def test_cleanup_marks_old_open_sessions_and_deletes_nothing(db: Populated, run: Run) -> None:
    data = run_json(run, "sessions", "cleanup", "--max-age", "2d")
    assert data == {"timed_out": 2, "max_age": 2 * DAY}
    assert db.record("old-active").status is SessionStatus.TIMEOUT
    assert db.record("old-paused").status is SessionStatus.TIMEOUT
    assert db.record("new-active").status is SessionStatus.ACTIVE
    assert db.count() == 6
    code, out, _ = run("sessions", "cleanup", "--max-age", "90s")
    assert code == 0
    assert out.startswith("2 open session(s) older than 1m 30s marked TIMEOUT")


def test_export_is_json_without_secrets(db: Populated, run: Run) -> None:
    code, out, _ = run("sessions", "export", "old-active")
    assert code == 0
    data = json.loads(out)
    assert data["session"]["id"] == "old-active"
    assert data["token"]["has_refresh_token"] is True
    assert data["health"]["score"] == 100
    assert data["timeline"][0]["kind"] == "session_created"
    db.assert_no_secrets(out)


def test_archive_writes_ended_sessions_to_a_private_jsonl_file(
    db: Populated, run: Run, tmp_path: Path
) -> None:
    out_file = tmp_path / "archive.jsonl"
    data = run_json(run, "sessions", "archive", "--out", str(out_file))
    assert data == {"archived": 2, "skipped_already_archived": 0, "file": str(out_file)}
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert {line["session"]["id"] for line in lines} == {"old-done", "new-cancelled"}
    assert all(line["timeline"] and "archived_at" in line for line in lines)
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert db.count() == 6  # nothing deleted
    assert db.record("old-done").status is SessionStatus.COMPLETED
    # an existing file is not overwritten ...
    code, _, err = run("sessions", "archive", "--out", str(out_file))
    assert code == 1
    assert "--append" in err
    # ... and sessions archived before are skipped unless asked for
    code, out, _ = run("sessions", "archive", "--out", str(out_file), "--append")
    assert code == 0
    assert "0 ended session(s) written" in out
    assert "2 archived before, skipped" in out
    code, _, _ = run(
        "sessions", "archive", "--out", str(out_file), "--append", "--include-archived"
    )
    assert len(out_file.read_text().splitlines()) == 4
    # --older-than: only sessions that ended long enough ago
    code, out, _ = run(
        "sessions", "archive", "--out", "-", "--older-than", "2d", "--include-archived"
    )
    assert [json.loads(line)["session"]["id"] for line in out.splitlines()] == ["old-done"]
    db.assert_no_secrets(out_file.read_text())


def test_archive_default_file_name(
    db: Populated, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = run_json(run, "sessions", "archive")
    assert data["file"].startswith("authpulse-archive-")
    assert data["file"].endswith(".jsonl")
    assert len((tmp_path / data["file"]).read_text().splitlines()) == 2


@pytest.mark.parametrize("answer", ["n\n", "", "whatever\n"])
def test_purge_asks_and_deletes_nothing_without_a_yes(db: Populated, run: Run, answer: str) -> None:
    code, _, err = run("sessions", "purge", "--older-than", "1h", stdin=answer)
    assert code == 1
    assert "Delete 2 ended session(s)" in err
    assert "cannot be undone" in err
    assert "purge cancelled: nothing deleted" in err
    assert db.count() == 6


def test_purge_deletes_after_confirmation(db: Populated, run: Run) -> None:
    code, out, err = run("sessions", "purge", "--older-than", "2d", stdin="y\n")
    assert code == 0
    assert "Delete 1 ended session(s)" in err
    assert out.strip() == "1 session(s) deleted"
    assert db.count() == 5
    code, _, _ = run("sessions", "show", "old-done")
    assert code == 3
    data = run_json(run, "sessions", "purge", "--older-than", "0", "--yes")
    assert data == {"purged": 1}
    code, out, err = run("sessions", "purge", "--older-than", "0")
    assert (code, out.strip(), err) == (0, "nothing to purge", "")


# ----------------------------------------------------------------------------- health


def test_health_from_stored_data(db: Populated, run: Run) -> None:
    code, out, _ = run("health", "old-active")
    assert code == 0
    assert "100 excellent" in out
    assert "token expires in" in out
    data = run_json(run, "health", "old-active")
    assert data["score"] == 100
    assert data["band"] == "excellent"
    assert data["source"] == "store"
    assert data["token_expires_in"] > 0
    expired = run_json(run, "health", "expired")
    assert expired["signals"]["freshness"] == "expired"
    assert expired["token_expires_in"] < 0
    assert {"name": "token", "penalty": 50, "reason": "the access token has expired"} in expired[
        "components"
    ]
    closed = run_json(run, "health", "old-done")
    assert closed["score"] == 0
    assert closed["token_expires_at"] is None
    code, out, _ = run("health", "expired")
    assert "token expired" in out
    assert "-50" in out


# ----------------------------------------------------------------------------- refresh


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Populated]:
    """A store whose sessions' IdP is reachable over HTTP, and the settings to use it."""
    with LoopbackServer() as server:
        clock = FakeClock(start=time.time() - 3 * DAY)
        idp = FakeIdP(
            clock=clock, issuer=server.url, access_ttl=10 * DAY, clients={CLIENT_ID: CLIENT_SECRET}
        )
        server.app = idp
        populated = populate(tmp_path / "served.db", idp, clock)
        clock.advance(120)  # the IdP's clock: real now
        monkeypatch.setenv("AUTHPULSE_STORE_URL", populated.url)
        monkeypatch.setenv("AUTHPULSE_TOKEN_URL", idp.token_url)
        monkeypatch.setenv("AUTHPULSE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("AUTHPULSE_CLIENT_SECRET", CLIENT_SECRET)
        yield populated


def test_refresh_forces_a_refresh_through_the_store(served: Populated, run: Run) -> None:
    assert served.idp is not None
    store = served.store()
    before = store.get_token("old-active")
    store.close()
    assert before is not None
    calls = served.idp.token_calls
    data = run_json(run, "refresh", "old-active")
    assert served.idp.token_calls == calls + 1
    assert served.idp.reuse_detected == 0
    assert data["refreshed"] is True
    assert data["refresh_token_rotated"] is True
    assert data["expires_in"] > 9 * DAY
    assert data["stored_version"] > before.version
    store = served.store()
    after = store.get_token("old-active")
    store.close()
    assert after is not None
    assert after.token.access_token != before.token.access_token
    # an expired stored token: refreshed once, not twice
    code, out, _ = run("refresh", "expired")
    assert code == 0
    assert "refreshed" in out
    assert served.idp.token_calls == calls + 2
    code, out, _ = run("sessions", "show", "old-active")
    assert "recovered" in out
    assert "reason=forced" in out
    secrets = [*served.secrets, after.token.access_token.get_secret_value()]
    for text in (json.dumps(data), out):
        for secret in secrets:
            assert secret not in text


def test_refresh_refuses_with_a_clear_message(
    served: Populated, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run("refresh", "old-done")
    assert code == 1
    assert "has ended (COMPLETED)" in err
    code, _, err = run("refresh", "old-paused")  # never fetched a token
    assert code == 1
    assert "no token set in the store" in err
    code, _, err = run("refresh", "no-such-id")
    assert code == 3
    monkeypatch.delenv("AUTHPULSE_TOKEN_URL")
    code, _, err = run("refresh", "old-active")
    assert code == 1
    assert "AUTHPULSE_TOKEN_URL" in err
    assert CLIENT_SECRET not in err


def test_refresh_reports_a_rejected_grant(served: Populated, run: Run) -> None:
    assert served.idp is not None
    served.idp.revoke_all()
    code, out, err = run("refresh", "old-active")
    assert code == 1
    assert "invalid_grant" in err
    served.assert_no_secrets(out, err)


# ----------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    "argv",
    [
        ["sessions", "show", "nope"],
        ["sessions", "cancel", "nope"],
        ["sessions", "export", "nope"],
        ["health", "nope"],
        ["health", "nope", "--json"],
        ["refresh", "nope"],
    ],
)
def test_unknown_id_exits_3(db: Populated, run: Run, argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert code == 3
    assert out == ""
    assert err.strip() == "authpulse: no session with id 'nope'"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://user:hunter2@host/x", "unsupported store URL scheme 'ftp'"),
        ("no-scheme-hunter2", "no recognisable scheme"),
        ("memory://", "memory:// store is empty"),
        ("sqlite:///{tmp}/missing.db", "no SQLite database at"),
        ("sqlite:///{tmp}/x.db?bogus=1", "unknown parameter"),
        ("redis://user:hunter2@127.0.0.1:{port}/0", "unavailable"),
        ("redis://user:hunter2@127.0.0.1:{port}/0?socket_timeout=abc", "invalid parameter"),
    ],
)
def test_bad_or_unreachable_store_exits_4(run: Run, tmp_path: Path, url: str, message: str) -> None:
    pytest.importorskip("redis")
    (tmp_path / "x.db").touch()
    url = url.format(tmp=tmp_path, port=free_port())
    for argv in (["sessions", "list"], ["health", "x"], ["sessions", "purge", "--older-than", "0"]):
        code, out, err = run(*argv, "--store", url)
        assert code == 4, err
        assert message in err
        assert "hunter2" not in out + err
    assert not (tmp_path / "missing.db").exists()  # a typo never creates a store


def test_store_url_from_the_environment_is_not_echoed(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHPULSE_STORE_URL", f"redis://user:hunter2@127.0.0.1:{free_port()}/0")
    code, out, err = run("sessions", "list")
    assert code == 4
    assert "hunter2" not in out + err


def test_bad_settings_exit_2_naming_the_variable(
    db: Populated, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHPULSE_TICK_INTERVAL", "soon")
    code, _, err = run("sessions", "list")
    assert code == 2
    assert "AUTHPULSE_TICK_INTERVAL" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["sessions"],
        ["sessions", "list", "--status", "sleeping"],
        ["sessions", "list", "--limit", "-1"],
        ["sessions", "list", "--kind", "robot"],
        ["sessions", "cleanup"],
        ["sessions", "cleanup", "--max-age", "0"],
        ["sessions", "cleanup", "--max-age", "soon"],
        ["sessions", "purge"],
        ["sessions", "purge", "--older-than", "-1d"],
        ["sessions", "show"],
        ["serve", "--port", "70000"],
        ["demo", "--duration", "0"],
    ],
)
def test_bad_usage_exits_2(run: Run, argv: list[str]) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert "usage:" in err


def test_an_encrypted_store_without_its_key_fails_clearly(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = authpulse.TokenCipher.generate_key()
    url = f"sqlite:///{tmp_path / 'enc.db'}"
    clock = FakeClock(start=time.time())
    idp = FakeIdP(clock=clock)
    m = SessionManager(authpulse.open_store(url, encryption_keys=[key]), transport=idp.transport)
    ms = m.create_session("alice", authpulse.ClientCredentials(idp.token_url, "client", "secret"))
    ms.session.token()
    m.shutdown()
    monkeypatch.setenv("AUTHPULSE_STORE_URL", url)
    code, _, err = run("health", ms.id)
    assert code == 1, err
    assert "AUTHPULSE_ENCRYPTION_KEYS" in err
    data = run_json(run, "sessions", "export", ms.id)
    assert data["token_error"] == "DecryptionError"
    monkeypatch.setenv("AUTHPULSE_ENCRYPTION_KEYS", key)
    data = run_json(run, "health", ms.id)
    assert data["score"] == 100
    code, out, err = run("sessions", "export", ms.id)
    assert key not in out + err


# ----------------------------------------------------------------------------- progress


def test_bulk_operations_show_progress_on_a_terminal(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(start=time.time() - 2 * DAY)
    idp = FakeIdP(clock=clock)
    url = f"sqlite:///{tmp_path / 'many.db'}"
    m = SessionManager(authpulse.open_store(url, clock=clock), clock=clock, transport=idp.transport)
    for i in range(40):
        ms = m.create_session(f"user-{i % 7}", authpulse.ClientCredentials(idp.token_url, "c", "s"))
        if i % 2:
            m.close(ms.id)
    m.shutdown()
    monkeypatch.setenv("AUTHPULSE_STORE_URL", url)
    updates: list[tuple[int, int]] = []

    class Recorder:
        def __init__(self, *a: object, **kw: object) -> None:
            self.total = 0

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def add_task(self, description: str, total: int | None = None) -> int:
            return 1

        def update(self, task: int, *, completed: int, total: int) -> None:
            updates.append((completed, total))

    import rich.progress

    monkeypatch.setattr("authpulse._surfaces.commands.output.stderr_is_terminal", lambda: True)
    monkeypatch.setattr(rich.progress, "Progress", Recorder)
    assert run("sessions", "cleanup", "--max-age", "1d")[0] == 0
    assert updates[-1] == (20, 20)
    updates.clear()
    assert run("sessions", "archive", "--out", str(tmp_path / "a.jsonl"))[0] == 0
    assert updates[-1] == (40, 40)
    updates.clear()
    assert run("sessions", "purge", "--older-than", "0", "--yes")[0] == 0
    assert updates[-1] == (40, 40)
    # --json output stays machine-readable: no progress
    updates.clear()
    assert run_json(run, "sessions", "cleanup", "--max-age", "1d") == {
        "timed_out": 0,
        "max_age": DAY,
    }
    assert updates == []


def test_real_progress_bar_renders_on_a_terminal(
    db: Populated, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("authpulse._surfaces.commands.output.stderr_is_terminal", lambda: True)
    code, out, _ = run("sessions", "cleanup", "--max-age", "1h")
    assert code == 0
    assert "marked TIMEOUT" in out


# ----------------------------------------------------------------------------- serve


def test_serve_calls_the_web_module_lazily(
    db: Populated, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    fake = types.ModuleType("authpulse._surfaces.web")
    fake.serve = lambda url, **kw: calls.append((url, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "authpulse._surfaces.web", fake)
    code, _, err = run("serve", "--host", "0.0.0.0", "--port", "9000", "--admin-token", "tok")  # noqa: S104
    assert code == 0, err
    assert calls == [(db.url, {"host": "0.0.0.0", "port": 9000, "admin_token": "tok"})]  # noqa: S104
    calls.clear()
    monkeypatch.setenv("AUTHPULSE_ADMIN_TOKEN", "env-admin-token")
    code, out, err = run("serve")
    assert code == 0
    assert calls == [
        (db.url, {"host": "127.0.0.1", "port": 8080, "admin_token": "env-admin-token"})
    ]
    assert "env-admin-token" not in out + err


def test_serve_without_the_web_module_exits_1(
    db: Populated, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "authpulse._surfaces.web", None)  # makes the import fail
    code, out, err = run("serve")
    assert code == 1
    assert "authpulse._surfaces.web" in err
    assert out == ""


def test_serve_checks_the_store_first(run: Run) -> None:
    code, _, err = run("serve", "--store", "memory://")
    assert code == 4
    assert "memory://" in err


# ----------------------------------------------------------------------------- demo


@pytest.fixture
def fake_time_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """``authpulse demo`` on a FakeClock: the whole run in no real time."""
    import authpulse._surfaces.demo as demo

    real = demo.run_demo

    def on_fake_clock(*args: Any, **kwargs: Any) -> demo.DemoSummary:
        return real(*args, clock=FakeClock(), **kwargs)

    monkeypatch.setattr(demo, "run_demo", on_fake_clock)


@pytest.mark.usefixtures("fake_time_demo")
def test_demo_without_a_terminal_prints_lines(run: Run) -> None:
    code, out, _ = run("demo")
    assert code == 0
    assert out.startswith("authpulse demo: 20s")
    assert out.count("\nt=") >= 18
    assert "\nsummary: " in out
    assert "\x1b[" not in out  # no terminal control codes


@pytest.mark.usefixtures("fake_time_demo")
def test_demo_on_a_terminal_draws_the_dashboard(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run("demo", "--faults", "idp-outage,api-5xx")
    assert code == 0
    for text in ("health", "auth state", "token expires in", "breaker", "recent events"):
        assert text in out
    assert "summary" in out
    assert "\x1b[" in out  # drawn in place
    code, out, _ = run("demo", "--plain", "--faults", "api-5xx")
    assert code == 0
    assert "\x1b[" not in out
    assert "t=" in out


def test_demo_fault_names_match_the_demo() -> None:
    assert tuple(FAULTS) == _FAULT_NAMES


def test_dashboard_frame_shows_every_signal() -> None:
    from rich.console import Console

    from authpulse._surfaces.console import RichDashboard, render_frame
    from authpulse._surfaces.demo import DemoFrame, run_demo

    frames: list[DemoFrame] = []

    class Keep(RichDashboard):
        def frame(self, frame: DemoFrame) -> None:
            frames.append(frame)
            super().frame(frame)

    buf = io.StringIO()
    with Keep(Console(file=buf, force_terminal=True, width=100)) as dash:
        summary = run_demo(20.0, clock=FakeClock(), renderer=dash)
    assert dash.frames == len(frames) >= 18
    assert "summary" in buf.getvalue()
    assert summary.failed == 0
    outage = next(f for f in frames if f.auth_state == "degraded")
    assert "idp-outage" in outage.active_faults
    assert any(e.kind == "refresh_failed" for e in outage.events)
    faults = [e.detail.split(":")[0] for f in frames for e in f.events if e.kind == "fault"]
    assert set(faults) == set(FAULTS)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render_frame(outage))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for needle in (
        f"{outage.health.score:3d} {outage.health.band.value.upper()}",
        "degraded",
        "token expires in",
        "fallback level",
        "API retries",
        "breaker",
        "cache",
        "refresh_failed",
        "fault: idp-outage",
    ):
        assert needle in text


# ----------------------------------------------------------------------------- the console script


def console_script() -> Path:
    script = Path(sys.executable).parent / "authpulse"
    if not script.exists():
        pytest.skip("the authpulse console script is not installed next to this Python")
    return script


def test_console_script_smoke(db: Populated) -> None:
    script = console_script()
    env = {**os.environ, "AUTHPULSE_STORE_URL": db.url}
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "sessions", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 6
    done = subprocess.run(  # noqa: S603
        [str(script), "health", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr == "authpulse: no session with id 'nope'\n"
    done = subprocess.run(  # noqa: S603
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    for command in ("demo", "sessions", "health", "refresh", "serve"):
        assert command in done.stdout
    db.assert_no_secrets(done.stdout, done.stderr)


def test_the_command_import_paths_are_kept() -> None:
    """The entry point ``authpulse._surfaces.cli:main`` and the names of ``cli.__all__``
    stay where they were, whichever module now defines them."""
    import authpulse._surfaces.cli as cli
    from authpulse._surfaces.commands.exits import CliError

    assert cli.main is main
    assert cli.CliError is CliError
    assert (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_NOT_FOUND, cli.EXIT_STORE) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert set(cli.__all__) >= {"main", "build_parser", "CliError"}

"""Stored text never drives the terminal: every ``authpulse`` command that prints
owner names, metadata, reasons, error messages or ids prints their control
characters and bidirectional overrides as visible escapes, and rich markup as
plain text."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import authpulse
from authpulse import SessionManager
from authpulse._surfaces.cli import main
from authpulse._surfaces.commands.output import log_to_stderr
from authpulse._surfaces.terminal import console, safe_text
from authpulse.testing import FakeClock, FakeIdP, LoopbackServer

CLIENT_ID = "term-client"
CLIENT_SECRET = "term-S3CRET-client-secret"
# an OSC window title ended by BEL, a CSI clear-screen, a one-byte C1 CSI, a
# right-to-left override, DEL and a carriage return
EVIL = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eevil\x7f\r"
FORBIDDEN = ("\x1b", "\x9b", "\x07", "\u202e", "\x7f", "\r")
MARKUP = "[bold red]x[/bold red]"
SID = "mallory-1"
EVIL_ID = "evil-" + EVIL  # a stored session whose id itself holds escapes (it has no token)


def evil_error() -> Exception:
    cls: type[Exception] = type("Boom" + EVIL, (Exception,), {})  # a class name is stored too
    return cls("failed: " + EVIL)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AUTHPULSE_") and name.upper() != "AUTHPULSE_HTTP_BACKEND":
            monkeypatch.delenv(name)


@pytest.fixture
def evil_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A SQLite store whose owner, metadata, reasons, errors and ids hold escapes,
    its IdP served over HTTP so that ``refresh`` works."""
    with LoopbackServer() as server:
        clock = FakeClock(start=time.time() - 3600)
        idp = FakeIdP(clock=clock, issuer=server.url, clients={CLIENT_ID: CLIENT_SECRET})
        server.app = idp
        url = f"sqlite:///{tmp_path / 'evil.db'}"
        m = SessionManager(
            authpulse.open_store(url, clock=clock), clock=clock, transport=idp.transport
        )

        def grant() -> authpulse.RefreshTokenGrant:
            return authpulse.RefreshTokenGrant(
                idp.token_url,
                CLIENT_ID,
                CLIENT_SECRET,
                refresh_token=idp.issue_refresh_token(CLIENT_ID),
            )

        metadata = {
            "user_agent": EVIL,
            "device": MARKUP,
            "ip_address": EVIL,
            "custom": {"note" + EVIL: MARKUP + EVIL},
        }
        live = m.create_session("mallory" + EVIL, grant(), session_id=SID, metadata=metadata)
        live.session.token()
        # create_session refuses such an id; an older version or another writer stored it
        now = clock.now()
        m.store.put(
            authpulse.SessionRecord(
                id=EVIL_ID,
                owner="mallory",
                kind=authpulse.SessionKind.USER,
                status=authpulse.SessionStatus.ACTIVE,
                created_at=now,
                last_activity_at=now,
            ),
            expected_version=None,
        )
        m.pause(m.create_session("mallory" + EVIL, grant(), session_id="paused").id, EVIL)
        m.resume("paused")
        m.pause("paused", "again " + EVIL)
        m.close(
            m.create_session(MARKUP + EVIL, grant(), session_id="failed").id,
            "FAILED",
            error=evil_error(),
        )
        m.cancel(m.create_session("mallory" + EVIL, grant(), session_id="gone").id, EVIL)
        clock.advance(600)
        m.shutdown()
        monkeypatch.setenv("AUTHPULSE_STORE_URL", url)
        monkeypatch.setenv("AUTHPULSE_TOKEN_URL", idp.token_url)
        monkeypatch.setenv("AUTHPULSE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("AUTHPULSE_CLIENT_SECRET", CLIENT_SECRET)
        yield url


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that no cell is folded

    def go(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return go


def assert_clean(*texts: str) -> None:
    for text in texts:
        for char in FORBIDDEN:
            assert char not in text, (char, text)


COMMANDS = [
    ("sessions", "list"),
    ("sessions", "list", "--json"),
    ("sessions", "show", SID),
    ("sessions", "show", SID, "--json"),
    ("sessions", "show", "failed"),
    ("sessions", "show", "paused"),
    ("sessions", "show", "gone"),
    ("sessions", "show", EVIL_ID),
    ("health", EVIL_ID),
    ("refresh", EVIL_ID),
    ("sessions", "stats"),
    ("sessions", "stats", "--json"),
    ("sessions", "export", SID),
    ("sessions", "export", "failed"),
    ("sessions", "archive", "--out", "-"),
    ("sessions", "archive", "--out", "-", "--json"),
    ("health", SID),
    ("health", SID, "--json"),
    ("refresh", SID),
    ("refresh", SID, "--json"),
    ("sessions", "show", "no-such-" + EVIL),  # the error message quotes the id
    ("health", "no-such-" + EVIL),
    ("refresh", "failed"),
    ("sessions", "cancel", "no-such-" + EVIL),
    ("sessions", "cancel", SID),
    ("sessions", "cancel", EVIL_ID),
    ("sessions", "cleanup", "--max-age", "1s"),
    ("sessions", "purge", "--older-than", "0s", "--yes"),
]


@pytest.mark.parametrize(
    "argv", COMMANDS, ids=lambda a: " ".join(a).encode("unicode_escape").decode()
)
def test_no_command_lets_stored_text_drive_the_terminal(
    evil_store: str, run: Run, argv: tuple[str, ...]
) -> None:
    code, out, err = run(*argv)
    assert out or err
    assert_clean(out, err)
    assert code in (0, 1, 3), err


def test_list_and_show_print_escapes_visibly_and_markup_literally(
    evil_store: str, run: Run
) -> None:
    code, out, _ = run("sessions", "list")
    assert code == 0
    assert "mallory\\x1b]0;PWNED\\x07\\x1b[2J" in out
    assert MARKUP in out  # printed as text, not as bold red
    code, out, _ = run("sessions", "show", SID)
    assert code == 0
    assert MARKUP in out
    assert "\\u202eevil" in out
    code, _, err = run("health", "no-such-" + EVIL)
    assert code == 3
    assert "\\x1b[2J" in err


def test_json_output_escapes_controls(evil_store: str, run: Run) -> None:
    for argv in (("sessions", "export", SID), ("sessions", "show", SID, "--json")):
        code, out, _ = run(*argv)
        assert code == 0
        assert "\\u001b]0;PWNED\\u0007" in out


def test_safe_text() -> None:
    assert safe_text("plain text, tab\tand\nnewline") == "plain text, tab\tand\nnewline"
    assert safe_text(EVIL) == "\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\u202eevil\\x7f\\x0d"
    assert safe_text(safe_text(EVIL)) == safe_text(EVIL)
    assert safe_text("\u2066a\u2069 \u200f \x00") == "\\u2066a\\u2069 \\u200f \\x00"
    assert safe_text("naïve café — ok") == "naïve café — ok"


def test_console_keeps_its_own_styles_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a colour terminal rich's own escape codes still style the output; only
    those in the text are made visible, for strings and ``Text`` objects alike."""
    from rich.table import Table
    from rich.text import Text

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    buf = io.StringIO()
    out = console(buf)
    table = Table()
    table.add_column("a")
    table.add_column("b")
    table.add_row(EVIL, Text(EVIL, style="red"))
    out.print(table)
    out.print(Text.assemble(("x" + EVIL, "bold"), MARKUP))
    text = buf.getvalue()
    assert "\x1b[" in text  # rich's styling is there
    for sequence in ("\x1b]0;", "\x1b[2J", "\x07", "\x9b", "\u202e", "\x7f", "\r"):
        assert sequence not in text
    assert "\\x1b[2J" in text
    assert MARKUP in text


def test_log_lines_are_made_safe(capsys: pytest.CaptureFixture[str]) -> None:
    with log_to_stderr("WARNING"):
        logging.getLogger("authpulse.test").warning("owner %s", EVIL)
    err = capsys.readouterr().err
    assert "owner \\x1b]0;PWNED" in err
    assert_clean(err)

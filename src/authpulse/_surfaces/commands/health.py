"""``authpulse health`` (a score from the stored data) and ``authpulse refresh``
(a forced refresh with the stored refresh token)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..._core.errors import ConfigurationError
from ..._core.signals import SessionEvent, SessionEventKind
from .exits import EXIT_OK, CliError
from .output import BAND_STYLES, console_for, print_json, span, when

if TYPE_CHECKING:
    from ..._core.health import HealthReport
    from ..._fleet.manager import SessionManager
    from ..settings import AuthpulseSettings

__all__ = ["cmd_health", "cmd_refresh"]


def _health_view(
    session_id: str, status: str, report: HealthReport, expires_in: float | None
) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = BAND_STYLES.get(report.band.value, "")
    head = Text.assemble(
        f"session {session_id}: ",
        (f"{report.score}", style),
        " ",
        (report.band.value, style),
        f"  ({status.lower()}; ",
        "no stored token"
        if expires_in is None
        else f"token expires in {span(expires_in)}"
        if expires_in > 0
        else f"token expired {span(-expires_in)} ago",
        ")",
    )
    table = Table(box=None, padding=(0, 1), show_header=False)
    table.add_column(justify="right", style="red", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for c in report.components:
        table.add_row(f"-{c.penalty}", c.name, c.reason)
    note = Text("from stored data: lifecycle status, auth state and token expiry", style="dim")
    return Group(head, table, note) if report.components else Group(head, note)


def cmd_health(args: argparse.Namespace, m: SessionManager) -> int:
    record = m.record(args.session_id)
    report = m.health(args.session_id)
    stored = m.store.get_token(record.id)
    expires_in = None if stored is None else stored.token.expires_at - stored.skew - m.clock.now()
    if args.json:
        print_json(
            {
                "session_id": record.id,
                "status": record.status.value,
                "source": "store",
                "token_expires_at": None if stored is None else stored.token.expires_at,
                "token_expires_in": None if expires_in is None else round(expires_in, 3),
                **report.to_dict(),
            }
        )
    else:
        console_for(sys.stdout).print(
            _health_view(record.id, record.status.value, report, expires_in)
        )
    return EXIT_OK


def cmd_refresh(args: argparse.Namespace, m: SessionManager, settings: AuthpulseSettings) -> int:
    record = m.record(args.session_id)
    if record.status.terminal:
        raise CliError(f"session {record.id} has ended ({record.status.value}): nothing to refresh")
    stored = m.store.get_token(record.id)
    if stored is None:
        raise CliError(
            f"session {record.id} has no token set in the store, so there is no refresh token "
            "to refresh with; only the process that holds its token source can refresh it"
        )
    old = stored.token.refresh_token
    if old is None:
        raise CliError(
            f"the stored token set of session {record.id} has no refresh token (a client "
            "credentials session?); only the process that holds its token source can refresh it"
        )
    try:
        grant = settings.refresh_token_grant(old)
    except ConfigurationError as exc:
        raise CliError(f"cannot refresh: {exc}") from None
    ms = m.recover(record.id, grant)
    adopted: list[bool] = []

    def on_event(event: SessionEvent) -> None:
        if event.kind is SessionEventKind.REFRESHED:
            adopted.append(bool(event.fields.get("adopted")))

    ms.session.add_event_hook(on_event)
    ms.session.token()  # adopts the stored set if fresh; refreshes at once if it is due
    if not adopted or adopted[-1]:
        ms.session.force_refresh()  # the stored set is now the one we hold: refresh it
    token = ms.session.token_set
    after = m.store.get_token(record.id)
    if token is None:  # pragma: no cover - force_refresh raises or installs a set
        raise CliError("the refresh produced no token set")
    rotated = (
        token.refresh_token is not None
        and token.refresh_token.get_secret_value() != old.get_secret_value()
    )
    expires_in = token.expires_at - ms.session.stats().skew - m.clock.now()
    if args.json:
        print_json(
            {
                "session_id": record.id,
                "refreshed": True,
                "token_type": token.token_type,
                "scope": token.scope,
                "issued_at": token.issued_at,
                "expires_at": token.expires_at,
                "expires_in": round(expires_in, 3),
                "refresh_token_rotated": rotated,
                "stored_version": after.version if after is not None else None,
            }
        )
    else:
        console_for(sys.stdout).print(
            f"session {record.id} refreshed: new access token expires in {span(expires_in)} "
            f"({when(token.expires_at)}); refresh token "
            f"{'rotated' if rotated else 'unchanged'}"
        )
    return EXIT_OK

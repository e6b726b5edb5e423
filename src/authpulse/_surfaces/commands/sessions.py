"""``authpulse sessions ...``: list, show, stats, cancel, cleanup, export, archive, purge."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ..._core.redact import redact_mapping
from .exits import EXIT_FAILED, EXIT_OK, CliError
from .output import (
    STATUS_STYLES,
    confirm,
    console_for,
    fields_text,
    print_json,
    progress,
    span,
    when,
)

if TYPE_CHECKING:
    from ..._core.model import SessionRecord
    from ..._fleet.manager import SessionManager

__all__ = [
    "cmd_archive",
    "cmd_cancel",
    "cmd_cleanup",
    "cmd_export",
    "cmd_list",
    "cmd_purge",
    "cmd_show",
    "cmd_stats",
]


def _ago(ts: float, now: float) -> str:
    return f"{span(now - ts)} ago" if now >= ts else f"in {span(ts - now)}"


def _records_table(records: Sequence[SessionRecord], now: float) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("id", no_wrap=True, min_width=max((len(r.id) for r in records), default=2))
    table.add_column("owner", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("created", overflow="fold")
    table.add_column("last activity", overflow="fold")
    for r in records:
        table.add_row(
            r.id,
            r.owner,
            r.kind.value,
            Text(r.status.value, STATUS_STYLES.get(r.status.value, "")),
            _ago(r.created_at, now),
            f"ended {_ago(r.ended_at, now)}"
            if r.ended_at is not None
            else _ago(r.last_activity_at, now),
        )
    return table


def cmd_list(args: argparse.Namespace, m: SessionManager) -> int:
    records = m.list(
        owner=args.owner,
        status=args.status,
        kind=args.kind,
        limit=args.limit,
        offset=args.offset,
    )
    if args.json:
        print_json(
            {
                "sessions": [r.to_public_dict() for r in records],
                "count": len(records),
                "limit": args.limit,
                "offset": args.offset,
            }
        )
        return EXIT_OK
    out = console_for(sys.stdout)
    if not records:
        out.print("no sessions match")
        return EXIT_OK
    out.print(_records_table(records, m.clock.now()))
    more = (
        f"; more may follow: --offset {args.offset + len(records)}"
        if len(records) == args.limit
        else ""
    )
    out.print(f"{len(records)} session(s) from offset {args.offset}{more}", style="dim")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, m: SessionManager) -> int:
    from rich.table import Table
    from rich.text import Text

    record = m.record(args.session_id)
    timeline = m.timeline(args.session_id)
    if args.json:
        print_json(
            {"session": record.to_public_dict(), "timeline": [e.to_dict() for e in timeline]}
        )
        return EXIT_OK
    out = console_for(sys.stdout)
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim", no_wrap=True)
    info.add_column(overflow="fold")
    md = record.metadata
    rows: list[tuple[str, Any]] = [
        ("id", record.id),
        ("owner", record.owner),
        ("kind", record.kind.value),
        ("status", Text(record.status.value, STATUS_STYLES.get(record.status.value, ""))),
        ("auth state", record.auth_state),
        ("created", when(record.created_at)),
        ("last activity", when(record.last_activity_at)),
        ("ended", when(record.ended_at)),
        ("duration", span(record.duration) if record.duration is not None else "-"),
        ("phase / step", f"{record.phase or '-'} / {record.step or '-'}"),
        ("labels", ", ".join(record.labels) or "-"),
        ("user agent", md.user_agent or "-"),
        ("ip address", md.ip_address or "-"),
        ("device", md.device or "-"),
        ("custom", ", ".join(f"{k}={v}" for k, v in redact_mapping(md.custom).items()) or "-"),
        ("version", str(record.version)),
    ]
    if record.paused_reason:
        rows.append(("paused because", record.paused_reason))
    if record.error is not None:
        cls = f" [{record.error.error_class}]" if record.error.error_class else ""
        rows.append(("error", f"{record.error.message}{cls}"))
    for key, value in rows:
        info.add_row(key, value)
    out.print(info)
    out.print()
    events = Table(box=None, padding=(0, 1), header_style="bold", title="timeline")
    events.add_column("at", no_wrap=True)
    events.add_column("event", no_wrap=True)
    events.add_column("detail", overflow="fold")
    for e in timeline:
        events.add_row(when(e.at), e.kind.value, fields_text(dict(e.fields)))
    if timeline:
        out.print(events)
    else:
        out.print("no events", style="dim")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, m: SessionManager) -> int:
    stats = m.stored_stats(owner=args.owner, kind=args.kind)
    if args.json:
        print_json(stats.to_dict())
        return EXIT_OK
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    out = console_for(sys.stdout)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("sessions", str(stats.total))
    for status, n in stats.by_status.items():
        grid.add_row(f"  {status.lower()}", str(n))
    grid.add_row("success rate", pct(stats.success_rate) + "  (completed / ended)")
    grid.add_row("completion rate", pct(stats.completion_rate) + "  (completed / all)")
    grid.add_row(
        "average duration",
        "-" if stats.average_duration is None else span(stats.average_duration),
    )
    failures = ", ".join(f"{k} {v}" for k, v in stats.failure_distribution.items())
    grid.add_row("failures", failures or "-")
    out.print(grid)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, m: SessionManager) -> int:
    record = m.cancel_stored(args.session_id, args.reason)
    if args.json:
        print_json({"session": record.to_public_dict()})
    else:
        console_for(sys.stdout).print(f"session {record.id} cancelled")
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace, m: SessionManager) -> int:
    with progress("marking old sessions TIMEOUT", not args.json) as update:
        count = m.cleanup(args.max_age, include_stored=True, progress=update)
    if args.json:
        print_json({"timed_out": count, "max_age": args.max_age})
    else:
        console_for(sys.stdout).print(
            f"{count} open session(s) older than {span(args.max_age)} marked TIMEOUT "
            "(nothing deleted)"
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace, m: SessionManager) -> int:
    sys.stdout.write(m.export_json(args.session_id) + "\n")
    return EXIT_OK


def _open_archive(out: str | None, append: bool) -> tuple[TextIO, str, bool]:
    """(stream, name, close it) for the archive; new files are created 0600."""
    if out == "-":
        return sys.stdout, "<stdout>", False
    name = out or f"authpulse-archive-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.jsonl"
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_EXCL)
    try:
        fd = os.open(name, flags, 0o600)
    except FileExistsError:
        raise CliError(
            f"{name!r} exists: choose another --out, or add --append", EXIT_FAILED
        ) from None
    except OSError as exc:
        raise CliError(f"cannot write the archive {name!r}: {exc.strerror}") from None
    return os.fdopen(fd, "a" if append else "w", encoding="utf-8"), name, True


def cmd_archive(args: argparse.Namespace, m: SessionManager) -> int:
    stream, name, close = _open_archive(args.out, args.append)
    seen = {"total": 0}

    def write(entry: dict[str, Any]) -> None:
        stream.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        stream.flush()

    try:
        with progress("archiving ended sessions", not args.json) as update:

            def step(done: int, total: int) -> None:
                seen["total"] = total
                update(done, total)

            count = m.archive(
                write,
                older_than=args.older_than,
                include_archived=args.include_archived,
                progress=step,
            )
    except OSError as exc:
        raise CliError(f"writing the archive {name!r} failed: {exc.strerror}") from None
    finally:
        if close:
            stream.close()
    skipped = seen["total"] - count
    if args.json:
        result = {"archived": count, "skipped_already_archived": skipped, "file": name}
        if args.out == "-":
            sys.stderr.write(json.dumps(result, sort_keys=True) + "\n")
        else:
            print_json(result)
    else:
        report = console_for(sys.stderr if args.out == "-" else sys.stdout)
        note = f"; {skipped} archived before, skipped" if skipped else ""
        report.print(f"{count} ended session(s) written to {name}{note} (nothing deleted)")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace, m: SessionManager) -> int:
    now = m.clock.now()
    candidates = m.ended_before(args.older_than, now=now)
    if not candidates:
        if args.json:
            print_json({"purged": 0})
        else:
            console_for(sys.stdout).print("nothing to purge")
        return EXIT_OK
    if not args.yes and not confirm(
        f"Delete {len(candidates)} ended session(s) that ended before "
        f"{when(now - args.older_than)}, with their timelines and token sets? "
        "This cannot be undone."
    ):
        raise CliError("purge cancelled: nothing deleted", EXIT_FAILED)
    with progress("purging", not args.json) as update:
        count = m.purge(args.older_than, now=now, progress=update)
    if args.json:
        print_json({"purged": count})
    else:
        console_for(sys.stdout).print(f"{count} session(s) deleted")
    return EXIT_OK

"""The ``authpulse`` command.

``authpulse demo`` runs the embedded demo (a live dashboard on a terminal, a
line per second otherwise); ``authpulse sessions ...``, ``health`` and
``refresh`` work on the sessions of a persistent store; ``authpulse serve``
starts the web dashboard. See ``docs/cli.md``.

Exit codes: 0 done, 1 the operation failed (or was declined), 2 bad usage, bad
settings or the ``cli`` extra not installed, 3 no session with that id, 4 the
store is unreachable or its URL unusable. Expected errors print one line on
stderr, never a traceback, and nothing printed ever contains a token or a secret.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote

from .._core.errors import AuthpulseError, ConfigurationError
from .._core.model import SessionKind, SessionStatus
from .._core.redact import redact_mapping
from .._core.signals import SessionEvent, SessionEventKind
from .._version import __version__

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from .._core.health import HealthReport
    from .._core.model import SessionRecord
    from .._fleet.manager import SessionManager
    from .._stores.base import SessionStore
    from .settings import AuthpulseSettings

__all__ = [
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "main",
]

EXIT_OK = 0  #: done
EXIT_FAILED = 1  #: the operation failed, or was declined at the prompt
EXIT_USAGE = 2  #: bad arguments (argparse), bad AUTHPULSE_* settings, or no cli extra
EXIT_NOT_FOUND = 3  #: no session with that id
EXIT_STORE = 4  #: the store is unreachable, or its URL cannot be used

_FAULT_NAMES = ("idp-outage", "api-5xx", "revoked-grant", "key-rotation", "throttling")


class CliError(Exception):
    """An expected failure: one line on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ argument types


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _faults(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in _FAULT_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(_FAULT_NAMES)}"
        )
    return names


def _duration(text: str) -> float:
    from .settings import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use seconds or 90s, 30m, 24h, 7d)"
        ) from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be longer than 0 seconds")
    return seconds


_STATUS_GROUPS = {
    "open": (SessionStatus.ACTIVE, SessionStatus.PAUSED),
    "ended": tuple(s for s in SessionStatus if s.terminal),
}


def _statuses(text: str) -> tuple[SessionStatus, ...]:
    out: list[SessionStatus] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() in _STATUS_GROUPS:
            out += [s for s in _STATUS_GROUPS[part.lower()] if s not in out]
            continue
        try:
            out.append(SessionStatus(part.upper()))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"unknown status {part!r}; choose from "
                + ", ".join([*(s.value.lower() for s in SessionStatus), *_STATUS_GROUPS])
            ) from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one status")
    return tuple(out)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _page(text: str) -> int:
    from .._stores.base import MAX_PAGE

    value = _count(text)
    if value > MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_PAGE}")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("must be a TCP port, 0-65535")
    return value


# ------------------------------------------------------------------ the parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authpulse",
        description="Keep authenticated API sessions healthy.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage, 3 unknown session, 4 store "
        "unreachable or bad store URL. Settings come from AUTHPULSE_* variables "
        "(see docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"authpulse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the embedded demo (no network needed)",
        description="A fake IdP and API in-process, tokens expiring every few seconds and a "
        "run of faults. A live dashboard on a terminal; a line per second otherwise.",
    )
    demo.add_argument(
        "--duration", type=_positive, default=20.0, help="seconds to run (default 20)"
    )
    demo.add_argument(
        "--faults",
        type=_faults,
        default=None,
        metavar="a,b",
        help=f"faults to inject (default: all of {', '.join(_FAULT_NAMES)})",
    )
    demo.add_argument("--plain", action="store_true", help="a line per second, even on a terminal")

    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="sqlite:///path.db or redis://host:port/db (default: AUTHPULSE_STORE_URL)",
    )
    js = argparse.ArgumentParser(add_help=False)
    js.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common = [store, js]

    sessions = sub.add_parser("sessions", help="list, inspect and maintain the sessions of a store")
    ss = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = ss.add_parser("list", parents=common, help="stored sessions, oldest first")
    p.add_argument("--owner", help="only this owner's sessions")
    p.add_argument(
        "--status",
        type=_statuses,
        metavar="STATUS[,STATUS]",
        help="active, paused, completed, failed, timeout, cancelled; open (active and "
        "paused), ended (the other four); several with commas",
    )
    p.add_argument("--kind", choices=[k.value for k in SessionKind])
    p.add_argument("--limit", type=_page, default=50, help="at most this many (default 50)")
    p.add_argument("--offset", type=_page, default=0, help="skip this many first")

    p = ss.add_parser("show", parents=common, help="a session's record and timeline")
    p.add_argument("session_id", metavar="ID")

    p = ss.add_parser("stats", parents=common, help="totals by status, rates, durations")
    p.add_argument("--owner")
    p.add_argument("--kind", choices=[k.value for k in SessionKind])

    p = ss.add_parser("cancel", parents=common, help="end a session as CANCELLED")
    p.add_argument("session_id", metavar="ID")
    p.add_argument("--reason", help="why (kept in the record and the timeline)")

    p = ss.add_parser(
        "cleanup",
        parents=common,
        help="mark open sessions older than --max-age as TIMEOUT (deletes nothing)",
    )
    p.add_argument(
        "--max-age", type=_positive_duration, required=True, metavar="DURATION", dest="max_age"
    )

    p = ss.add_parser("export", parents=common, help="everything about a session, as JSON")
    p.add_argument("session_id", metavar="ID")

    p = ss.add_parser(
        "archive",
        parents=common,
        help="write ended sessions with their timelines to a JSON-lines file (deletes nothing)",
    )
    p.add_argument(
        "--older-than",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        dest="older_than",
        help="only sessions that ended at least this long ago (default: every ended one)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="the archive file (default: authpulse-archive-<UTC time>.jsonl; '-' for stdout)",
    )
    p.add_argument("--append", action="store_true", help="append to an existing --out file")
    p.add_argument(
        "--include-archived",
        action="store_true",
        dest="include_archived",
        help="also write sessions archived before",
    )

    p = ss.add_parser(
        "purge", parents=common, help="DELETE ended sessions that ended long enough ago"
    )
    p.add_argument(
        "--older-than", type=_duration, required=True, metavar="DURATION", dest="older_than"
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    p = sub.add_parser(
        "health", parents=common, help="a session's health score, from the stored data"
    )
    p.add_argument("session_id", metavar="ID")

    p = sub.add_parser(
        "refresh",
        parents=common,
        help="force a token refresh (needs AUTHPULSE_TOKEN_URL and AUTHPULSE_CLIENT_ID)",
    )
    p.add_argument("session_id", metavar="ID")

    p = sub.add_parser("serve", parents=[store], help="serve the web dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    p.add_argument(
        "--admin-token",
        dest="admin_token",
        metavar="TOKEN",
        help="token for the admin actions (default: AUTHPULSE_ADMIN_TOKEN, which keeps it "
        "out of the process list)",
    )
    return parser


# ------------------------------------------------------------------ output helpers


def _console(file: TextIO) -> Console:
    from .terminal import console

    # no markup, no highlighting, control characters made visible: owner names and
    # metadata are shown as they are, and never drive the terminal
    return console(file)


def _error(message: str) -> None:
    """One line on stderr, control characters made visible."""
    from .terminal import safe_text

    sys.stderr.write(f"authpulse: {safe_text(message)}\n")


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    """A UTC time for people."""
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"


def _span(seconds: float) -> str:
    """A duration for people: 45s, 12m 5s, 3h 20m, 2d 4h."""
    s = abs(seconds)
    if s < 60:
        text = f"{s:.0f}s"
    elif s < 3600:
        text = f"{int(s // 60)}m {int(s % 60)}s"
    elif s < 86400:
        text = f"{int(s // 3600)}h {int(s % 3600 // 60)}m"
    else:
        text = f"{int(s // 86400)}d {int(s % 86400 // 3600)}h"
    return text if seconds >= 0 else f"-{text}"


def _fields(fields: dict[str, Any]) -> str:
    f = dict(fields)
    parts = []
    if "from" in f and "to" in f:
        parts.append(f"{f.pop('from')} → {f.pop('to')}")
    parts += [f"{k}={v}" for k, v in f.items() if v is not None and v != ""]
    return ", ".join(parts)


_BAND_STYLES = {
    "excellent": "bold green",
    "good": "green",
    "fair": "yellow",
    "poor": "dark_orange",
    "critical": "bold red",
}
_STATUS_STYLES = {
    "ACTIVE": "green",
    "PAUSED": "yellow",
    "COMPLETED": "blue",
    "FAILED": "red",
    "TIMEOUT": "magenta",
    "CANCELLED": "dim",
}


@contextlib.contextmanager
def _progress(description: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (a terminal only); yields ``update(done, total)``."""
    if not enabled or not _stderr_is_terminal():
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    bar: Progress = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console(sys.stderr),
        transient=True,
    )
    task = bar.add_task(description, total=None)
    with bar:

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------ settings and store


def _load_settings() -> AuthpulseSettings:
    from .settings import AuthpulseSettings

    try:
        return AuthpulseSettings()
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _store_url(args: argparse.Namespace, settings: AuthpulseSettings) -> str:
    url = args.store if args.store is not None else settings.store_url.get_secret_value()
    return str(url)


def _open_store(url: str, settings: AuthpulseSettings, *, must_exist: bool) -> SessionStore:
    """Open and check the store; :class:`CliError` with exit code 4 if it cannot be used.
    Messages name the scheme or the SQLite path, never the rest of a URL."""
    from .._stores.base import StoreError
    from .._stores.open import open_store

    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "memory":
        raise CliError(
            "a memory:// store is empty in a new process: give --store sqlite:///path.db or "
            "redis://host:port/db (or set AUTHPULSE_STORE_URL)",
            EXIT_STORE,
        )
    if sep and scheme == "sqlite" and must_exist:
        path = rest.partition("?")[0]
        if path.startswith("/") and len(path) > 1:
            file = Path(unquote(path[1:]))
            if not file.is_file():
                raise CliError(f"no SQLite database at {str(file)!r}", EXIT_STORE)
    keys = [k.get_secret_value() for k in settings.encryption_keys]
    try:
        store = open_store(url, encryption_keys=keys or None)
    except ConfigurationError as exc:
        raise CliError(f"bad store URL: {exc}", EXIT_STORE) from None
    except StoreError as exc:
        raise CliError(str(exc), EXIT_STORE) from None
    ping = getattr(store, "ping", None)
    if callable(ping):
        try:
            ping()
        except StoreError as exc:
            store.close()
            raise CliError(str(exc), EXIT_STORE) from None
    return store


@contextlib.contextmanager
def _manager(args: argparse.Namespace, settings: AuthpulseSettings) -> Iterator[SessionManager]:
    store = _open_store(_store_url(args, settings), settings, must_exist=True)
    try:
        manager = settings.session_manager(store=store)
    except BaseException:
        store.close()
        raise
    try:
        yield manager
    finally:
        with contextlib.suppress(AuthpulseError):
            manager.shutdown()


class _SafeFormatter(logging.Formatter):
    """Log lines with their control characters made visible (a record may quote stored text)."""

    def format(self, record: logging.LogRecord) -> str:
        from .terminal import safe_text

        return safe_text(super().format(record))


@contextlib.contextmanager
def _log_to_stderr(level: str) -> Iterator[None]:
    """Library log records at ``level`` and above go to stderr while a command runs."""
    logger = logging.getLogger("authpulse")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("authpulse: %(levelname)s %(name)s: %(message)s"))
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# ------------------------------------------------------------------ commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.plain or not sys.stdout.isatty():
        summary = run_demo(args.duration, faults=args.faults)
    else:
        from .console import RichDashboard

        with RichDashboard(_console(sys.stdout)) as dash:
            summary = run_demo(args.duration, faults=args.faults, renderer=dash)
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED


def _ago(ts: float, now: float) -> str:
    return f"{_span(now - ts)} ago" if now >= ts else f"in {_span(ts - now)}"


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
            Text(r.status.value, _STATUS_STYLES.get(r.status.value, "")),
            _ago(r.created_at, now),
            f"ended {_ago(r.ended_at, now)}"
            if r.ended_at is not None
            else _ago(r.last_activity_at, now),
        )
    return table


def _cmd_list(args: argparse.Namespace, m: SessionManager) -> int:
    records = m.list(
        owner=args.owner,
        status=args.status,
        kind=args.kind,
        limit=args.limit,
        offset=args.offset,
    )
    if args.json:
        _print_json(
            {
                "sessions": [r.to_public_dict() for r in records],
                "count": len(records),
                "limit": args.limit,
                "offset": args.offset,
            }
        )
        return EXIT_OK
    out = _console(sys.stdout)
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


def _cmd_show(args: argparse.Namespace, m: SessionManager) -> int:
    from rich.table import Table
    from rich.text import Text

    record = m.record(args.session_id)
    timeline = m.timeline(args.session_id)
    if args.json:
        _print_json(
            {"session": record.to_public_dict(), "timeline": [e.to_dict() for e in timeline]}
        )
        return EXIT_OK
    out = _console(sys.stdout)
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim", no_wrap=True)
    info.add_column(overflow="fold")
    md = record.metadata
    rows: list[tuple[str, Any]] = [
        ("id", record.id),
        ("owner", record.owner),
        ("kind", record.kind.value),
        ("status", Text(record.status.value, _STATUS_STYLES.get(record.status.value, ""))),
        ("auth state", record.auth_state),
        ("created", _when(record.created_at)),
        ("last activity", _when(record.last_activity_at)),
        ("ended", _when(record.ended_at)),
        ("duration", _span(record.duration) if record.duration is not None else "-"),
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
        events.add_row(_when(e.at), e.kind.value, _fields(dict(e.fields)))
    if timeline:
        out.print(events)
    else:
        out.print("no events", style="dim")
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace, m: SessionManager) -> int:
    stats = m.stored_stats(owner=args.owner, kind=args.kind)
    if args.json:
        _print_json(stats.to_dict())
        return EXIT_OK
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    out = _console(sys.stdout)
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
        "-" if stats.average_duration is None else _span(stats.average_duration),
    )
    failures = ", ".join(f"{k} {v}" for k, v in stats.failure_distribution.items())
    grid.add_row("failures", failures or "-")
    out.print(grid)
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace, m: SessionManager) -> int:
    record = m.cancel_stored(args.session_id, args.reason)
    if args.json:
        _print_json({"session": record.to_public_dict()})
    else:
        _console(sys.stdout).print(f"session {record.id} cancelled")
    return EXIT_OK


def _cmd_cleanup(args: argparse.Namespace, m: SessionManager) -> int:
    with _progress("marking old sessions TIMEOUT", not args.json) as update:
        count = m.cleanup(args.max_age, include_stored=True, progress=update)
    if args.json:
        _print_json({"timed_out": count, "max_age": args.max_age})
    else:
        _console(sys.stdout).print(
            f"{count} open session(s) older than {_span(args.max_age)} marked TIMEOUT "
            "(nothing deleted)"
        )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace, m: SessionManager) -> int:
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


def _cmd_archive(args: argparse.Namespace, m: SessionManager) -> int:
    stream, name, close = _open_archive(args.out, args.append)
    seen = {"total": 0}

    def write(entry: dict[str, Any]) -> None:
        stream.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        stream.flush()

    try:
        with _progress("archiving ended sessions", not args.json) as update:

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
            _print_json(result)
    else:
        report = _console(sys.stderr if args.out == "-" else sys.stdout)
        note = f"; {skipped} archived before, skipped" if skipped else ""
        report.print(f"{count} ended session(s) written to {name}{note} (nothing deleted)")
    return EXIT_OK


def _confirm(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):  # no input at all: end the prompt's line
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _cmd_purge(args: argparse.Namespace, m: SessionManager) -> int:
    now = m.clock.now()
    candidates = m.ended_before(args.older_than, now=now)
    if not candidates:
        if args.json:
            _print_json({"purged": 0})
        else:
            _console(sys.stdout).print("nothing to purge")
        return EXIT_OK
    if not args.yes and not _confirm(
        f"Delete {len(candidates)} ended session(s) that ended before "
        f"{_when(now - args.older_than)}, with their timelines and token sets? "
        "This cannot be undone."
    ):
        raise CliError("purge cancelled: nothing deleted", EXIT_FAILED)
    with _progress("purging", not args.json) as update:
        count = m.purge(args.older_than, now=now, progress=update)
    if args.json:
        _print_json({"purged": count})
    else:
        _console(sys.stdout).print(f"{count} session(s) deleted")
    return EXIT_OK


def _health_view(
    session_id: str, status: str, report: HealthReport, expires_in: float | None
) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = _BAND_STYLES.get(report.band.value, "")
    head = Text.assemble(
        f"session {session_id}: ",
        (f"{report.score}", style),
        " ",
        (report.band.value, style),
        f"  ({status.lower()}; ",
        "no stored token"
        if expires_in is None
        else f"token expires in {_span(expires_in)}"
        if expires_in > 0
        else f"token expired {_span(-expires_in)} ago",
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


def _cmd_health(args: argparse.Namespace, m: SessionManager) -> int:
    record = m.record(args.session_id)
    report = m.health(args.session_id)
    stored = m.store.get_token(record.id)
    expires_in = None if stored is None else stored.token.expires_at - stored.skew - m.clock.now()
    if args.json:
        _print_json(
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
        _console(sys.stdout).print(_health_view(record.id, record.status.value, report, expires_in))
    return EXIT_OK


def _cmd_refresh(args: argparse.Namespace, m: SessionManager, settings: AuthpulseSettings) -> int:
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
        _print_json(
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
        _console(sys.stdout).print(
            f"session {record.id} refreshed: new access token expires in {_span(expires_in)} "
            f"({_when(token.expires_at)}); refresh token "
            f"{'rotated' if rotated else 'unchanged'}"
        )
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace, settings: AuthpulseSettings) -> int:
    url = _store_url(args, settings)
    _open_store(url, settings, must_exist=False).close()  # exit 4 now rather than later
    try:
        web = importlib.import_module("authpulse._surfaces.web")
    except ImportError as exc:
        missing = f" (missing module: {exc.name})" if exc.name else ""
        raise CliError(
            "authpulse serve needs the web dashboard (authpulse._surfaces.web), which cannot be "
            f"imported in this installation{missing}"
        ) from None
    serve = getattr(web, "serve", None)
    if not callable(serve):
        raise CliError("authpulse._surfaces.web has no serve() function")
    token = args.admin_token
    if token is None and settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
    serve(url, host=args.host, port=args.port, admin_token=token)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return _cmd_demo(args)
    settings = _load_settings()
    with _log_to_stderr(settings.log_level):
        if args.command == "serve":
            return _cmd_serve(args, settings)
        with _manager(args, settings) as m:
            if args.command == "health":
                return _cmd_health(args, m)
            if args.command == "refresh":
                return _cmd_refresh(args, m, settings)
            action: Callable[[argparse.Namespace, SessionManager], int] = {
                "list": _cmd_list,
                "show": _cmd_show,
                "stats": _cmd_stats,
                "cancel": _cmd_cancel,
                "cleanup": _cmd_cleanup,
                "export": _cmd_export,
                "archive": _cmd_archive,
                "purge": _cmd_purge,
            }[args.action]
            return action(args, m)


def _exit_code(exc: AuthpulseError) -> int:
    from .._fleet.manager import SessionNotFoundError
    from .._stores.base import StoreUnavailableError

    if isinstance(exc, SessionNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, StoreUnavailableError):
        return EXIT_STORE
    return EXIT_FAILED


def _message(exc: AuthpulseError) -> str:
    from .._stores.crypto import DecryptionError

    text = str(exc) or type(exc).__name__
    if isinstance(exc, DecryptionError):
        text += "; set AUTHPULSE_ENCRYPTION_KEYS to the store's keys"
    return text


#: what the command needs beyond the core: the ``cli`` extra
_CLI_EXTRA_MODULES = ("rich", "pydantic_settings")


def _check_cli_extra() -> None:
    """:class:`~authpulse.MissingExtraError` unless the ``cli`` extra is installed."""
    from .._core.errors import missing_extra

    for module in _CLI_EXTRA_MODULES:
        # found, not imported: ``--help`` and ``--version`` stay light
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing_extra("the authpulse command", "cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse exits with 2 itself).

    Without the ``cli`` extra it prints ``pip install 'authpulse[cli]'`` on stderr
    and returns 2."""
    from .._core.errors import MissingExtraError

    try:
        _check_cli_extra()
    except MissingExtraError as exc:
        sys.stderr.write(f"authpulse: {exc.install}\n")
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except AuthpulseError as exc:
        _error(_message(exc))
        return _exit_code(exc)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (`authpulse sessions list | head`): stop quietly
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

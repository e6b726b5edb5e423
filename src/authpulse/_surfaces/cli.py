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
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._core.errors import AuthpulseError
from .._core.model import SessionKind, SessionStatus
from .._version import __version__
from .commands.exits import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    CliError,
)
from .commands.login_args import add_login_commands

if TYPE_CHECKING:
    from .._fleet.manager import SessionManager

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

_FAULT_NAMES = ("idp-outage", "api-5xx", "revoked-grant", "key-rotation", "throttling")


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

    add_login_commands(sub, _positive_duration)

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


def _run(args: argparse.Namespace) -> int:
    from .commands.health import cmd_health, cmd_refresh
    from .commands.launch import cmd_demo, cmd_serve
    from .commands.output import log_to_stderr
    from .commands.sessions import (
        cmd_archive,
        cmd_cancel,
        cmd_cleanup,
        cmd_export,
        cmd_list,
        cmd_purge,
        cmd_show,
        cmd_stats,
    )
    from .commands.store import load_settings, open_manager

    if args.command == "demo":
        return cmd_demo(args)
    settings = load_settings()
    with log_to_stderr(settings.log_level):
        if args.command == "serve":
            return cmd_serve(args, settings)
        if args.command in ("login", "token", "logout"):
            from .commands import login

            return {"login": login.cmd_login, "token": login.cmd_token, "logout": login.cmd_logout}[
                args.command
            ](args, settings)
        with open_manager(args, settings) as m:
            if args.command == "health":
                return cmd_health(args, m)
            if args.command == "refresh":
                return cmd_refresh(args, m, settings)
            action: Callable[[argparse.Namespace, SessionManager], int] = {
                "list": cmd_list,
                "show": cmd_show,
                "stats": cmd_stats,
                "cancel": cmd_cancel,
                "cleanup": cmd_cleanup,
                "export": cmd_export,
                "archive": cmd_archive,
                "purge": cmd_purge,
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
    from .commands.output import error_line

    try:
        _check_cli_extra()
    except MissingExtraError as exc:
        sys.stderr.write(f"authpulse: {exc.install}\n")
        return EXIT_USAGE
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except CliError as exc:
        error_line(str(exc))
        return exc.code
    except AuthpulseError as exc:
        error_line(_message(exc))
        return _exit_code(exc)
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (`authpulse sessions list | head`): stop quietly
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

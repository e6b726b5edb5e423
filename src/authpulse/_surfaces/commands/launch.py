"""``authpulse demo`` and ``authpulse serve``: the commands that start something."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING

from .exits import EXIT_FAILED, EXIT_OK, CliError
from .output import console_for
from .store import open_checked_store, store_url

if TYPE_CHECKING:
    from ..settings import AuthpulseSettings

__all__ = ["cmd_demo", "cmd_serve"]


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    if args.plain or not sys.stdout.isatty():
        summary = run_demo(args.duration, faults=args.faults)
    else:
        from ..console import RichDashboard

        with RichDashboard(console_for(sys.stdout)) as dash:
            summary = run_demo(args.duration, faults=args.faults, renderer=dash)
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED


def cmd_serve(args: argparse.Namespace, settings: AuthpulseSettings) -> int:
    url = store_url(args, settings)
    open_checked_store(url, settings, must_exist=False).close()  # exit 4 now rather than later
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

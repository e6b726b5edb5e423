"""The arguments of ``authpulse login``, ``token`` and ``logout`` (light: no import
beyond argparse, so ``authpulse --help`` stays fast)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_login_commands"]


def add_login_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    duration: Callable[[str], float],
) -> None:
    """Add ``login``, ``token`` and ``logout`` to the command's subparsers."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--profile",
        default="default",
        help="the name this sign-in is kept under (default: default)",
    )
    where.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="where the session is kept (default: AUTHPULSE_STORE_URL, else the OS keychain, "
        "else an encrypted file)",
    )
    p = sub.add_parser(
        "login",
        parents=[where],
        help="sign a user in (device code or browser) and keep the session",
        description="Sign in at the issuer's authorization server and keep the session "
        "(its refresh token) for authpulse token. Prompts go to stderr.",
    )
    p.add_argument("--issuer", required=True, metavar="URL", help="the issuer (discovery)")
    p.add_argument("--client-id", required=True, dest="client_id", metavar="ID")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--device",
        dest="flow",
        action="store_const",
        const="device",
        help="show a code to enter on another device (the default)",
    )
    how.add_argument(
        "--browser",
        dest="flow",
        action="store_const",
        const="browser",
        help="open a browser here; the answer comes back to a local port",
    )
    p.add_argument("--scope", help="scopes to ask for, separated by spaces")
    p.add_argument(
        "--client-secret-env",
        dest="client_secret_env",
        metavar="VAR",
        help="a confidential client: the environment variable that holds its secret",
    )
    p.add_argument(
        "--no-open",
        dest="open_browser",
        action="store_false",
        help="with --browser: print the address instead of opening a browser",
    )
    p.add_argument(
        "--timeout",
        type=duration,
        default=300.0,
        metavar="DURATION",
        help="with --browser: give up after this long (default 5m); a device code ends when "
        "it expires",
    )
    sub.add_parser(
        "token",
        parents=[where],
        help="print a fresh access token (refreshing if needed); nothing else on stdout",
    )
    p = sub.add_parser("logout", parents=[where], help="revoke the sign-in and forget it")
    p.add_argument(
        "--local-only",
        dest="local_only",
        action="store_true",
        help="forget the session without asking the IdP to revoke it",
    )

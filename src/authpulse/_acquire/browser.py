"""Showing a browser login's URL to the user: open it in their browser
(:mod:`webbrowser`), and print it, in case no browser opened."""

from __future__ import annotations

import logging
import sys
import webbrowser
from collections.abc import Callable

from .._core.errors import ConfigurationError

__all__ = ["BrowserOpener", "UrlShower", "check_opener", "open_url", "print_url"]

log = logging.getLogger("authpulse.login")

#: opens a URL in a browser; what it returns is ignored
BrowserOpener = Callable[[str], object]
#: shows a URL to the user (the default prints it to stderr)
UrlShower = Callable[[str], object]


def print_url(url: str) -> None:
    """The default ``show_url``: the URL on stderr, for the user to open."""
    print(f"To sign in, open this URL in a browser:\n\n    {url}\n", file=sys.stderr, flush=True)


def check_opener(
    open_browser: bool | BrowserOpener, show_url: UrlShower | None
) -> tuple[BrowserOpener | None, UrlShower]:
    """``open_browser`` (``True``: :func:`webbrowser.open`; ``False``: none; or a
    callable) and ``show_url`` (default :func:`print_url`), checked."""
    if isinstance(open_browser, bool):
        opener: BrowserOpener | None = webbrowser.open if open_browser else None
    elif callable(open_browser):
        opener = open_browser
    else:
        raise ConfigurationError("open_browser must be a boolean or a callable taking the URL")
    if show_url is not None and not callable(show_url):
        raise ConfigurationError("show_url must be a callable taking the URL")
    return opener, show_url if show_url is not None else print_url


def open_url(url: str, opener: BrowserOpener | None, show: UrlShower) -> None:
    """Open ``url`` with ``opener`` (a failure is logged, without the URL: it
    carries the login's state), then show it."""
    if opener is not None:
        try:
            opener(url)
        except Exception as exc:
            log.warning("could not open a browser for the login (%s)", type(exc).__name__)
    show(url)

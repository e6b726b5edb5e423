"""What the command prints: a safe rich console, one-line errors, JSON, times and
durations for people, progress bars, the prompt, and library logs on stderr."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from ..terminal import BAND_STYLES

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


__all__ = [
    "BAND_STYLES",
    "STATUS_STYLES",
    "confirm",
    "console_for",
    "error_line",
    "fields_text",
    "log_to_stderr",
    "print_json",
    "progress",
    "span",
    "stderr_is_terminal",
    "when",
]


def console_for(file: TextIO) -> Console:
    from ..terminal import console

    # no markup, no highlighting, control characters made visible: owner names and
    # metadata are shown as they are, and never drive the terminal
    return console(file)


def error_line(message: str) -> None:
    """One line on stderr, control characters made visible."""
    from ..terminal import safe_text

    sys.stderr.write(f"authpulse: {safe_text(message)}\n")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    """A UTC time for people."""
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"


def span(seconds: float) -> str:
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


def fields_text(fields: dict[str, Any]) -> str:
    f = dict(fields)
    parts = []
    if "from" in f and "to" in f:
        parts.append(f"{f.pop('from')} → {f.pop('to')}")
    parts += [f"{k}={v}" for k, v in f.items() if v is not None and v != ""]
    return ", ".join(parts)


STATUS_STYLES = {
    "ACTIVE": "green",
    "PAUSED": "yellow",
    "COMPLETED": "blue",
    "FAILED": "red",
    "TIMEOUT": "magenta",
    "CANCELLED": "dim",
}


@contextlib.contextmanager
def progress(description: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (a terminal only); yields ``update(done, total)``."""
    if not enabled or not stderr_is_terminal():
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
        console=console_for(sys.stderr),
        transient=True,
    )
    task = bar.add_task(description, total=None)
    with bar:

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _SafeFormatter(logging.Formatter):
    """Log lines with their control characters made visible (a record may quote stored text)."""

    def format(self, record: logging.LogRecord) -> str:
        from ..terminal import safe_text

        return safe_text(super().format(record))


@contextlib.contextmanager
def log_to_stderr(level: str) -> Iterator[None]:
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


def confirm(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):  # no input at all: end the prompt's line
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")

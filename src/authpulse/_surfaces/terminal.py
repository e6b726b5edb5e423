"""Text for a terminal: what the ``authpulse`` command prints never drives the terminal.

Owner names, metadata, reasons and error messages come from a store that other
programs write. Printed raw, an escape sequence among them could retitle the
window, clear the screen or hide text, and a bidirectional override could
reorder what a reader sees. :func:`safe_text` makes every such character
visible instead (``\\x1b``, ``\\u202e``); :func:`console` gives a rich console that
applies it to all it prints, whatever the renderable, and never reads markup
in the text it is given.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.text import Text

__all__ = ["BAND_STYLES", "console", "safe_text"]

#: the rich style of each health band, wherever a band is printed
BAND_STYLES = {
    "excellent": "bold green",
    "good": "green",
    "fair": "yellow",
    "poor": "dark_orange",
    "critical": "bold red",
}

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), and the
# bidirectional marks, embeddings, overrides and isolates
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    r"""``text`` with every control character but tab and newline, and every
    bidirectional control, replaced by its visible escape (``"\x1b[2J"`` becomes
    ``"\\x1b[2J"``). Text that has none is returned as it is."""
    return _UNSAFE.sub(_visible, text) if _UNSAFE.search(text) else text


@functools.cache
def _console_type() -> type[Console]:
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        """A console whose text, however it is built, goes through :func:`safe_text`:
        strings before layout (so widths are right), every segment of content after
        (for ``Text`` objects built elsewhere). Rich's own control segments (cursor
        moves of a live display) pass untouched."""

        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(safe_text(text), **kwargs)

        def render(
            self, renderable: RenderableType, options: ConsoleOptions | None = None
        ) -> Iterable[Segment]:
            for segment in super().render(renderable, options):
                if segment.control or not _UNSAFE.search(segment.text):
                    yield segment
                else:
                    yield Segment(safe_text(segment.text), segment.style)

    return SafeConsole


def console(file: TextIO) -> Console:
    """A rich console on ``file`` that prints text as it is, markup and control
    characters included, never interpreted: ``[bold]x`` prints ``[bold]x`` and
    ``ESC[2J`` prints ``\\x1b[2J``."""
    return _console_type()(file=file, markup=False, highlight=False, emoji=False, soft_wrap=True)

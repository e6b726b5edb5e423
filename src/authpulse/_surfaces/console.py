"""The live terminal dashboard of ``authpulse demo`` (rich).

:class:`RichDashboard` is a :class:`~authpulse._surfaces.demo.DemoRenderer`: the demo
hands it one :class:`~authpulse._surfaces.demo.DemoFrame` per second and it redraws
the screen in place; at the end it leaves the last frame and the summary.
Everything shown comes from the frame, so the rendering is a pure function
(:func:`render_frame`) that tests call directly.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .._sessions.stats import refresh_counts
from .demo import DemoFrame, DemoIntro, DemoSummary, summary_items
from .terminal import BAND_STYLES

__all__ = [
    "AUTH_STATE_STYLES",
    "BAND_STYLES",
    "BREAKER_STYLES",
    "RichDashboard",
    "render_frame",
    "render_summary",
]

AUTH_STATE_STYLES = {
    "fresh": "green",
    "refreshing": "cyan",
    "degraded": "yellow",
    "expired": "red",
    "fallback": "magenta",
    "login_required": "bold red",
    "closed": "dim",
}
BREAKER_STYLES = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def _kv(rows: list[tuple[str, Text | str]]) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _countdown(seconds: float | None) -> Text:
    if seconds is None:
        return Text("no token", style="red")
    if seconds <= 0:
        return Text("expired", style="bold red")
    style = "green" if seconds > 2 else "yellow"
    return Text(f"{seconds:5.1f}s", style=style)


def render_frame(frame: DemoFrame, intro: DemoIntro | None = None) -> RenderableType:
    """The dashboard for one frame."""
    h = frame.health
    band_style = BAND_STYLES.get(h.band.value, "")
    score = Text.assemble(
        (f"{h.score:3d}", f"{band_style} bold"), " ", (h.band.value.upper(), band_style)
    )
    reasons = Table.grid(padding=(0, 1))
    reasons.add_column(justify="right", style="red", no_wrap=True)
    reasons.add_column()
    for c in h.components[:4]:
        reasons.add_row(f"-{c.penalty}", Text(f"{c.name}: {c.reason}"))
    if not h.components:
        reasons.add_row("", Text("nothing costs points", style="dim"))
    health = Panel(Group(score, reasons), title="health", border_style=band_style)

    session = Panel(
        _kv(
            [
                ("auth state", Text(frame.auth_state, AUTH_STATE_STYLES.get(frame.auth_state, ""))),
                ("token expires in", _countdown(frame.token_expires_in)),
                ("generation", str(frame.generation)),
                ("refreshes", refresh_counts(frame.refreshes, frame.refresh_failures)),
                (
                    "fallback level",
                    Text(str(frame.fallback_level), "magenta" if frame.fallback_level else ""),
                ),
            ]
        ),
        title="session",
    )
    cs = frame.cache
    cache_rows: list[tuple[str, Text | str]] = (
        [("cache", Text("off", style="dim"))]
        if cs is None
        else [
            ("cache", f"{cs.hits} hits / {cs.misses} misses"),
            ("stale served", str(frame.stale)),
            ("cache entries", str(cs.entries)),
        ]
    )
    traffic = Panel(
        _kv(
            [
                (
                    "calls",
                    Text.assemble(
                        (f"{frame.calls} ok", "green"),
                        " / ",
                        (f"{frame.failed} failed", "bold red" if frame.failed else "dim"),
                    ),
                ),
                ("API retries", str(frame.api_retries)),
                ("breaker", Text(frame.breaker, BREAKER_STYLES.get(frame.breaker, ""))),
                *cache_rows,
            ]
        ),
        title="resilience",
    )
    top = Table.grid(expand=True, padding=(0, 1))
    top.add_column(ratio=1)
    top.add_column(ratio=1)
    top.add_row(health, Group(session, traffic))

    events = Table(expand=True, box=None, padding=(0, 1), show_header=True)
    events.add_column("t", justify="right", style="dim", no_wrap=True, width=6)
    events.add_column("event", no_wrap=True, style="cyan")
    events.add_column("detail", overflow="fold")
    for e in frame.events:
        style = "bold yellow" if e.fault else ""
        events.add_row(f"{e.elapsed:5.1f}s", Text(e.kind, style or "cyan"), Text(e.detail))
    if not frame.events:
        events.add_row("", Text("—", style="dim"), "")

    faults = ", ".join(frame.active_faults) if frame.active_faults else "none"
    header = Table.grid(expand=True, padding=(0, 1))
    header.add_column(no_wrap=True)
    header.add_column(ratio=1)
    header.add_column(no_wrap=True, justify="right")
    header.add_row(
        Text.assemble(("authpulse demo", "bold"), f"  t={frame.elapsed:5.1f}s"),
        ProgressBar(total=max(frame.duration, 1e-9), completed=min(frame.elapsed, frame.duration)),
        Text.assemble("fault: ", (faults, "bold yellow" if frame.active_faults else "dim")),
    )
    parts: list[RenderableType] = [header, top, Panel(events, title="recent events")]
    if intro is not None and intro.faults:
        plan = " · ".join(f"{start:.1f}s {name}" for start, name, _ in intro.faults)
        parts.append(Text(f"faults: {plan}", style="dim"))
    return Group(*parts)


def render_summary(summary: DemoSummary) -> RenderableType:
    """The end-of-run summary panel."""
    ok = summary.failed == 0
    items = Table.grid(padding=(0, 2))
    items.add_column(style="dim", no_wrap=True)
    items.add_column(overflow="fold")
    for label, value in summary_items(summary):
        items.add_row(label, value)
    return Panel(
        items,
        title="summary",
        border_style="green" if ok else "red",
    )


class RichDashboard:
    """A live dashboard on ``console``, redrawn on every frame (once a second).

    Use it as a context manager so the terminal is restored even if the demo
    is interrupted::

        with RichDashboard(Console()) as dash:
            run_demo(renderer=dash)
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._intro: DemoIntro | None = None
        self._live: Live | None = None
        self.frames = 0

    def __enter__(self) -> RichDashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, intro: DemoIntro) -> None:
        self._intro = intro
        self._live = Live(
            Text(f"authpulse demo: {intro.duration:.0f}s, tokens live {intro.token_ttl:.1f}s"),
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start(refresh=True)

    def frame(self, frame: DemoFrame) -> None:
        self.frames += 1
        if self._live is not None:
            self._live.update(render_frame(frame, self._intro), refresh=True)

    def finish(self, summary: DemoSummary) -> None:
        self.close()
        self.console.print(render_summary(summary))

    def close(self) -> None:
        """Stop redrawing (idempotent)."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

"""Refresh counts read the same everywhere and add up (attempted = succeeded +
failed); the demo's summary panel shows every label whole at 100 and 160 columns;
the README's health comment is what the code prints."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from rich.console import Console

import authpulse
from authpulse._sessions.stats import refresh_counts
from authpulse._surfaces.console import render_frame, render_summary
from authpulse._surfaces.demo import DemoFrame, DemoIntro, DemoSummary, run_demo, summary_items
from authpulse.testing import FakeAPI, FakeClock, FakeIdP

ROOT = Path(__file__).resolve().parent.parent
COUNTS = re.compile(r"(\d+) attempted, (\d+) succeeded, (\d+) failed")


class Recorder:
    """A demo renderer that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[DemoFrame] = []
        self.summary: DemoSummary | None = None

    def start(self, intro: DemoIntro) -> None:
        pass

    def frame(self, frame: DemoFrame) -> None:
        self.frames.append(frame)

    def finish(self, summary: DemoSummary) -> None:
        self.summary = summary


@pytest.fixture(scope="module")
def recorded() -> Recorder:
    rec = Recorder()
    run_demo(20.0, clock=FakeClock(), renderer=rec)
    assert rec.summary is not None
    assert rec.summary.refresh_failures >= 1  # the run has both kinds to count
    return rec


def assert_counts_add_up(text: str) -> int:
    found = COUNTS.findall(text)
    for attempted, succeeded, failed in found:
        assert int(attempted) == int(succeeded) + int(failed), text
    return len(found)


def test_refresh_counts_wording() -> None:
    assert refresh_counts(2, 3) == "5 attempted, 2 succeeded, 3 failed"
    assert refresh_counts(0, 0) == "0 attempted, 0 succeeded, 0 failed"


def test_refresh_stats_attempted_is_succeeded_plus_failed(recorded: Recorder) -> None:
    idp = FakeIdP(clock=FakeClock())
    session = authpulse.Session(
        authpulse.ClientCredentials(idp.token_url, "client", "secret"),
        clock=idp.clock,
        transport=idp.transport,
    )
    session.token()
    st = session.stats()
    assert (st.refreshes, st.failures, st.attempted) == (1, 0, 1)


def test_plain_demo_lines_and_summary_use_the_one_wording() -> None:
    out = io.StringIO()
    summary = run_demo(20.0, clock=FakeClock(), out=out)
    text = out.getvalue()
    lines = [line for line in text.splitlines() if line.startswith("t=")]
    assert lines
    for line in lines:
        assert "refreshes: " in line
        assert assert_counts_add_up(line) == 1
    assert "(failed" not in text
    assert not re.search(r"\d+ refresh failures", text)
    expected = refresh_counts(summary.refreshes, summary.refresh_failures)
    assert f"refreshes: {expected}" in text.split("summary:")[1]


@pytest.mark.parametrize("width", [100, 160])
def test_dashboard_frame_counts_add_up(recorded: Recorder, width: int) -> None:
    console = Console(width=width, record=True, file=io.StringIO())
    frame = recorded.frames[-1]
    console.print(render_frame(frame))
    # a narrow panel may wrap the value onto the next line: read it without the borders
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", console.export_text()).split())
    assert refresh_counts(frame.refreshes, frame.refresh_failures) in text
    assert assert_counts_add_up(text) == 1
    assert "failed)" not in text


@pytest.mark.parametrize("width", [100, 160])
@pytest.mark.parametrize("soft_wrap", [False, True])
def test_summary_panel_shows_every_label_whole(
    recorded: Recorder, width: int, soft_wrap: bool
) -> None:
    """As the CLI prints it (a soft-wrapping console) and as rich does by default:
    nothing is cut at the panel's edge."""
    summary = recorded.summary
    assert summary is not None
    console = Console(width=width, record=True, file=io.StringIO(), soft_wrap=soft_wrap)
    console.print(render_summary(summary))
    text = console.export_text()
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    for label, value in summary_items(summary):
        row = next((line for line in lines if f" {label} " in line), None)
        assert row is not None, f"label {label!r} missing or cut at {width} columns"
        assert value in row, (label, value, row)
    assert assert_counts_add_up(text) == 1


def test_readme_health_comment_is_what_the_code_prints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"print\(client\.health\(\)\.score, client\.health\(\)\.band\)\s*# (.+)", readme
    )
    assert match is not None
    clock = FakeClock()
    idp = FakeIdP(clock=clock)
    api = FakeAPI(idp)
    session = authpulse.Session(
        authpulse.ClientCredentials(idp.token_url, "client", "secret"),
        clock=clock,
        transport=idp.transport,
        origins=[api.base_url],
    )
    out = io.StringIO()
    with authpulse.Client(session, base_url=api.base_url, transport=api.transport) as client:
        assert client.get("/v1/items").status_code == 200
        with redirect_stdout(out):
            print(client.health().score, client.health().band)
    assert out.getvalue().strip() == match.group(1).strip()

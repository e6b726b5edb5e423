"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

The page must load with its CSP intact (no console errors), show live
sessions, follow a fault injected into the fake IdP and API as the score
drops, and force a refresh with the admin token typed into the page.

Without ``chromium`` or the ``playwright`` package these tests are skipped,
unless the environment says ``CI=true``: then they fail, so CI cannot go
green by silently not testing the page (``make test`` installs both).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from authpulse import (
    AuthpulseError,
    ClientCredentials,
    DashboardServer,
    ManagedSession,
    SessionManager,
)
from authpulse.testing import FakeAPI, FakeClock, FakeIdP, Fault

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = (
    "install them with: apt-get install -y chromium chromium-driver; pip install playwright "
    "(never `playwright install`: the tests use Debian's chromium)"
)
ADMIN = "browser-admin-token-0123456789"
WAIT_MS = 15_000  # the page polls every 1.5 s; a bound, not a duration we measure


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} and CI=true requires the browser tests to run; {INSTALL_HINT}")
    pytest.skip(f"{reason}: the browser tests need it ({INSTALL_HINT})")


def chromium_path() -> str:
    """Debian's chromium; skips the test without one (fails it with ``CI=true``)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if not found:
        _missing("chromium is not installed (/usr/bin/chromium)")
    return found


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    """A page in a fresh headless Chromium profile under ``tmp_path``."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            timeout=60_000,
        )
        try:
            context.set_default_timeout(WAIT_MS)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Errors the page logs (a CSP violation or a script error shows up here)."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


@pytest.fixture
def manager(clock: FakeClock, idp: FakeIdP) -> Iterator[SessionManager]:
    m = SessionManager(
        clock=clock, transport=idp.transport, async_transport=idp.async_transport, seed=7
    )
    yield m
    m.shutdown()


def cc(idp: FakeIdP) -> ClientCredentials:
    return ClientCredentials(idp.token_url, "client", "secret")


def unexpected(errors: list[str], *statuses: int) -> list[str]:
    """Console errors other than the browser's note of an expected HTTP status."""
    expected = tuple(f"status of {s} " for s in statuses)
    return [
        e
        for e in errors
        if not (e.startswith("Failed to load resource") and any(x in e for x in expected))
    ]


def score_of(locator: Locator) -> Locator:
    return locator.locator(".score")


def band_class(band: str) -> re.Pattern[str]:
    return re.compile(rf"\bband-{band}\b")


def fleet(manager: SessionManager, idp: FakeIdP, clock: FakeClock) -> ManagedSession:
    """Four sessions, one per look: healthy, never authenticated, ended, and the
    one the test works on (returned)."""
    checkout = manager.create_session(
        "alice", cc(idp), session_id="checkout-api", kind="integration", labels=["checkout"]
    )
    checkout.session.token()
    billing = manager.create_session("bob", cc(idp), session_id="billing-sync", kind="system")
    billing.session.token()
    manager.create_session("carol", cc(idp), session_id="crm-import", kind="integration")
    manager.create_session("dave", cc(idp), session_id="nightly-report", kind="system")
    manager.close("nightly-report", error="report delivered")
    clock.advance(60)
    return checkout


def test_the_page_follows_a_fault_and_forces_a_refresh(
    page: Page,
    console_errors: list[str],
    manager: SessionManager,
    idp: FakeIdP,
    api: FakeAPI,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    checkout = fleet(manager, idp, clock)
    with DashboardServer(manager, admin_token=ADMIN, sample_interval=None) as server:
        page.goto(server.url + "/")

        # -- the list: live sessions, scores in their band colours
        row = page.locator('tr[data-session-id="checkout-api"]')
        expect(score_of(row)).to_have_text("100")
        expect(score_of(row)).to_have_class(band_class("excellent"))
        expect(row).to_contain_text("fresh")
        expect(row).to_contain_text("ACTIVE")
        expect(row.locator(".expiry")).to_have_text(re.compile(r"^\d+m \d\ds$"))
        no_token = page.locator('tr[data-session-id="crm-import"]')
        expect(score_of(no_token)).to_have_text("50")
        expect(score_of(no_token)).to_have_class(band_class("fair"))
        expect(page.locator('tr[data-session-id="nightly-report"]')).to_have_class("ended")
        expect(page.locator("#summary")).to_contain_text("4 sessions · 3 open")

        # -- fault 1: an IdP outage while a refresh is attempted
        idp.set_outage(Fault(status=503))
        with pytest.raises(AuthpulseError):
            checkout.session.force_refresh()
        idp.set_outage(None)
        after_outage = manager.health("checkout-api")
        assert after_outage.score < 100
        expect(score_of(row)).to_have_text(str(after_outage.score))
        expect(score_of(row)).to_have_class(band_class(after_outage.band.value))
        expect(row).to_contain_text("degraded")
        expect(row.locator(".last-error")).to_contain_text("TokenEndpointError")

        # -- fault 2: an API failure burst through a client of that session
        clock.advance(20)
        api.fail_next(6)
        with checkout.client(
            base_url=api.base_url, transport=api.transport, retry=False, breaker=False
        ) as client:
            statuses = [client.get("/orders").status_code for _ in range(8)]
        assert statuses.count(503) == 6
        after_burst = manager.health("checkout-api")
        assert after_burst.score < after_outage.score
        expect(score_of(row)).to_have_text(str(after_burst.score))
        expect(score_of(row)).to_have_class(band_class(after_burst.band.value))
        page.screenshot(path=tmp_path / "sessions.png")

        # -- the session page: what costs points, the chart, the timeline
        row.locator("a.session-id").click()
        expect(page).to_have_url(re.compile(r"#/session/checkout-api$"))
        detail_score = page.locator("#detail-score")
        expect(detail_score).to_have_text(str(after_burst.score))
        for component in after_burst.components:
            expect(
                page.locator(f'#components-body tr[data-component="{component.name}"]')
            ).to_contain_text(f"−{component.penalty}")
        expect(page.locator("#timeline li[data-kind='refresh_failed']")).to_have_count(1)
        expect(page.locator("#health-chart path.line")).to_have_count(1)
        # 100, then the score after the outage, then after the burst (at least)
        assert int(page.locator("#chart").get_attribute("data-samples") or 0) >= 3
        # the request figures say what they count: "ok", and "smooth" explained on hover
        requests = page.locator("#detail-requests span")
        expect(requests).to_contain_text("8 in window · 25% ok · ")
        expect(requests).to_contain_text("% smooth")
        expect(requests).not_to_contain_text("UX")
        assert "smooth: calls that also did not wait" in (requests.get_attribute("title") or "")
        refreshes = page.locator("#detail-refreshes")
        before = checkout.session.stats().refreshes
        expect(refreshes).to_have_text(str(before))

        # -- actions need the admin token: none yet, then a wrong one, then the right one
        force = page.locator("#btn-refresh")
        expect(force).to_be_disabled()
        calls = idp.token_calls
        page.fill("#admin-token", "not-the-admin-token-at-all")
        page.click("#admin-save")
        expect(force).to_be_enabled()
        force.click()
        expect(page.locator("#action-result")).to_have_text("the admin token was refused")
        assert idp.token_calls == calls

        page.fill("#admin-token", ADMIN)
        page.click("#admin-save")
        expect(page.locator("#admin-token")).to_have_value("")  # kept in sessionStorage only
        assert page.evaluate("sessionStorage.getItem('authpulse.adminToken')") == ADMIN
        clock.advance(20)
        force.click()
        expect(page.locator("#action-result")).to_contain_text("refreshed")
        expect(refreshes).to_have_text(str(before + 1))
        assert idp.token_calls == calls + 1
        assert checkout.session.stats().refreshes == before + 1
        recovered = manager.health("checkout-api")
        assert recovered.score > after_burst.score  # the refresh cleared the refresh penalty
        expect(detail_score).to_have_text(str(recovered.score))
        expect(detail_score).to_have_class(band_class(recovered.band.value))
        expect(page.locator("#timeline li[data-kind='token_refreshed']")).to_have_count(2)

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=shot)  # the viewport: header, score, chart, what costs points
        assert shot.stat().st_size > 10_000

        # -- back to the list: the refresh count went up there too
        page.click("a.back")
        expect(row.locator(".refreshes")).to_have_attribute("data-refreshes", str(before + 1))
        assert unexpected(console_errors, 401) == []  # the wrong token's 401 only


def test_the_page_shows_when_actions_are_off_and_unknown_sessions(
    page: Page,
    console_errors: list[str],
    manager: SessionManager,
    idp: FakeIdP,
    clock: FakeClock,
) -> None:
    from playwright.sync_api import expect

    fleet(manager, idp, clock)
    with DashboardServer(manager, sample_interval=None) as server:
        page.goto(server.url + "/#/session/billing-sync")
        expect(page.locator("#detail-score")).to_have_text("100")
        expect(page.locator("#admin-state")).to_have_text("actions are off on this server")
        expect(page.locator("#btn-refresh")).to_be_disabled()
        expect(page.locator("#btn-cancel")).to_be_disabled()

        page.goto(server.url + "/#/session/no-such-session")
        expect(page.locator("#detail-sub")).to_have_text("no such session")

        page.goto(server.url + "/#/")
        expect(page.locator("#sessions-body tr")).to_have_count(4)
        assert unexpected(console_errors, 404) == []  # the unknown id's 404 only


def test_chromium_refuses_what_the_csp_forbids(
    page: Page, console_errors: list[str], manager: SessionManager
) -> None:
    """The page's CSP is in force: an injected inline script does not run."""
    from playwright.sync_api import expect

    with DashboardServer(manager, sample_interval=None) as server:
        page.goto(server.url + "/")
        expect(page.locator("#conn-state")).to_have_class(re.compile(r"\blive\b"))
        with contextlib.suppress(Exception):
            page.evaluate(
                """() => { const s = document.createElement('script');
                           s.textContent = 'window.__injected = true';
                           document.head.append(s); }"""
            )
        assert page.evaluate("window.__injected === undefined")
        assert any("Content Security Policy" in e for e in console_errors)

from __future__ import annotations

import io

from authpulse._surfaces.cli import main
from authpulse._surfaces.demo import run_demo
from authpulse.testing import FakeClock


def test_demo_survives_outage_and_rotation_without_user_visible_failure() -> None:
    out = io.StringIO()
    summary = run_demo(20.0, clock=FakeClock(), out=out)
    assert summary.calls > 300
    assert summary.failed == 0
    assert summary.refresh_failures >= 1  # the outage was felt ...
    assert summary.lowest_score < 100  # ... and showed in the health score
    # ... and recovered from: back in the excellent band (stale cache answers of the last
    # five minutes, and the retried calls still in the request window, cost a few points)
    assert summary.final_score >= 80
    assert summary.final_score > summary.lowest_score
    assert summary.replays_after_401 >= 1
    assert summary.reuse_detected == 0
    assert summary.api_retries > 0  # the 5xx and throttling bursts were retried
    assert summary.breaker_opened
    assert summary.stale_served > 0  # ... and answered from the cache while open
    assert summary.highest_fallback_level == 1  # the revoked grant fell back
    assert summary.ux_score is not None
    assert summary.ux_score is not None
    assert summary.ux_score >= 95.0
    text = out.getvalue()
    assert "summary:" in text
    assert text.count("\nt=") >= 18
    assert "degraded" in text  # the auth state column shows the outage
    assert "breaker open" in text
    assert "fallback 1" in text


def test_cli_rejects_bad_duration(capsys: object) -> None:
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--duration", "-1"])
    assert exc.value.code == 2


def test_demo_with_one_fault_only() -> None:
    out = io.StringIO()
    summary = run_demo(10.0, clock=FakeClock(), out=out, faults=("api-5xx",))
    assert summary.failed == 0
    assert summary.refresh_failures == 0
    assert summary.highest_fallback_level == 0
    assert summary.faults == ("api-5xx",)


def test_cli_rejects_unknown_fault() -> None:
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--faults", "meteor"])
    assert exc.value.code == 2

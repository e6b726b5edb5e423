"""docs/api.md is generated from ``authpulse.__all__`` and must not drift from it."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path

import authpulse

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_api_docs.py"


def test_every_public_name_has_a_topic() -> None:
    script = runpy.run_path(str(SCRIPT))
    missing: Callable[[], list[str]] = script["missing"]
    assert missing() == [], "add these names to TOPICS in scripts/gen_api_docs.py"


def test_api_docs_are_current() -> None:
    script = runpy.run_path(str(SCRIPT))
    render: Callable[[], str] = script["render"]
    main: Callable[[list[str]], int] = script["main"]
    text = render()
    for name in authpulse.__all__:
        assert f"### `{name}` (" in text, name
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == text, "docs/api.md is stale: run scripts/gen_api_docs.py"
    assert main(["--check"]) == 0

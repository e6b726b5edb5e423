"""Every ``sqlite:///`` URL in the documentation, the README, the examples and the
package's own text means what it looks like under :func:`authpulse.open_store`'s rule:
``sqlite:///relative.db`` is relative to the working directory, ``sqlite:////abs.db``
is absolute. A URL written ``sqlite:///var/lib/app.db`` opens ``./var/lib/app.db``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import authpulse
import authpulse._stores.sqlite

ROOT = Path(__file__).resolve().parent.parent
# a top-level directory of a Unix system: a relative path starting with one of these
# is an absolute path that lost its leading slash
_SYSTEM_DIRS = frozenset(
    {"bin", "data", "etc", "home", "mnt", "opt", "root", "run", "srv", "tmp", "usr", "var"}
)
_URL = re.compile(r"sqlite:///[^\s`'\"()\[\]<>,;|]*")


def documents() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "examples").rglob("*.py"))
    files += sorted((ROOT / "src" / "authpulse").rglob("*.py"))
    return [f for f in files if f.is_file()]


def literal_urls() -> list[tuple[str, str]]:
    """(file:line, url) for every literal sqlite URL (f-string templates left out)."""
    found = []
    for file in documents():
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            for url in _URL.findall(line):
                if "{" in url or "…" in url or url.endswith("..."):
                    continue
                found.append((f"{file.relative_to(ROOT)}:{n}", url))
    return found


def opened_path(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The path ``open_store`` itself gives the SQLite store for ``url``."""
    seen: list[str] = []

    class Recorder:
        def __init__(self, path: str, **_: Any) -> None:
            seen.append(path)

    monkeypatch.setattr(authpulse._stores.sqlite, "SQLiteStore", Recorder)
    authpulse.open_store(url)
    assert len(seen) == 1
    return seen[0]


def test_the_docs_have_sqlite_urls_to_check() -> None:
    urls = [u for _, u in literal_urls()]
    assert any(u.startswith("sqlite:////") for u in urls)
    assert any(not u.startswith("sqlite:////") for u in urls)


@pytest.mark.parametrize(("where", "url"), literal_urls(), ids=lambda v: v)
def test_documented_sqlite_url_means_what_it_looks_like(
    where: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = opened_path(url, monkeypatch)
    if Path(path).is_absolute():
        assert url.startswith("sqlite:////"), where
    else:
        first = Path(path).parts[0]
        assert first not in _SYSTEM_DIRS, (
            f"{where}: {url} opens the relative path {path!r}; "
            f"an absolute path needs four slashes: sqlite:////{path}"
        )


def test_the_rule_itself() -> None:
    """The check above rests on this: three slashes relative, four absolute."""
    with pytest.MonkeyPatch.context() as mp:
        assert opened_path("sqlite:///var/lib/app.db", mp) == "var/lib/app.db"
        assert opened_path("sqlite:////var/lib/app.db", mp) == "/var/lib/app.db"

"""``import authpulse`` and the light CLI paths (``--help``, ``--version``) import no
optional or heavy dependency; every public name still resolves, on first use."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

import authpulse
from authpulse._surfaces.cli import main

HEAVY = (
    "redis",
    "rich",
    "pydantic_settings",
    "cryptography",
    "prometheus_client",
    "opentelemetry",
    "authpulse._stores.redis",
    "authpulse._surfaces.web",
    "authpulse._surfaces.demo",
    "authpulse._surfaces.settings",
)


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_import_authpulse_imports_no_optional_backend() -> None:
    assert loaded_after("import authpulse") == []


def test_the_core_names_do_not_pull_redis_rich_or_the_dashboard() -> None:
    # httpx's own command-line module imports rich when rich and click are both
    # installed; what counts is what authpulse adds on top of ``import httpx``.
    by_httpx = set(loaded_after("import httpx"))
    loaded = [
        name
        for name in loaded_after(
            "import authpulse\n"
            "authpulse.Session, authpulse.SessionManager, authpulse.Client, authpulse.SQLiteStore"
        )
        if name not in by_httpx
    ]
    for name in (
        "redis",
        "rich",
        "authpulse._stores.redis",
        "authpulse._surfaces.web",
        "authpulse._surfaces.demo",
    ):
        assert name not in loaded


def test_a_lazy_name_resolves_to_its_defining_module() -> None:
    loaded = loaded_after("from authpulse import RedisStore\nassert RedisStore.__name__")
    assert "authpulse._stores.redis" in loaded


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["sessions", "--help"]])
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    code = (
        "import contextlib, io\n"
        "from authpulse._surfaces.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
    )
    assert loaded_after(code) == []


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"authpulse {authpulse.__version__}\n"


def test_version_from_the_console_script() -> None:
    script = Path(sys.executable).parent / "authpulse"
    if not script.exists():
        pytest.skip("the authpulse console script is not installed next to this Python")
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    assert done.stdout == f"authpulse {authpulse.__version__}\n"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = authpulse.no_such_name  # type: ignore[attr-defined]


def test_lazy_table_matches_the_typing_imports_and_all() -> None:
    """The names type checkers see (the ``TYPE_CHECKING`` imports) are the names
    ``__getattr__`` serves, from the same modules, and exactly ``__all__``."""
    init = Path(authpulse.__file__)
    tree = ast.parse(init.read_text(encoding="utf-8"))
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if ast.unparse(node.test).startswith("not"):
                continue
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    assert alias.asname == alias.name
                    typed[alias.name] = "." * imp.level + (imp.module or "")
    assert typed == authpulse._EXPORTS
    assert set(typed) | {"__version__"} == set(authpulse.__all__)
    for name, module in authpulse._EXPORTS.items():
        assert getattr(authpulse, name) is getattr(import_module(module, "authpulse"), name)


@pytest.mark.parametrize("backend", ["httpx", "httpx2"])
def test_a_backend_module_can_be_imported_first(backend: str) -> None:
    """``import authpulse.httpx`` before anything else: its module and ``_client``
    import each other, and neither needs the other complete."""
    loaded_after(
        f"import authpulse.{backend} as b\n"
        "import authpulse\n"
        "assert issubclass(b.Client, authpulse._http.client.SessionClientMixin)\n"
        "assert authpulse.Client.__module__.startswith('authpulse.httpx')"
    )

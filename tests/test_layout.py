"""The package's shape is checked by ``make lint``: these tests pin the checker."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_layout.py"


def load() -> Any:
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_layout"] = module
    spec.loader.exec_module(module)
    return module


def test_the_package_is_in_shape() -> None:
    assert load().main() == 0


def test_a_cycle_is_found_and_a_chain_is_not() -> None:
    check = load()
    assert check.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert check.cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_lazy_imports_count_and_type_checking_imports_do_not(tmp_path: Path) -> None:
    check = load()
    path = tmp_path / "m.py"
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from .b import B\n"
        "def f():\n"
        "    from .c import C\n"
        "    import authpulse.d\n"
    )
    found = set(check.imports("authpulse.x.m", path, tree))
    assert "authpulse.x.c" in found
    assert "authpulse.d" in found
    assert "authpulse.x.b" not in found


def test_a_module_or_class_over_the_limit_is_refused() -> None:
    check = load()
    check.MAX_MODULE_LINES = 100
    assert check.main() == 1
    check = load()
    check.MAX_CLASS_LINES = 50
    assert check.main() == 1


def test_a_listed_module_may_only_shrink() -> None:
    check = load()
    check.MAX_MODULE_LINES = 100
    big = max(
        (m for m, p in check.modules()), key=lambda m: len(dict(check.modules())[m].read_text())
    )
    check.OVER[big] = 101  # allowed fewer lines than it has
    assert check.main() == 1

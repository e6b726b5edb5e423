"""The public surface: everything exported exists, nothing private leaks."""

from __future__ import annotations

import importlib
import inspect
import logging
import types

import pytest

import authpulse
import authpulse.testing


@pytest.mark.parametrize("module", [authpulse, authpulse.testing], ids=lambda m: m.__name__)
def test_everything_in_all_exists(module: types.ModuleType) -> None:
    assert module.__all__, "empty __all__"
    assert len(set(module.__all__)) == len(module.__all__), "duplicates in __all__"
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"


@pytest.mark.parametrize("module", [authpulse, authpulse.testing], ids=lambda m: m.__name__)
def test_nothing_private_is_exported(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert not name.startswith("_") or name == "__version__", name
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            # shown where it is imported from: no private module in the path
            parts = obj.__module__.split(".")
            assert parts[0] == "authpulse", (name, obj.__module__)
            assert not any(p.startswith("_") for p in parts), (name, obj.__module__)
            assert not obj.__name__.startswith("_"), name


@pytest.mark.parametrize("module", [authpulse, authpulse.testing], ids=lambda m: m.__name__)
def test_every_public_name_is_in_all(module: types.ModuleType) -> None:
    """No public attribute outside ``__all__`` (submodules aside); ``dir()`` lists them all,
    including the names ``authpulse`` imports only when first used."""
    loaded = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert loaded <= set(module.__all__)
    listed = {
        n
        for n in dir(module)
        if not n.startswith("_") and not isinstance(getattr(module, n), types.ModuleType)
    }
    assert listed == set(module.__all__) - {"__version__"}


def test_star_import_gives_exactly_all() -> None:
    ns: dict[str, object] = {}
    exec("from authpulse import *", ns)  # noqa: S102 - the point of the test
    assert set(ns) - {"__builtins__"} == set(authpulse.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(authpulse.__version__, str)
    assert authpulse.__version__.count(".") >= 1


def test_errors_form_one_hierarchy() -> None:
    errors = [
        getattr(authpulse, n)
        for n in authpulse.__all__
        if inspect.isclass(getattr(authpulse, n))
        and issubclass(getattr(authpulse, n), BaseException)
    ]
    assert len(errors) >= 10
    for cls in errors:
        assert issubclass(cls, authpulse.AuthpulseError), cls
    assert issubclass(authpulse.ConfigurationError, ValueError)
    assert issubclass(authpulse.UsageError, RuntimeError)
    for cls in (
        authpulse.OAuthError,
        authpulse.TokenResponseError,
        authpulse.TokenEndpointError,
        authpulse.TokenVerificationError,
        authpulse.NoRefreshTokenError,
        authpulse.RefreshError,
    ):
        assert issubclass(cls, authpulse.TokenError)


def test_library_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("authpulse").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_testing_exports_are_the_fakes() -> None:
    assert {"FakeAPI", "FakeClock", "FakeIdP", "Fault"} <= set(authpulse.testing.__all__)
    assert "testing" not in authpulse.__all__


def test_package_is_typed() -> None:
    spec = importlib.util.find_spec("authpulse")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    from pathlib import Path

    assert (Path(next(iter(spec.submodule_search_locations))) / "py.typed").exists()


def test_public_classes_pickle_by_their_public_names() -> None:
    """A public error, event or record pickles as ``authpulse.X`` and comes back."""
    import pickle

    error = authpulse.LoginRequiredError("sign in again")
    data = pickle.dumps(error)
    assert b"authpulse" in data
    assert b"_core" not in data
    back = pickle.loads(data)  # noqa: S301 - our own bytes
    assert type(back) is authpulse.LoginRequiredError
    kind = pickle.loads(pickle.dumps(authpulse.EventKind.CLOSED))  # noqa: S301
    assert kind is authpulse.EventKind.CLOSED


def test_a_private_module_imported_first_still_shows_public_names() -> None:
    """The public ``__module__`` is set where the class is defined, not on first
    lookup through ``authpulse``."""
    import subprocess
    import sys

    code = (
        "import authpulse._sessions.session as s, authpulse._core.errors as e\n"
        "print(s.Session.__module__, e.LoginRequiredError.__module__)"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["authpulse", "authpulse"]

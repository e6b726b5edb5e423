"""``pip install authpulse`` is the core; ``rich`` and ``pydantic-settings`` come with the
``cli`` extra. Without them the core works, and the command and ``AuthpulseSettings``
say exactly what to install.

Each check runs this interpreter in a subprocess whose ``sys.meta_path`` refuses
``rich`` and ``pydantic_settings``, as an installation without the extra would."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import authpulse
from authpulse import ConfigurationError, MissingExtraError

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
INSTALL = "pip install 'authpulse[cli]'"

# makes the packages of the cli extra unimportable, as if they were not installed
WITHOUT_CLI_EXTRA = """\
import sys

class _NotInstalled:
    BLOCKED = ("rich", "pydantic_settings")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def run_without_extra(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", WITHOUT_CLI_EXTRA + code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_blocker_really_blocks() -> None:
    done = run_without_extra("import rich")
    assert done.returncode != 0
    assert "No module named 'rich'" in done.stderr


def test_the_core_works_without_the_cli_extra() -> None:
    done = run_without_extra(
        "import authpulse\n"
        "from authpulse import CallableSource, MemoryStore, Session, SessionManager, TokenSet\n"
        "from authpulse.testing import FakeClock\n"
        "clock = FakeClock()\n"
        "def fetch(current):\n"
        "    now = clock.now()\n"
        "    return TokenSet(access_token='at', issued_at=now, expires_at=now + 3600)\n"
        "s = Session(CallableSource(fetch), clock=clock)\n"
        "assert s.token() == 'at'\n"
        "s.close()\n"
        "m = SessionManager(store=MemoryStore(), clock=clock)\n"
        "ms = m.create_session('alice', CallableSource(fetch))\n"
        "assert m.get(ms.id, owner='alice') is ms\n"
        "assert ms.session.token() == 'at'\n"
        "m.shutdown()\n"
        "import authpulse.logging_config, authpulse.metrics\n"
        "assert 'rich' not in sys.modules and 'pydantic_settings' not in sys.modules\n"
        "print('ok')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "argv",
    [
        ("sessions", "list", "--store", "sqlite:///nowhere.db"),
        ("demo", "--duration", "1s"),
        ("--version",),
        (),
    ],
)
def test_the_command_without_the_extra_prints_the_install_line(argv: tuple[str, ...]) -> None:
    done = run_without_extra(
        "from authpulse._surfaces.cli import main\nsys.exit(main(sys.argv[1:]))\n", *argv
    )
    assert done.returncode == 2  # EXIT_USAGE
    assert done.stderr == f"authpulse: {INSTALL}\n"
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_python_m_authpulse_cli_without_the_extra() -> None:
    done = run_without_extra(
        "import runpy\nrunpy.run_module('authpulse._surfaces.cli', run_name='__main__')\n"
    )
    assert done.returncode == 2
    assert done.stderr == f"authpulse: {INSTALL}\n"


def test_settings_without_the_extra_raise_the_typed_error() -> None:
    done = run_without_extra(
        "import authpulse\n"
        "try:\n"
        "    authpulse.AuthpulseSettings\n"
        "except authpulse.MissingExtraError as exc:\n"
        "    assert isinstance(exc, authpulse.ConfigurationError)\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc.extra, exc.install, exc, sep='|')\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    assert done.returncode == 0, done.stderr
    extra, install, message = done.stdout.strip().split("|")
    assert extra == "cli"
    assert install == INSTALL
    assert message == f"authpulse.AuthpulseSettings needs the 'cli' extra: {INSTALL}"


def test_the_command_with_the_extra_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    from authpulse._surfaces.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert authpulse.__version__ in capsys.readouterr().out


def test_missing_extra_error_is_one_family() -> None:
    from authpulse.metrics import MissingExtraError as MetricsMissingExtraError

    assert issubclass(MissingExtraError, ConfigurationError)
    assert issubclass(MissingExtraError, ImportError)
    assert issubclass(MetricsMissingExtraError, MissingExtraError)
    exc = MetricsMissingExtraError("prometheus", "prometheus-client", "prometheus")
    assert exc.extra == "prometheus"
    assert exc.install == "pip install 'authpulse[prometheus]'"


def _name(requirement: str) -> str:
    for i, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:i].lower()
    return requirement.lower()


def test_core_dependencies_are_exactly_the_core() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    core = {_name(r) for r in project["dependencies"]}
    # cryptography is what pyjwt[crypto] installs; listed only for its version floor
    assert core == {"httpx", "pyjwt", "tenacity", "cachetools", "pydantic", "cryptography"}
    assert "pyjwt[crypto]" in "".join(project["dependencies"]).replace(" ", "")
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["cli"]} == {"rich", "pydantic-settings"}
    for extra in ("dev", "bench"):
        assert "authpulse[cli]" in extras[extra], extra

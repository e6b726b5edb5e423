"""``authpulse login`` / ``token`` / ``logout`` against a real oidc-provider: the
device and the browser sign-in driven headless, the session kept in a store
(SQLite, and the keyring store's encrypted file), a script's ``authpulse token``
refreshing when the stored token is due, and ``logout`` revoking at the IdP."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest

from _idp import OIDCProvider, idp_fixture, oidc_provider_fixture  # noqa: F401 - the fixtures
from authpulse import TokenSet, open_store
from authpulse._runtime.backend import httpx
from authpulse._surfaces.cli import build_parser, main
from authpulse._surfaces.commands import login as login_cmd
from authpulse._surfaces.commands.profiles import PROFILE_OWNER, profile_id
from authpulse._surfaces.settings import AuthpulseSettings
from authpulse.testing import FakeClock


@pytest.fixture(autouse=True)
def _quiet_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHPULSE_STORE_URL", "AUTHPULSE_ENCRYPTION_KEYS", "AUTHPULSE_KEYRING_KEY"):
        monkeypatch.delenv(name, raising=False)


class UserClock(FakeClock):
    """Signs the user in (``user``) during the device's first wait between polls."""

    def __init__(self) -> None:
        super().__init__()
        self.user: object = None

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if len(self.sleeps) == 1 and callable(self.user):
            self.user()


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def device_login(idp: OIDCProvider, store: str, *extra: str) -> str:
    """Run ``authpulse login --device`` with the user approving from the first wait;
    what it printed on stderr."""
    clock = UserClock()
    out = io.StringIO()

    def user() -> None:
        match = re.search(r"\(or open (\S+)\)", out.getvalue())
        assert match, out.getvalue()
        idp.approve_device(match.group(1))

    clock.user = user
    args = parse(
        "login",
        "--issuer",
        idp.issuer,
        "--client-id",
        idp.device_client_id,
        "--scope",
        "openid offline_access",
        "--store",
        store,
        *extra,
    )
    assert login_cmd.run_login(args, AuthpulseSettings(), clock=clock, out=out) == 0
    return out.getvalue()


def stored_token(url: str, name: str = "default") -> TokenSet:
    store = open_store(url)
    try:
        stored = store.get_token(profile_id(name))
        assert stored is not None
        return stored.token
    finally:
        store.close()


def userinfo(idp: OIDCProvider, token: str) -> httpx.Response:
    return httpx.get(idp.userinfo_url, headers={"Authorization": f"Bearer {token}"})


def test_device_login_then_token_then_logout(
    idp: OIDCProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    said = device_login(idp, url)
    assert "enter the code" in said
    assert "Signed in at" in said
    kept = stored_token(url)
    assert kept.refresh_token is not None
    assert kept.access_token.get_secret_value() not in said
    assert kept.refresh_token.get_secret_value() not in said

    # the profile is a session record of the store, without a secret in it
    store = open_store(url)
    record = store.get(profile_id("default"))
    store.close()
    assert record is not None
    assert record.owner == PROFILE_OWNER
    assert record.metadata.custom["issuer"] == idp.issuer
    assert record.metadata.custom["token_endpoint"] == idp.token_url

    # a fresh token: printed as it is stored, and nothing else on stdout
    capsys.readouterr()
    assert main(["token", "--store", url]) == 0
    printed = capsys.readouterr()
    assert printed.out == kept.access_token.get_secret_value() + "\n"
    assert userinfo(idp, printed.out.strip()).json()["sub"] == "alice"

    # logout revokes the grant at the IdP and forgets it here
    refresh_token = kept.refresh_token.get_secret_value()
    assert main(["logout", "--store", url]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert "revoked at" in out.err
    refused = httpx.post(
        idp.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": idp.device_client_id,
        },
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert main(["token", "--store", url]) == 3
    assert "not signed in" in capsys.readouterr().err


def test_token_refreshes_a_due_token_and_stores_the_rotated_one(
    idp: OIDCProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    device_login(idp, url)
    kept = stored_token(url)
    assert kept.refresh_token is not None
    # the stored access token is past its refresh time (as if the script ran an hour later)
    store = open_store(url)
    store.put_token(
        profile_id("default"),
        kept.model_copy(update={"issued_at": kept.issued_at - 3600, "expires_at": 1.0}),
    )
    store.close()
    capsys.readouterr()
    assert main(["token", "--store", url]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed != kept.access_token.get_secret_value()
    assert userinfo(idp, printed).json()["sub"] == "alice"
    rotated = stored_token(url)
    assert rotated.access_token.get_secret_value() == printed
    assert rotated.refresh_token is not None
    assert rotated.refresh_token != kept.refresh_token  # the IdP rotated it; we kept the new one


def test_browser_login_into_the_keyring_file(
    idp: OIDCProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"keyring:///{tmp_path}/vault"
    out = io.StringIO()
    answers: list[int] = []
    args = parse(
        "login",
        "--issuer",
        idp.issuer,
        "--client-id",
        idp.native_client_id,
        "--browser",
        "--scope",
        "openid offline_access",
        "--profile",
        "work",
        "--store",
        url,
    )
    code = login_cmd.run_login(
        args,
        AuthpulseSettings(),
        clock=FakeClock(),
        open_browser=lambda u: answers.append(idp.browse(u).status_code),
        out=out,
    )
    assert code == 0, out.getvalue()
    assert answers == [200]
    assert "encrypted-file:" in out.getvalue() or "keyring:" in out.getvalue()
    assert main(["token", "--store", url, "--profile", "work"]) == 0
    token = capsys.readouterr().out.strip()
    assert userinfo(idp, token).json()["sub"] == "alice"
    # the keyring store's file holds no token in plaintext
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert token.encode() not in file.read_bytes()
    assert main(["logout", "--store", url, "--profile", "work", "--local-only"]) == 0
    assert "was not asked" in capsys.readouterr().err
    assert main(["token", "--store", url, "--profile", "work"]) == 3


def test_bad_input_is_a_clear_error(
    idp: OIDCProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    base = ["login", "--issuer", idp.issuer, "--client-id", idp.device_client_id, "--store", url]
    assert main([*base, "--profile", "no spaces"]) == 2
    assert "profile name" in capsys.readouterr().err
    assert main([*base, "--client-secret-env", "AUTHPULSE_TEST_UNSET_SECRET"]) == 2
    assert "is not set" in capsys.readouterr().err
    assert main([*base, "--client-secret-env", "not a name"]) == 1
    assert "environment variable" in capsys.readouterr().err
    plain = ["login", "--issuer", "http://example.com", "--client-id", "x", "--store", url]
    assert main(plain) == 1
    err = capsys.readouterr().err
    assert "https" in err
    assert "Traceback" not in err
    # a store that does not exist is not created by token or logout
    assert main(["token", "--store", url]) == 4
    assert "no SQLite database" in capsys.readouterr().err
    open_store(url).close()
    assert main(["token", "--store", url]) == 3
    assert "authpulse login" in capsys.readouterr().err
    assert main(["logout", "--store", url]) == 3

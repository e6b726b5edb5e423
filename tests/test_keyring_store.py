"""KeyringStore: the store behaviour suite on both of its backends, and what is
its own (which backend it used, the encrypted file, the keychain entries).

The keychain is an in-memory ``keyring`` backend set with ``keyring.set_keyring``
(restored after each test) that refuses items over 1,280 characters, as
Windows' Credential Locker does; the encrypted file lives in ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyring.backends import fail
from keyring.backends.chainer import ChainerBackend
from keyring.errors import PasswordDeleteError
from pydantic import SecretStr

import test_stores
from authpulse import (
    ConfigurationError,
    CorruptRecordError,
    DecryptionError,
    KeychainUnavailableError,
    KeyringStore,
    MissingExtraError,
    RefreshTokenGrant,
    Session,
    SessionStore,
    StoreError,
    SystemClock,
    TokenCipher,
    open_store,
)
from authpulse.testing import FakeClock, FakeIdP
from test_stores import Backend, event, no_secret, rec, serve, token

KEY = TokenCipher.generate_key()
ITEM_LIMIT = 1280  # characters: Windows' 2,560-byte blob in UTF-16


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keychain in a dict, with a per-item size limit."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if len(password) > ITEM_LIMIT:
            raise keyring.errors.PasswordSetError("item too large")
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class BrokenKeyring(MemoryKeyring):
    """A backend that is picked but fails when used (a Secret Service without D-Bus)."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringError("no D-Bus session")


class EmptyChainer(ChainerBackend):
    """keyring's chainer when none of the backends it chains is usable."""

    backends: list[keyring.backend.KeyringBackend] = []  # noqa: RUF012


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-user data directory inside ``tmp_path``, and no key in the environment."""
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    monkeypatch.delenv("AUTHPULSE_KEYRING_KEY", raising=False)
    return xdg / "authpulse"


def _use(backend: keyring.backend.KeyringBackend) -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def keychain() -> Iterator[MemoryKeyring]:
    chain = MemoryKeyring()
    yield from (chain for _ in _use(chain))


@pytest.fixture
def headless() -> Iterator[None]:
    yield from _use(fail.Keyring())  # type: ignore[no-untyped-call]


def _open(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, real: bool
) -> Iterator[Backend]:
    on: Any = SystemClock() if real else clock
    path = tmp_path / "t.store"
    if kind == "keychain":
        request.getfixturevalue("keychain")

        def factory(**kwargs: Any) -> SessionStore:
            return KeyringStore(namespace="t", path=path, clock=on, **kwargs)
    else:

        def factory(**kwargs: Any) -> SessionStore:
            return KeyringStore(path=path, keychain=False, key=KEY, clock=on, **kwargs)

    backend = Backend("keyring", clock, factory, short_ttl=30.0, real_time=real, path=path)
    yield from serve(backend)


@pytest.fixture(params=["keychain", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    yield from _open(request.param, request, tmp_path, clock, real=False)


@pytest.fixture(params=["keychain", "file"])
def real_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Backend]:
    yield from _open(request.param, request, tmp_path, clock, real=True)


# The behaviour suite every store passes, run here on the two backends above.
for _name, _test in vars(test_stores).copy().items():
    if _name.startswith("test_") and callable(_test):
        _params = _test.__code__.co_varnames[: _test.__code__.co_argcount]
        if {"backend", "real_backend"} & set(_params):
            globals()[_name] = _test
del _name, _test


# ============================================================ which backend


def test_the_keychain_is_used_when_there_is_one(keychain: MemoryKeyring, tmp_path: Path) -> None:
    store = KeyringStore(namespace="app", path=tmp_path / "s.store")
    assert store.backend == "keyring:test_keyring_store.MemoryKeyring"
    assert store.backend in repr(store)
    assert store.backend in store.describe()
    assert "'app'" in store.describe()
    store.put(rec("s1"), expected_version=None)
    services = {service for service, _ in keychain.items}
    assert services == {"authpulse:app"}
    assert ("authpulse:app", "s1") in keychain.items
    assert json.loads(keychain.items[("authpulse:app", " index")].partition(":")[2]) == ["s1"]
    assert not (tmp_path / "s.store").exists()  # nothing in the file


def test_headless_falls_back_to_the_encrypted_file_and_says_so(
    headless: None, private_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="authpulse.store"):
        store = KeyringStore()
    data = private_home / "default.store"
    assert store.backend == f"encrypted-file:{data}"
    assert store.backend in repr(store)
    lines = [r for r in caplog.records if r.name == "authpulse.store"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    message = lines[0].getMessage()
    assert "encrypted file" in message
    assert str(data) in message
    assert "keyring.backends.fail.Keyring" in message
    assert "key file" in message
    key = (private_home / "default.store.key").read_text()
    assert key not in message
    assert key not in repr(store) + store.describe()


@settings(max_examples=25, deadline=None)
@given(namespace=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True))
def test_any_namespace_gets_its_own_service(namespace: str) -> None:
    chain = MemoryKeyring()
    for _ in _use(chain):
        with tempfile.TemporaryDirectory() as tmp:
            store = KeyringStore(namespace=namespace, path=Path(tmp) / "s.store")
            store.put(rec("s1"), expected_version=None)
            assert {service for service, _ in chain.items} == {f"authpulse:{namespace}"}
            assert store.get("s1") is not None


@pytest.mark.parametrize("chain", ["broken", "empty-chainer"])
def test_an_unusable_backend_falls_back_too(chain: str, private_home: Path) -> None:
    picked = BrokenKeyring() if chain == "broken" else EmptyChainer()  # type: ignore[no-untyped-call]
    for _ in _use(picked):
        store = KeyringStore()
        assert store.backend.startswith("encrypted-file:")
        with pytest.raises(KeychainUnavailableError) as err:
            KeyringStore(require_keychain=True)
        assert isinstance(err.value, StoreError)


def test_require_keychain_raises_instead_of_falling_back(
    headless: None, private_home: Path
) -> None:
    with pytest.raises(KeychainUnavailableError, match="no usable OS keychain"):
        KeyringStore(namespace="cli", require_keychain=True)
    assert not private_home.exists()  # nothing was written
    with pytest.raises(ConfigurationError, match="contradicts"):
        KeyringStore(keychain=False, require_keychain=True)


def test_a_missing_keyring_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)
    with pytest.raises(MissingExtraError) as err:
        KeyringStore()
    assert err.value.extra == "keyring"
    assert "pip install 'authpulse[keyring]'" in str(err.value)


@pytest.mark.parametrize("namespace", ["", "a b", "x" * 65, "ns/../up", 3])
def test_bad_namespaces_are_refused(namespace: Any) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        KeyringStore(namespace=namespace, keychain=False)


# ============================================================ the encrypted file


def test_the_file_holds_no_plaintext(tmp_path: Path, clock: FakeClock) -> None:
    store = KeyringStore(path=tmp_path / "d" / "s.store", keychain=False, key=KEY, clock=clock)
    store.put(rec("session-visible-id", owner="owner-visible"), expected_version=None)
    store.put_token("session-visible-id", token(1))
    store.append_event("session-visible-id", event("session-visible-id", 1))
    store.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "d").iterdir())
    for needle in (*test_stores.SECRETS, "session-visible-id", "owner-visible", "read write"):
        assert needle.encode() not in raw
    plain = json.loads(TokenCipher(KEY).decrypt((tmp_path / "d" / "s.store").read_bytes()))
    assert "session-visible-id" in plain  # it is there, encrypted


def test_files_and_directory_are_private(headless: None, private_home: Path) -> None:
    store = KeyringStore()
    store.put(rec("s1"), expected_version=None)
    assert stat.S_IMODE(private_home.stat().st_mode) == 0o700
    names = sorted(p.name for p in private_home.iterdir())
    assert names == ["default.store", "default.store.key", "default.store.lock"]
    for p in private_home.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


def test_the_key_file_is_made_once_and_reused(headless: None, private_home: Path) -> None:
    first = KeyringStore()
    first.put_token("s1", token(1))
    key_file = private_home / "default.store.key"
    made = key_file.read_bytes()
    second = KeyringStore()
    stored = second.get_token("s1")
    assert stored is not None
    assert stored.token == token(1)
    assert key_file.read_bytes() == made
    assert made.decode() not in repr(second) + second.describe()


def test_the_key_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHPULSE_KEYRING_KEY", KEY)
    path = tmp_path / "s.store"
    KeyringStore(path=path, keychain=False).put_token("s1", token(2))
    assert not (tmp_path / "s.store.key").exists()
    again = KeyringStore(path=path, keychain=False, key=KEY).get_token("s1")
    assert again is not None
    assert again.token == token(2)
    monkeypatch.setenv("AUTHPULSE_KEYRING_KEY", "not-a-key")
    with pytest.raises(ConfigurationError, match="AUTHPULSE_KEYRING_KEY") as err:
        KeyringStore(path=path, keychain=False)
    assert "not-a-key" not in str(err.value)


_WORKER = """
import sys
from dataclasses import replace
from authpulse import KeyringStore, VersionConflictError
store = KeyringStore(path=sys.argv[1], keychain=False)
for _ in range(15):
    while True:
        current = store.get("shared")
        nxt = replace(current, step=str(int(current.step) + 1))
        try:
            store.put(nxt, expected_version=current.version)
            break
        except VersionConflictError:
            continue
"""


def test_writers_in_other_processes_lose_no_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three processes bump one record 15 times each through the file: the lock
    file serialises their read-modify-write of the whole file."""
    monkeypatch.setenv("AUTHPULSE_KEYRING_KEY", KEY)
    path = tmp_path / "shared.store"
    KeyringStore(path=path, keychain=False).put(rec("shared"), expected_version=None)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path)], env=env)  # noqa: S603
        for _ in range(3)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    final = KeyringStore(path=path, keychain=False).get("shared")
    assert final is not None
    assert final.step == "45"
    assert final.version == 46


def test_a_wrong_key_raises_decryption_error(tmp_path: Path) -> None:
    path = tmp_path / "s.store"
    KeyringStore(path=path, keychain=False, key=KEY).put_token("s1", token(3))
    other = KeyringStore(path=path, keychain=False, key=TokenCipher.generate_key())
    with pytest.raises(DecryptionError) as err:
        other.get_token("s1")
    no_secret(str(err.value))
    assert KEY not in str(err.value)


def test_a_file_that_is_not_a_store_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "s.store"
    path.write_bytes(TokenCipher(KEY).encrypt(b"[1, 2]"))
    with pytest.raises(CorruptRecordError, match="not an authpulse store"):
        KeyringStore(path=path, keychain=False, key=KEY).get("s1")


# ============================================================ the keychain entries


def test_large_entries_are_chunked_and_shrink_cleanly(
    keychain: MemoryKeyring, tmp_path: Path
) -> None:
    store = KeyringStore(namespace="big", path=tmp_path / "s.store", timeline_limit=100)
    for n in range(60):
        store.append_event("s1", event("s1", n))
    parts = [u for s, u in keychain.items if s == "authpulse:big" and u.startswith("events s1")]
    assert len(parts) > 3
    assert all(len(v) <= ITEM_LIMIT for v in keychain.items.values())
    assert [e.fields["n"] for e in store.events("s1")] == list(range(60))
    small = KeyringStore(namespace="big", path=tmp_path / "s.store", timeline_limit=1)
    small.append_event("s1", event("s1", 99))
    left = [u for s, u in keychain.items if u.startswith("events s1")]
    assert left == ["events s1"]
    assert small.delete("s1") is False  # no record, but the timeline goes
    assert not [u for _, u in keychain.items if u.startswith("events s1")]


def test_a_keychain_item_written_by_someone_else_is_corrupt(
    keychain: MemoryKeyring, tmp_path: Path
) -> None:
    keychain.items[("authpulse:default", "s1")] = "hunter2"
    store = KeyringStore(path=tmp_path / "s.store")
    with pytest.raises(CorruptRecordError) as err:
        store.get("s1")
    assert "hunter2" not in str(err.value)


def test_a_key_encrypts_token_sets_in_the_keychain(keychain: MemoryKeyring, tmp_path: Path) -> None:
    store = KeyringStore(path=tmp_path / "s.store", key=KEY)
    store.put_token("s1", token(4))
    for value in keychain.items.values():
        no_secret(value)
    stored = KeyringStore(path=tmp_path / "s.store", key=KEY).get_token("s1")
    assert stored is not None
    assert stored.token == token(4)


_ids = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Co", "Cn")),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(session_ids=st.lists(_ids, min_size=1, max_size=5, unique=True))
def test_any_session_id_round_trips(
    keychain: MemoryKeyring, tmp_path: Path, session_ids: list[str]
) -> None:
    keychain.items.clear()
    store = KeyringStore(namespace="h", path=tmp_path / "h.store")
    for sid in session_ids:
        store.put(rec(sid), expected_version=None)
        store.append_event(sid, event(sid, 1))
        store.put_token(sid, token(5))
    assert sorted(r.id for r in store.query()) == sorted(session_ids)
    for sid in session_ids:
        assert store.get(sid) is not None
        assert len(store.events(sid)) == 1
        assert store.delete(sid) is True
    assert store.query() == []


# ============================================================ URLs and sessions


def test_open_store_keyring_urls(keychain: MemoryKeyring, tmp_path: Path) -> None:
    default = open_store("keyring://")
    assert isinstance(default, KeyringStore)
    assert default.backend.startswith("keyring:")
    assert default.namespace == "default"
    named = open_store("keyring://?namespace=foo&timeline_limit=7")
    assert isinstance(named, KeyringStore)
    assert named.namespace == "foo"
    assert named.timeline_limit == 7
    forced = open_store(f"keyring:///{tmp_path / 'f.store'}", encryption_keys=KEY)
    assert isinstance(forced, KeyringStore)
    assert forced.backend == f"encrypted-file:{tmp_path / 'f.store'}"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("keyring://host/x", "must have no host"),
        ("keyring://?password=hunter2-pw-x9", "unknown parameter(s) 'password'"),
        ("keyring://?namespace=a%20b", "namespace"),
        ("keyring://?timeline_limit=lots", "must be a number"),
        ("keyring:///", "empty file path"),
    ],
)
def test_open_store_refuses_bad_keyring_urls(
    keychain: MemoryKeyring, url: str, fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as err:
        open_store(url)
    assert fragment in str(err.value)
    no_secret(str(err.value))


@pytest.mark.parametrize("kind", ["keychain", "file"])
def test_a_session_survives_a_restart(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    if kind == "keychain":
        request.getfixturevalue("keychain")
    keychain_on = kind == "keychain"
    idp = FakeIdP(clock=clock, access_ttl=3600)
    login = idp.issue_refresh_token()

    def session(store: KeyringStore) -> Session:
        grant = RefreshTokenGrant(idp.token_url, "client", "secret", refresh_token=login)
        return Session(
            grant, store=store, store_key="user-alice", transport=idp.transport, clock=clock
        )

    def open_() -> KeyringStore:
        return KeyringStore(path=tmp_path / "s.store", keychain=keychain_on, key=KEY, clock=clock)

    first_store = open_()
    first = session(first_store)
    rotated = first.force_refresh()
    first.close()
    first_store.close()
    calls = idp.token_calls

    second_store = open_()
    second = session(second_store)
    current = second.token()
    assert idp.token_calls == calls  # read back, not fetched again
    assert current == rotated.access_token.get_secret_value()
    assert isinstance(rotated.refresh_token, SecretStr)
    second.close()
    second_store.close()
    assert os.path.exists(tmp_path / "s.store") is not keychain_on

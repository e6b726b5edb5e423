"""The sign-in profiles of ``authpulse login``: what a later ``authpulse token`` or
``authpulse logout`` needs to know about a login, kept in the store beside its tokens.

A profile is one session record (id ``login:<name>``, kind ``user``) whose metadata holds
the issuer, the client id and the endpoints found by discovery at login time, and whose
token set is the login's. No secret is ever part of a profile: a confidential client
names the environment variable that holds its secret (``--client-secret-env``), read again
at each use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._core.errors import AuthpulseError
from ..._core.model import SessionKind, SessionMetadata, SessionRecord, SessionStatus
from .exits import EXIT_NOT_FOUND, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from ..._stores.base import SessionStore

__all__ = ["PROFILE_OWNER", "LoginProfile", "profile_id", "read_profile", "write_profile"]

#: the owner of every profile record (``authpulse sessions list --owner cli``)
PROFILE_OWNER = "cli"
_PREFIX = "login:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_FIELDS = (
    "issuer",
    "client_id",
    "token_endpoint",
    "revocation_endpoint",
    "scope",
    "flow",
    "auth_method",
    "client_secret_env",
)


def profile_id(name: str) -> str:
    """The session id of profile ``name``; :class:`CliError` (exit 2) for a bad name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CliError(
            "a profile name is 1 to 64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit",
            EXIT_USAGE,
        )
    return _PREFIX + name


def check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise CliError(f"--client-secret-env must name an environment variable, not {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class LoginProfile:
    """One signed-in profile. Holds no secret."""

    name: str
    issuer: str
    client_id: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    scope: str | None = None
    flow: str = "device"
    auth_method: str | None = None
    client_secret_env: str | None = None

    @property
    def session_id(self) -> str:
        return profile_id(self.name)

    def client_secret(self) -> str | None:
        """The client secret from the named environment variable (``None`` for a public
        client); :class:`CliError` if the variable is named but not set."""
        if self.client_secret_env is None:
            return None
        value = os.environ.get(self.client_secret_env)
        if not value:
            raise CliError(
                f"profile {self.name!r} takes its client secret from ${self.client_secret_env}, "
                "which is not set",
                EXIT_USAGE,
            )
        return value

    def metadata(self) -> SessionMetadata:
        custom = {f: getattr(self, f) for f in _FIELDS if getattr(self, f) is not None}
        return SessionMetadata(device="authpulse login", custom=custom)

    @classmethod
    def from_record(cls, name: str, record: SessionRecord) -> LoginProfile:
        custom = record.metadata.custom
        values = {f: custom.get(f) for f in _FIELDS}
        for required in ("issuer", "client_id", "token_endpoint"):
            if not isinstance(values[required], str) or not values[required]:
                raise CliError(
                    f"profile {name!r} is damaged (no {required}); sign in again with "
                    "authpulse login"
                )
        if any(v is not None and not isinstance(v, str) for v in values.values()):
            raise CliError(f"profile {name!r} is damaged; sign in again with authpulse login")
        return cls(
            name=name,
            issuer=str(values["issuer"]),
            client_id=str(values["client_id"]),
            token_endpoint=str(values["token_endpoint"]),
            revocation_endpoint=_opt(values["revocation_endpoint"]),
            scope=_opt(values["scope"]),
            flow=_opt(values["flow"]) or "device",
            auth_method=_opt(values["auth_method"]),
            client_secret_env=_opt(values["client_secret_env"]),
        )


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None


def read_profile(store: SessionStore, name: str) -> LoginProfile:
    """The stored profile ``name``; :class:`CliError` with exit code 3 if there is none."""
    record = store.get(profile_id(name))
    if record is None or record.kind is not SessionKind.USER or record.status.terminal:
        raise CliError(
            f"not signed in (profile {name!r}): run authpulse login --issuer URL --client-id ID",
            EXIT_NOT_FOUND,
        )
    return LoginProfile.from_record(name, record)


def write_profile(store: SessionStore, profile: LoginProfile, *, now: float) -> SessionRecord:
    """Create or replace the record of ``profile`` (its token set is written by the login)."""
    sid = profile.session_id
    current = store.get(sid)
    record = SessionRecord(
        id=sid,
        owner=PROFILE_OWNER,
        kind=SessionKind.USER,
        status=SessionStatus.ACTIVE,
        created_at=now if current is None else current.created_at,
        last_activity_at=now,
        metadata=profile.metadata(),
        labels=("active", "login"),
        version=0 if current is None else current.version,
    )
    try:
        return store.put(record, expected_version=None if current is None else current.version)
    except AuthpulseError as exc:
        raise CliError(f"could not save profile {profile.name!r}: {exc}") from None

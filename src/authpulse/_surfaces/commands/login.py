"""``authpulse login`` (sign a user in and keep the session), ``authpulse token`` (print
a fresh access token for scripts) and ``authpulse logout`` (revoke and forget).

Prompts and progress go to stderr; ``authpulse token`` prints the access token and a
newline on stdout and nothing else, so ``$(authpulse token)`` is the token.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from ..._core.errors import AuthpulseError, LoginRequiredError
from .exits import EXIT_OK, CliError
from .profiles import LoginProfile, check_env_name, profile_id, read_profile, write_profile
from .store import open_checked_store

if TYPE_CHECKING:
    from ..._core.discovery import ProviderMetadata
    from ..._runtime.clock import Clock
    from ..._sessions.session import Session
    from ..._stores.base import SessionStore
    from ..settings import AuthpulseSettings

__all__ = [
    "cmd_login",
    "cmd_logout",
    "cmd_token",
    "login_store_url",
    "profile_session",
    "run_login",
]

#: where ``login``, ``token`` and ``logout`` keep their sessions by default: the OS
#: keychain (an encrypted file where there is none)
DEFAULT_LOGIN_STORE = "keyring://"


def login_store_url(args: argparse.Namespace, settings: AuthpulseSettings) -> str:
    """``--store``, else ``AUTHPULSE_STORE_URL`` if set to something that keeps data
    between processes, else the keychain."""
    if args.store is not None:
        return str(args.store)
    configured = settings.store_url.get_secret_value()
    if configured and not configured.lower().startswith("memory:"):
        return configured
    return DEFAULT_LOGIN_STORE


@contextlib.contextmanager
def _store(
    args: argparse.Namespace, settings: AuthpulseSettings, *, must_exist: bool = True
) -> Iterator[SessionStore]:
    url = login_store_url(args, settings)
    store = open_checked_store(url, settings, must_exist=must_exist)
    try:
        yield store
    finally:
        with contextlib.suppress(AuthpulseError):
            store.close()


def profile_session(profile: LoginProfile, store: SessionStore) -> Session:
    """The session of a stored profile: its refresh token grant over the stored token set."""
    from ..._sessions.refresh_grant import RefreshTokenGrant
    from ..._sessions.session import Session

    grant = RefreshTokenGrant(
        profile.token_endpoint,
        profile.client_id,
        profile.client_secret(),
        refresh_token=None,
        auth_method=profile.auth_method,  # type: ignore[arg-type]
        revocation_url=profile.revocation_endpoint,
    )
    return Session(grant, store=store, store_key=profile.session_id)


def cmd_token(args: argparse.Namespace, settings: AuthpulseSettings) -> int:
    with _store(args, settings) as store:
        profile = read_profile(store, args.profile)
        session = profile_session(profile, store)
        try:
            token = session.token()
            due = session.refresh_at
            # a stale token would be refreshed in the background of a process about to exit:
            # refresh it now, so the printed token has its whole lifetime and the rotated
            # refresh token is stored before the command ends
            if due is not None and session.clock.now() >= due:
                token = session.force_refresh().access_token.get_secret_value()
        except LoginRequiredError:
            raise CliError(
                f"the sign-in of profile {profile.name!r} has ended: run authpulse login again"
            ) from None
        finally:
            session.close()
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _where(store: SessionStore) -> str:
    backend = getattr(store, "backend", None)
    return str(backend) if isinstance(backend, str) else type(store).__name__


def cmd_login(args: argparse.Namespace, settings: AuthpulseSettings) -> int:
    return run_login(args, settings)


def run_login(
    args: argparse.Namespace,
    settings: AuthpulseSettings,
    *,
    clock: Clock | None = None,
    transport: Any = None,
    open_browser: bool | Callable[[str], object] | None = None,
    out: TextIO | None = None,
) -> int:
    """``authpulse login``: discover the issuer, sign the user in with the device code
    (default) or the browser, keep the session and its profile in the store.

    ``clock``, ``transport``, ``open_browser`` and ``out`` (default: stderr) are for
    tests and embedders; the command passes none."""
    from ..._sessions.discovery_fetch import discover

    err = out if out is not None else sys.stderr
    secret_env = check_env_name(args.client_secret_env) if args.client_secret_env else None
    profile_id(args.profile)  # a bad name is refused before anyone signs in
    meta = discover(args.issuer, transport=transport, clock=clock)
    token_endpoint = meta.token_endpoint
    if token_endpoint is None:
        raise CliError(f"{meta.issuer} names no token endpoint in its metadata")
    flow = args.flow or "device"
    profile = LoginProfile(
        name=args.profile,
        issuer=meta.issuer,
        client_id=args.client_id,
        token_endpoint=token_endpoint,
        revocation_endpoint=meta.revocation_endpoint,
        scope=args.scope,
        flow=flow,
        client_secret_env=secret_env,
    )
    secret = profile.client_secret()
    with _store(args, settings, must_exist=False) as store:
        common: dict[str, Any] = {
            "scope": args.scope,
            "clock": clock,
            "transport": transport,
            "store": store,
            "store_key": profile.session_id,
        }
        if flow == "device":
            session = _device(meta, token_endpoint, args, secret, common, err)
        else:
            session = _browser(meta, token_endpoint, args, secret, common, err, open_browser)
        try:
            write_profile(store, profile, now=time.time())
        finally:
            session.close()
        print(
            f"Signed in at {meta.issuer} (profile {profile.name!r}; kept in {_where(store)}).",
            file=err,
            flush=True,
        )
    return EXIT_OK


def _device(
    meta: ProviderMetadata,
    token_endpoint: str,
    args: argparse.Namespace,
    secret: str | None,
    common: dict[str, Any],
    err: TextIO,
) -> Session:
    from ..._acquire.device import DeviceCodeLogin

    if meta.device_authorization_endpoint is None:
        raise CliError(
            f"{meta.issuer} has no device authorization endpoint: sign in with --browser"
        )
    login = DeviceCodeLogin(
        meta.device_authorization_endpoint, token_endpoint, args.client_id, secret, **common
    )
    started = login.start()
    print(
        f"To sign in, open {started.verification_uri} and enter the code {started.user_code}",
        file=err,
        flush=True,
    )
    if started.verification_uri_complete is not None:
        print(f"(or open {started.verification_uri_complete})", file=err, flush=True)
    return login.wait()


def _browser(
    meta: ProviderMetadata,
    token_endpoint: str,
    args: argparse.Namespace,
    secret: str | None,
    common: dict[str, Any],
    err: TextIO,
    open_browser: bool | Callable[[str], object] | None,
) -> Session:
    from ..._acquire.authorization_code import AuthorizationCodeLogin

    if meta.authorization_endpoint is None:
        raise CliError(f"{meta.issuer} has no authorization endpoint: sign in with --device")

    def show(url: str) -> None:
        print(f"To sign in, open this address in a browser:\n\n    {url}\n", file=err, flush=True)

    login = AuthorizationCodeLogin(
        meta.authorization_endpoint,
        token_endpoint,
        args.client_id,
        secret,
        issuer=meta.issuer,
        require_iss=meta.authorization_response_iss_parameter_supported,
        open_browser=args.open_browser if open_browser is None else open_browser,
        show_url=show,
        timeout=args.timeout,
        # OpenID Connect Core §11: a refresh token for offline use needs the user's consent
        prompt="consent" if "offline_access" in (args.scope or "").split() else None,
        **common,
    )
    login.start()
    return login.wait()


def cmd_logout(args: argparse.Namespace, settings: AuthpulseSettings) -> int:
    from ..._core.errors import RevocationError

    with _store(args, settings) as store:
        profile = read_profile(store, args.profile)
        revoked = False
        if not args.local_only and profile.revocation_endpoint is not None:
            session = profile_session(profile, store)
            try:
                session.revoke()
                revoked = True
            except RevocationError as exc:
                raise CliError(
                    f"could not revoke the sign-in of profile {profile.name!r} ({exc}); nothing "
                    "was forgotten: try again, or forget it on this machine only with "
                    "--local-only"
                ) from None
            finally:
                session.close()
        store.delete(profile.session_id)
    if revoked:
        note = f"revoked at {profile.issuer} and forgotten"
    elif args.local_only:
        note = "forgotten on this machine; the IdP was not asked to revoke it"
    else:
        note = f"forgotten on this machine; {profile.issuer} has no revocation endpoint"
    print(f"Signed out of profile {profile.name!r}: {note}.", file=sys.stderr, flush=True)
    return EXIT_OK

"""The refresh token grant (RFC 6749 §6), with rotation."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr

from .._core.errors import LoginRequiredError, NoRefreshTokenError
from .._core.tokens import TokenSet
from .client_auth import ClientAuth, ClientAuthMethod
from .fetch import FetchContext
from .oauth_grant import OAuthGrant, as_secret

__all__ = ["RefreshTokenGrant"]


class RefreshTokenGrant(OAuthGrant):
    """The refresh token grant (RFC 6749 §6), with rotation.

    The refresh token in use is the newest one the session holds; the one
    given here seeds the first refresh. When an answer carries a new refresh
    token it replaces the old one; when it carries none, the old one is kept.

    It cannot start afresh: asked to after the stored set proved unusable
    (``FetchContext.afresh``), it raises :class:`NoRefreshTokenError` rather
    than present a refresh token that may have been rotated since (the IdP
    would see a reuse and revoke the grant).
    """

    grant_type = "refresh_token"

    def __init__(
        self,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | SecretStr | None = None,
        *,
        refresh_token: str | SecretStr | None,
        issuer: str | None = None,
        auth_method: ClientAuthMethod | None = None,
        client_auth: ClientAuth | None = None,
        scope: str | Iterable[str] | None = None,
        extra_params: dict[str, str] | None = None,
        allow_insecure_http: bool = False,
        revocation_url: str | None = None,
    ) -> None:
        super().__init__(
            token_url,
            client_id,
            client_secret,
            issuer=issuer,
            auth_method=auth_method,
            client_auth=client_auth,
            scope=scope,
            extra_params=extra_params,
            allow_insecure_http=allow_insecure_http,
            revocation_url=revocation_url,
        )
        rt = as_secret(refresh_token, "refresh_token")
        self._initial = rt if rt is None or rt.get_secret_value() else None
        self._revoked = False

    def forget(self) -> None:
        """Drop the refresh token given here: the grant was revoked. Until a new
        token set with a refresh token is installed, a refresh raises
        :class:`LoginRequiredError`."""
        self._initial = None
        self._revoked = True

    def refresh_token_for(self, current: TokenSet | None) -> SecretStr | None:
        """The refresh token the next request will use."""
        if current is not None and current.refresh_token is not None:
            return current.refresh_token
        return self._initial

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        rt = self.refresh_token_for(current)
        if rt is None:
            raise NoRefreshTokenError("no refresh token is available for this session")
        return {"refresh_token": rt.get_secret_value()}

    def _secrets(self, current: TokenSet | None) -> list[SecretStr]:
        rt = self.refresh_token_for(current)
        return super()._secrets(current) + ([rt] if rt else [])

    def _carry_over(self, token: TokenSet, current: TokenSet | None) -> TokenSet:
        # an answer that does not say when the refresh token expires keeps the
        # expiry known so far (an IdP's absolute grant lifetime does not move)
        expiry = current.refresh_expires_at if current is not None else None
        if token.refresh_token is None:
            return token.with_refresh_token(self.refresh_token_for(current), expiry)
        if token.refresh_expires_at is None and expiry is not None:
            return token.with_refresh_token(token.refresh_token, expiry)
        return token

    def _check_context(self, ctx: FetchContext) -> None:
        if self._revoked and self.refresh_token_for(ctx.current) is None:
            raise LoginRequiredError(None, reason="the grant was revoked; sign in again")
        if ctx.afresh is not None:
            raise NoRefreshTokenError(
                f"no usable refresh token: {ctx.afresh}, and the refresh token it held is lost"
            )


# The public names defined here show the module they are imported from.
for _public in (RefreshTokenGrant,):
    _public.__module__ = "authpulse"
del _public

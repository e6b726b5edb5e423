"""The refresh token grant (RFC 6749 §6), with rotation."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr

from .._core.errors import NoRefreshTokenError
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
        )
        rt = as_secret(refresh_token, "refresh_token")
        self._initial = rt if rt is None or rt.get_secret_value() else None

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
        if token.refresh_token is None:
            return token.with_refresh_token(self.refresh_token_for(current))
        return token

    def _check_context(self, ctx: FetchContext) -> None:
        if ctx.afresh is not None:
            raise NoRefreshTokenError(
                f"no usable refresh token: {ctx.afresh}, and the refresh token it held is lost"
            )


# The public names defined here show the module they are imported from.
for _public in (RefreshTokenGrant,):
    _public.__module__ = "authpulse"
del _public

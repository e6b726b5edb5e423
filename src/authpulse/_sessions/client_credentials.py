"""The client credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

from .._core.tokens import TokenSet
from .oauth_grant import OAuthGrant

__all__ = ["ClientCredentials"]


class ClientCredentials(OAuthGrant):
    """The client credentials grant (RFC 6749 §4.4): a service acting as itself."""

    grant_type = "client_credentials"

    def _grant_params(self, current: TokenSet | None) -> dict[str, str]:
        return {}


# The public names defined here show the module they are imported from.
for _public in (ClientCredentials,):
    _public.__module__ = "authpulse"
del _public

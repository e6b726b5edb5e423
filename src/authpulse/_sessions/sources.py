"""Token sources: where a new :class:`TokenSet` comes from.

An OAuth grant builds its request and parses the answer without doing I/O;
the session's shell sends the request with its own httpx client (sync or
async), retrying transient failures. Anything else plugs in through
:class:`CallableSource`.

The pieces live in their own modules: the fetch contract (:mod:`.fetch`),
the grants' shared token request flow (:mod:`.oauth_grant`, reading the
answer in :mod:`.token_body`), one module per grant
(:mod:`.client_credentials`, :mod:`.refresh_grant`) and the function-backed
sources (:mod:`.callable_source`). This module gathers them.
"""

from __future__ import annotations

from .callable_source import CallableSource, FunctionSource
from .client_credentials import ClientCredentials
from .fetch import (
    FetchContext,
    Fetched,
    FlowSource,
    TokenSource,
    either_op,
    fetch_flow,
    run_coroutine_blocking,
)
from .oauth_grant import ClientAuthMethod, OAuthGrant
from .refresh_grant import RefreshTokenGrant

__all__ = [
    "CallableSource",
    "ClientAuthMethod",
    "ClientCredentials",
    "FetchContext",
    "Fetched",
    "FlowSource",
    "FunctionSource",
    "OAuthGrant",
    "RefreshTokenGrant",
    "TokenSource",
    "either_op",
    "fetch_flow",
    "run_coroutine_blocking",
]

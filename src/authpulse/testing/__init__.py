"""Test seams for code that uses authpulse (and for authpulse's own tests).

- :class:`FakeClock`: a clock that moves only when told to (``advance``),
  or when something sleeps on it.
- :class:`FakeIdP`: an OAuth 2.0 token endpoint on ``httpx.MockTransport``
  with refresh-token rotation, single-use refresh tokens and reuse
  detection (reuse revokes the whole grant), latency and scripted faults.
- :class:`FakeAPI`: a resource server that accepts only tokens the fake IdP
  issued and that are still valid.
- :class:`FakeAuthorizationServer`: the authorization endpoint of a fake IdP
  and its user's browser, for browser logins (authorization code with PKCE).
- :class:`LoopbackServer`: serves any of the fakes over real HTTP on
  127.0.0.1, so that other processes can reach it.
"""

from ._api import FakeAPI
from ._authorize import FakeAuthorizationServer
from ._clock import FakeClock
from ._idp import FakeIdP, Fault
from ._server import LoopbackServer

__all__ = ["FakeAPI", "FakeAuthorizationServer", "FakeClock", "FakeIdP", "Fault", "LoopbackServer"]

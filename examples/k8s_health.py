"""Kubernetes liveness and readiness probes built on authpulse's health score.

Runs against the embedded fake IdP (no network beyond 127.0.0.1):

    python examples/k8s_health.py

A ``http.server`` on 127.0.0.1 answers two probes:

- ``GET /livez`` — liveness: 200 while the process can serve. It does *not*
  look at token health: restarting a pod does not bring an IdP back, so an
  IdP outage must never make Kubernetes kill the pod.
- ``GET /readyz`` — readiness: 503 while any active session's health band
  is poor or critical (score below 40), with the worst components in the
  body; Kubernetes then stops routing traffic to the pod until it recovers.

In a pod spec::

    livenessProbe:  {httpGet: {path: /livez, port: 8080}, periodSeconds: 10}
    readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 5}

The example probes its own server: ready; then the IdP rejects the client
and the tokens expire (not ready, still live); then the IdP is fixed and a
refresh succeeds (ready again). A ``FakeClock`` makes the hour pass at once.
Against a real IdP, drop ``clock=`` and ``transport=`` and use real URLs;
bind to ``0.0.0.0`` inside the container.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import authpulse
from authpulse.testing import FakeClock, FakeIdP

NOT_READY = (authpulse.Band.POOR, authpulse.Band.CRITICAL)


def readiness(manager: authpulse.SessionManager) -> tuple[bool, dict[str, Any]]:
    """(ready?, a JSON-ready body): not ready while any session is poor or critical."""
    sessions: dict[str, Any] = {}
    ready = True
    for rec in manager.list(status="ACTIVE"):
        report = manager.health(rec.id)
        sessions[rec.owner] = {
            "score": report.score,
            "band": report.band.value,
            "components": {c.name: c.penalty for c in report.components},
        }
        ready = ready and report.band not in NOT_READY
    return ready, {"ready": ready, "sessions": sessions}


def make_handler(manager: authpulse.SessionManager) -> type[BaseHTTPRequestHandler]:
    class ProbeHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep the output short
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/livez":
                self._send(200, {"live": True})
            elif self.path == "/readyz":
                ready, body = readiness(manager)
                self._send(200 if ready else 503, body)
            else:
                self._send(404, {"error": "not found"})

    return ProbeHandler


def probe(base: str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as response:  # noqa: S310 - our URL
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def main() -> int:
    clock = FakeClock()
    idp = FakeIdP(clock=clock, access_ttl=3600)
    manager = authpulse.SessionManager(clock=clock, transport=idp.transport)
    sessions = [
        manager.create_session(
            name, authpulse.ClientCredentials(idp.token_url, "client", "secret"), kind="system"
        )
        for name in ("billing", "reports")
    ]
    for ms in sessions:
        ms.session.token()

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(manager))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    seen: list[tuple[int, int]] = []

    def check(stage: str) -> None:
        live, _ = probe(base, "/livez")
        ready, body = probe(base, "/readyz")
        seen.append((live, ready))
        print(f"{stage}: /livez {live}, /readyz {ready}")
        for owner, s in body["sessions"].items():
            print(f"    {owner}: {s['score']} ({s['band']}) {s['components']}")

    try:
        check("tokens fresh")

        idp.clients = {}  # the IdP no longer accepts the client (say, a rotated secret)
        clock.advance(3700)  # an hour later: every token has expired
        for ms in sessions:
            try:
                ms.session.token()
            except authpulse.AuthpulseError as exc:
                print(f"refresh of {ms.owner} failed: {exc}")
        check("IdP rejecting the client")

        idp.clients = {"client": "secret"}  # fixed
        for ms in sessions:
            ms.session.force_refresh()
        check("IdP fixed, refreshed")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        manager.shutdown()

    return 0 if seen == [(200, 200), (200, 503), (200, 200)] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A threading HTTP server that knows its open connections.

``ThreadingHTTPServer.server_close()`` stops accepting, but a keep-alive
connection's thread goes on serving it. :class:`TrackedHTTPServer` keeps each
open connection with its thread, so :meth:`~TrackedHTTPServer.drop_connections`
can shut them down and join the threads: closing a server really ends it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TrackedHTTPServer"]


class TrackedHTTPServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` whose open connections can be dropped."""

    daemon_threads = True  # drop_connections() shuts the connections and joins their threads

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns[request] = threading.current_thread()
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(request, None)

    def drop_connections(self, timeout: float) -> None:
        """Shut every open connection down and wait up to ``timeout`` seconds
        for each of their threads."""
        with self._conns_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in conns:
            thread.join(timeout)

"""A TCP proxy that adds latency to every round trip (for a store "far away").

:class:`LatencyProxy` listens on 127.0.0.1 and forwards each connection to an
upstream server. What the client sends passes at once; every chunk the
upstream answers is held until ``delay`` seconds after it arrived, then sent
on, in order. One request/answer round trip therefore costs ``delay`` more,
however the answer is split into chunks, and answers that arrive together
(a pipeline) are delayed once, not once per chunk.

Threads do the work (three per connection); they hold the GIL only for a
few µs per chunk.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["LatencyProxy"]

_Item = tuple[float, bytes] | None


def _nodelay(sock: socket.socket) -> None:
    # Nagle plus delayed ACKs would add up to 40 ms of their own to small answers
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LatencyProxy:
    """A proxy on 127.0.0.1 in front of ``host:port`` whose answers come ``delay`` s late.

    :attr:`answers` counts the chunks delivered late: one per round trip for
    small answers such as a Redis store's. Use as a context manager.
    """

    def __init__(self, host: str, port: int, delay: float) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.upstream = (host, port)
        self.delay = delay
        self.answers = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._guard = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept, "latency-proxy")

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                _nodelay(sock)
            with self._guard:
                if self._closed.is_set():  # accepted while closing
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                held: queue.SimpleQueue[_Item] = queue.SimpleQueue()
                self._spawn(self._forward, "latency-proxy-up", client, upstream)
                self._spawn(self._collect, "latency-proxy-down", upstream, held)
                self._spawn(self._deliver, "latency-proxy-late", held, client)

    @staticmethod
    def _forward(src: socket.socket, dst: socket.socket) -> None:
        """Client to upstream, at once."""
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            return

    def _collect(self, src: socket.socket, held: queue.SimpleQueue[_Item]) -> None:
        """Upstream answers, stamped with the time they are due at the client."""
        try:
            while chunk := src.recv(65536):
                held.put((time.monotonic() + self.delay, chunk))
        except OSError:
            pass
        finally:
            held.put(None)

    def _deliver(self, held: queue.SimpleQueue[_Item], dst: socket.socket) -> None:
        try:
            while (item := held.get()) is not None:
                due, chunk = item
                wait = due - time.monotonic()
                if wait > 0 and self._closed.wait(wait):
                    return
                dst.sendall(chunk)
                with self._guard:
                    self.answers += 1
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            return

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def close(self) -> None:
        """Stop accepting, cut every connection and wait for the threads."""
        with self._guard:
            self._closed.set()
            socks = [self._listener, *self._sockets]
            self._sockets.clear()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        me = threading.current_thread()
        for t in list(self._threads):
            if t is not me:
                t.join(5)

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

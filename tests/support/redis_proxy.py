"""A TCP proxy in front of a Redis server that can lose a reply: the command that carries
a marker reaches the server and runs there, then the connection is cut before its reply
gets back to the client, as when a connection drops (a failover, a reset) at the worst
moment. Everything else passes through unchanged."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from tests.support.redis_server import free_port


class RedisProxy:
    def __init__(self, server_port: int, marker: bytes, cuts: int) -> None:
        """Lose the replies of the first `cuts` commands whose bytes hold `marker`."""
        self.server_port = server_port
        self.port = free_port()
        self.marker = marker
        self.cuts_left = cuts
        self.cut = 0  # replies lost so far
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="redis-proxy", daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.server_port))
            with self._lock:
                self._sockets += [client, server]
            lose_next_reply = threading.Event()

            def request(data: bytes, lose_next_reply: threading.Event = lose_next_reply) -> bool:
                if self.marker in data:
                    with self._lock:
                        if self.cuts_left > 0:
                            self.cuts_left -= 1
                            lose_next_reply.set()  # before the server can answer
                return True

            def reply(data: bytes, lose_next_reply: threading.Event = lose_next_reply) -> bool:
                if not lose_next_reply.is_set():
                    return True
                with self._lock:  # the marked command has run: its reply never arrives
                    self.cut += 1
                return False

            threading.Thread(target=self._pump, args=(client, server, request), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, reply), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, passes: Callable[[bytes], bool]) -> None:
        """Forward `source`'s bytes to `target` until either side closes, or until
        `passes` refuses a chunk: then both are cut."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data or not passes(data):
                self._close(source, target)
                return
            try:
                target.sendall(data)
            except OSError:
                self._close(source, target)
                return

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        self._close(*sockets)

"""A TCP proxy in front of a Redis server that can lose a reply: the command that carries
a marker reaches the server and runs there, then the connection is cut before its reply
gets back to the client, as when a connection drops (a failover, a reset) at the worst
moment. Everything else passes through unchanged."""

from __future__ import annotations

import contextlib
import socket
import threading

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
            threading.Thread(target=self._requests, args=(client, server, lose_next_reply), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, lose_next_reply), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, lose_next_reply: threading.Event) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._close(client, server)
                return
            if self.marker in data:
                with self._lock:
                    if self.cuts_left > 0:
                        self.cuts_left -= 1
                        lose_next_reply.set()  # before the server can answer
            try:
                server.sendall(data)
            except OSError:
                self._close(client, server)
                return

    def _replies(self, server: socket.socket, client: socket.socket, lose_next_reply: threading.Event) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._close(client, server)
                return
            if lose_next_reply.is_set():  # the marked command has run: its reply never arrives
                with self._lock:
                    self.cut += 1
                self._close(client, server)
                return
            try:
                client.sendall(data)
            except OSError:
                self._close(client, server)
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

"""A webhook receiver on loopback for the tests: a real HTTP server in a thread that
answers as told (2xx, 500, 410, 429 with Retry-After, a redirect, a huge body, hang, or
close the connection) and records every request it got."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    at: float  # time.monotonic()
    path: str
    headers: dict[str, str]
    body: bytes
    answer: str


@dataclass
class Receiver:
    """`script` answers the next requests in order, then `default` answers the rest.
    Answers: "200", "500", "410", "429:<retry-after>", "302", "big" (a 200 with a 1 MB
    body), "hang" (reads the request, never answers until stopped), "close" (reads the
    request and closes the connection without a word)."""

    default: str = "200"
    script: deque[str] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer_next(self, *answers: str) -> None:
        with self._lock:
            self.script.extend(answers)

    def _next_answer(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = receiver._next_answer()
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}, body, answer
                        )
                    )
                receiver._respond(self, answer)

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def _respond(self, handler: BaseHTTPRequestHandler, answer: str) -> None:
        if answer == "hang":
            self._stopping.wait(120)
            return
        if answer == "close":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        code, _, extra = answer.partition(":")
        body = b"x" * 1_000_000 if code == "big" else f"answer {code}".encode()
        handler.send_response(200 if code == "big" else int(code))
        if code == "429" and extra:
            handler.send_header("Retry-After", extra)
        if code == "302":
            handler.send_header("Location", "http://127.0.0.1:9/elsewhere")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass  # the sender read its 64 KB and hung up

    def stop(self) -> None:
        """Stop listening (the port is refused until start() again, on the same port)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""One HTTP POST to a receiver, with the limits a webhook sender needs: connect to the
address the SSRF guard checked, give up after the connect and total timeouts, read at
most 64 KB of the answer, follow no redirect.

The standard library's http.client does all of it (it never follows redirects), so
production needs no HTTP client package for this.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from webhooks.addresses import Target

READ_LIMIT = 64 * 1024
EXCERPT_BYTES = 1024


@dataclass
class Outcome:
    status: int | None  # None: no answer (connection refused, timeout, reset)
    latency_ms: int
    response: str = ""  # the first EXCERPT_BYTES of the body, decoded leniently
    error: str = ""
    retry_after: float | None = None  # seconds, when the receiver said so

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Connection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        # The certificate is checked against the URL's host name, not the address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds (only the delta-seconds form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def post(
    target: Target, body: bytes, headers: dict[str, str], *, connect_timeout: float, total_timeout: float
) -> Outcome:
    started = time.monotonic()
    connection_class = _TLSConnection if target.scheme == "https" else _Connection
    connection = connection_class(target, timeout=connect_timeout)
    timer: threading.Timer | None = None

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        connection.connect()
        remaining = total_timeout - (time.monotonic() - started)
        sock = connection.sock
        sock.settimeout(max(remaining, 0.001))
        # A receiver that trickles its answer a byte at a time would reset a per-read
        # timeout forever: at the deadline the socket is shut, whatever it is doing.
        timer = threading.Timer(max(remaining, 0.0), _shut, args=(sock,))
        timer.daemon = True
        timer.start()
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(READ_LIMIT)
        return Outcome(
            status=response.status,
            latency_ms=elapsed_ms(),
            response=data[:EXCERPT_BYTES].decode("utf-8", errors="replace"),
            retry_after=retry_after_seconds(response.getheader("Retry-After")),
        )
    except (OSError, http.client.HTTPException) as exc:
        late = time.monotonic() - started >= total_timeout - 0.01
        error = f"timed out after {total_timeout:g} s" if late else _describe(exc)
        return Outcome(status=None, latency_ms=elapsed_ms(), error=error)
    finally:
        if timer is not None:
            timer.cancel()
        connection.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:500]

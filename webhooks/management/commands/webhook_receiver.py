"""`manage.py webhook_receiver [--port 9000] [--secret whsec_...]`: a local receiver for
trying webhooks out (never for production). It prints each delivery it gets, checks its
Standard Webhooks signature, and answers 204 when the signature verifies, 400 when not.

The secrets it checks against: `--secret` (repeat for several), else those of every
endpoint in this project's database whose URL names this port, so that the README's
walk needs no copying of secrets. Ctrl-C stops it; the deliveries then fail and retry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand

from webhooks import signing
from webhooks.models import Endpoint

# A timestamp further than this from now is refused (the Standard Webhooks libraries' tolerance).
TOLERANCE_SECONDS = 5 * 60


def verify(secrets: list[str], headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """Whether one of the header's signatures is that of one of the secrets."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs((now or time.time()) - int(stamp)) > TOLERANCE_SECONDS:
        return False
    signatures = headers.get("webhook-signature", "").split()
    offered = {part.partition(",")[2] for part in signatures if part.startswith("v1,")}
    content = f"{msg_id}.{stamp}.".encode() + body
    for secret in secrets:
        digest = base64.b64encode(hmac.new(signing.key_of(secret), content, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(digest, candidate) for candidate in offered):
            return True
    return False


def endpoint_secrets(port: int) -> list[str]:
    """The signing secrets of this project's endpoints that point at `port` on this machine."""
    found: list[str] = []
    for endpoint in Endpoint.objects.all():
        parts = urlsplit(endpoint.url)
        if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port == port:
            found += endpoint.secrets()
    return found


class Command(BaseCommand):
    help = "A local webhook receiver: prints each delivery and checks its signature (development only)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=9000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--secret",
            action="append",
            default=[],
            dest="secrets",
            help="a whsec_ secret to verify with (repeat); default: those of the endpoints pointing at this port",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        command = self
        port, given = options["port"], options["secrets"]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass  # one line per delivery, below

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = verify(given or endpoint_secrets(port), headers, body)
                command.report(self.path, headers, body, ok)
                self.send_response(204 if ok else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer((options["host"], port), Handler)
        server.daemon_threads = True
        self.stdout.write(f"Receiving webhooks on http://{options['host']}:{port}/ (Ctrl-C stops)")
        self.stdout.flush()
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    def report(self, path: str, headers: dict[str, str], body: bytes, ok: bool) -> None:
        try:
            event = json.loads(body)
            summary = f"{event.get('type')} {json.dumps(event.get('data'), sort_keys=True)[:300]}"
        except (ValueError, AttributeError):
            summary = body[:300].decode("utf-8", errors="replace")
        verdict = "signature verified" if ok else "signature NOT verified (answered 400)"
        self.stdout.write(f"{headers.get('webhook-id', '-')} {path}: {verdict}: {summary}")
        self.stdout.flush()

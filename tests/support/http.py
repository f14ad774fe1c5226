"""A small real-HTTP client for tests against `live_server` or a gunicorn process."""

import json
import urllib.error
import urllib.request
from typing import Any


def request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - test URLs
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310
            status, raw, hdrs = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, hdrs = error.code, error.read(), dict(error.headers)
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode(errors="replace")

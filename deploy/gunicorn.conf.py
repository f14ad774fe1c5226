"""gunicorn's configuration for Buzzer in production (`gunicorn -c deploy/gunicorn.conf.py`).

Every value can be changed from the environment without editing this file; docs/DEPLOY.md
lists them. gunicorn reads this file itself (it is not a module of the project), so it
reads the process's environment only: the systemd unit loads the same EnvironmentFile as
the other processes, and `Procfile.production` runs under `scripts/with_env.py`.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def cpu_count() -> int:
    """The CPUs this process may run on (a cgroup's cpuset or `taskset` included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(cpus: int) -> int:
    """gunicorn's rule of thumb, 2 × CPUs + 1. Each worker process is one more
    DATABASE_POOL_MAX_SIZE of PostgreSQL connections: count them before raising it."""
    return 2 * cpus + 1


# Behind a reverse proxy on the same host by default; GUNICORN_BIND for another address
# or a socket ("unix:/run/buzzer/web.sock"), several joined by commas.
bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if address.strip()]

# WEB_CONCURRENCY (the name gunicorn and most platforms use) overrides the CPU count rule.
workers = _int("WEB_CONCURRENCY", default_workers(cpu_count()))
# Threads per worker: a request waits on PostgreSQL, Redis and the payment gateway, so a
# few threads keep a process busy. Keep threads <= DATABASE_POOL_MAX_SIZE (8 by default),
# or a thread may wait for a connection (DATABASE_POOL_TIMEOUT) and answer 503.
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)

# A request that takes longer than this is a bug (the slow work runs on the workers):
# the worker is killed and restarted, the client gets a 502 from the proxy.
timeout = _int("GUNICORN_TIMEOUT", 30)
# SIGTERM (systemctl stop, a deploy): requests in progress get this long to finish.
# The unit's TimeoutStopSec is longer.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 25)
# Longer than the proxy's idle timeout to its upstream would make the proxy reuse
# connections gunicorn already closed; 5 s suits nginx's default keepalive to upstreams.
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Recycle each worker after about this many requests (jitter: not all at once), a guard
# against slow leaks in a long-lived process; 0 turns it off.
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# The application is loaded in each worker, not in the master: `systemctl reload
# buzzer-web` (SIGHUP) then starts new workers on the new code and stops the old ones
# gracefully, without closing the listening socket.
preload_app = False

# The worker heartbeat files on a memory file system: a slow or full disk never makes
# the master kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - a tmpfs, by design

# Logs to stdout/stderr: journald (systemd) or the platform collects them.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Client address, time, request line, status, bytes, duration in ms, the request id that
# the application's own log lines carry (config/logging.py), referrer and user agent.
access_log_format = '%(h)s - %(u)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s "%(f)s" "%(a)s"'

# X-Forwarded-Proto and X-Forwarded-For are trusted only from these addresses (gunicorn
# reads FORWARDED_ALLOW_IPS itself; its default is 127.0.0.1,::1, a proxy on this host).
# Set it to the load balancer's address when the proxy is elsewhere; never "*" unless
# nothing but the proxy can reach this port. Django decides HTTPS from the same header
# (SECURE_PROXY_SSL_HEADER): the proxy must set it and strip the client's own.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

proc_name = "buzzer-web"

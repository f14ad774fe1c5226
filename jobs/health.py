"""The health verdict behind /healthz.

503 (`unhealthy`) when jobs cannot be accepted or will not run: the database or Redis
does not answer, no worker process is alive, or the scheduler (outbox sweep, periodic
jobs, samples) has been silent for more than 3 sample intervals.
200 `degraded` when alerts are open: they are listed and were mailed to the operators,
but a backlog or new dead letters are not fixed by restarting or unrouting this process,
which is what a load balancer or orchestrator does with a 503.
200 `ok` otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.db import DatabaseError, connection

from jobs import monitoring
from jobs.alerts import open_alerts

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("Health check: database unavailable (%s)", exc)
        return False
    return True


def check_health() -> tuple[dict[str, Any], bool]:
    """The report and whether the service is healthy (HTTP 200) or not (503)."""
    report: dict[str, Any] = {
        "database": "ok",
        "redis": "ok",
        "workers_alive": None,
        "scheduler_alive": None,
        "alerts": [],
        "problems": [],
        "status": "ok",
    }
    if not _database_ok():
        report["database"] = "unavailable"
        report["problems"].append("database unavailable")
    try:
        client, namespace = monitoring.redis_connection()
        client.ping()  # fail fast on a dead Redis before reading anything else
        report["workers_alive"] = sum(1 for w in monitoring.workers(client, namespace) if w.alive)
        report["scheduler_alive"] = monitoring.scheduler_alive(monitoring.scheduler_beat(client, namespace))
    except redis.RedisError as exc:
        logger.warning("Health check: Redis unavailable (%s)", exc)
        report["redis"] = "unavailable"
        report["problems"].append("redis unavailable")
    else:
        if not report["workers_alive"]:
            report["problems"].append("no worker alive")
        if not report["scheduler_alive"]:
            report["problems"].append("scheduler silent")
    if report["database"] == "ok":
        report["alerts"] = [
            {
                "kind": a.kind,
                "queue": a.queue_name,
                "message": a.message,
                "opened_at": a.opened_at.isoformat(),
            }
            for a in open_alerts()
        ]
    healthy = not report["problems"]
    report["status"] = ("degraded" if report["alerts"] else "ok") if healthy else "unhealthy"
    return report, healthy

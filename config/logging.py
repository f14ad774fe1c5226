"""Logs: one format for web, workers and scheduler, and the ids to follow one order.

Every process logs through the standard library (`logging.getLogger(__name__)`), and
structlog's `ProcessorFormatter` renders each record: JSON lines (`LOG_FORMAT=json`, the
default with DEBUG off) or readable lines (`LOG_FORMAT=text`, the default with DEBUG
on). What is bound in the context rides on every line of the thread that bound it:

- a request binds `request_id` (its `X-Request-ID`, or one made up; returned in the
  response's `X-Request-ID`), see `config.middleware.RequestIdMiddleware`;
- `jobs.enqueue` writes that request id into the job's message options, and the worker
  binds `request_id`, `job_id`, `actor`, `attempt` and `queue` around each job
  (`jobs.middleware.JobTracking`), so `grep <request id>` finds the request and every
  line of the jobs it created, their retries included.

A worker thread binds its job's ids with `bind_job` (one thread-local assignment) rather
than one context variable each: it does so for every job, and at thousands of jobs a
second setting and resetting five context variables cost more than the job's own line.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import structlog

# What a request may bring as its id: short and plain (it is logged and sent back).
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def new_request_id(offered: str | None = None) -> str:
    if offered and REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def bind(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def unbind(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)


_job = threading.local()


def bind_job(**values: Any) -> None:
    """The ids of the job this thread runs, on every line it logs until `unbind_job`."""
    _job.context = values


def unbind_job() -> None:
    _job.context = None


def merge_job_context(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the values bound by `bind_job` (a line's own values win)."""
    context = getattr(_job, "context", None)
    if context:
        for name, value in context.items():
            event_dict.setdefault(name, value)
    return event_dict


def bound() -> dict[str, Any]:
    values = structlog.contextvars.get_contextvars()
    context = getattr(_job, "context", None)
    return {**values, **context} if context else values


def settings_dict(log_format: str, level: str, levels: dict[str, str]) -> dict[str, Any]:
    """The LOGGING setting: stdlib loggers, structlog's formatter."""
    shared = [
        merge_job_context,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        renderer: list[Any] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
                "foreign_pre_chain": shared,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {name: {"level": value} for name, value in levels.items()},
    }

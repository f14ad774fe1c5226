"""Dramatiq middleware: Buzzer's retry defaults and the tracking that keeps each Job row
true (claimed on start, attempts counted, result or error recorded, dead when out of
retries or permanently failed, never run again once finished)."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage
from dramatiq.middleware import Retries as DramatiqRetries
from dramatiq.middleware import TimeLimit as DramatiqTimeLimit

logger = logging.getLogger(__name__)

ERROR_LIMIT = 2000
TRACEBACK_LIMIT = 20000


class Retries(DramatiqRetries):
    """Dramatiq's retries with Buzzer's defaults: a few retries with exponential
    backoff and jitter instead of 20 retries over five weeks."""

    def __init__(self, **kwargs: Any) -> None:
        from django.conf import settings

        kwargs.setdefault("max_retries", settings.BUZZER_MAX_RETRIES)
        kwargs.setdefault("min_backoff", settings.BUZZER_MIN_BACKOFF_MS)
        kwargs.setdefault("max_backoff", settings.BUZZER_MAX_BACKOFF_MS)
        super().__init__(**kwargs)


class TimeLimit(DramatiqTimeLimit):
    def __init__(self, **kwargs: Any) -> None:
        from django.conf import settings

        kwargs.setdefault("time_limit", settings.BUZZER_TIME_LIMIT_MS)
        super().__init__(**kwargs)


def is_worker_alive(broker: dramatiq.Broker, worker_id: str) -> bool:
    """Whether the worker process that claimed a job still sends heartbeats."""
    if not worker_id or worker_id == getattr(broker, "broker_id", None):
        return True
    client = getattr(broker, "client", None)
    if client is None:  # the stub broker has no heartbeats: assume alive, never run twice
        return True
    score = client.zscore(f"{broker.namespace}:__heartbeats__", worker_id)
    if score is None:
        return False
    return time.time() * 1000 - float(score) < broker.heartbeat_timeout


def describe(exception: BaseException) -> tuple[str, str]:
    error = f"{type(exception).__name__}: {exception}"[:ERROR_LIMIT]
    tb = "".join(traceback.format_exception(exception, limit=30))[-TRACEBACK_LIMIT:]
    return error, tb


class JobTracking(Middleware):
    """Keeps the `jobs.Job` row of every message true, through the group-commit writer."""

    def __init__(self) -> None:
        self._writer = None
        self._lock = threading.Lock()

    def writer(self, broker: dramatiq.Broker):
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    from jobs.writer import JobWriter

                    self._writer = JobWriter(lambda worker: is_worker_alive(broker, worker))
        return self._writer

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        from jobs.writer import SKIP, Claim, Finish, now

        try:
            job_id = uuid.UUID(message.message_id)
        except ValueError:
            logger.warning("Message %s has no job id; running it untracked", message.message_id)
            return
        writer = self.writer(broker)
        if message.failed:  # an earlier middleware (age limit) gave up on it
            writer.finish(Finish(job_id, "dead", now(), error="Message exceeded its age limit"))
            return
        outcome = writer.claim(
            Claim(
                job_id=job_id,
                retries=message.options.get("retries", 0),
                worker=getattr(broker, "broker_id", ""),
                actor_name=message.actor_name,
                queue_name=message.queue_name.removesuffix(".DQ"),
                args=list(message.args),
                kwargs=dict(message.kwargs),
                now=now(),
            )
        )
        if outcome == SKIP:
            raise SkipMessage(f"job {job_id} is not waiting to run")
        message._buzzer_job_id = job_id

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        from jobs.writer import Finish, now

        job_id = getattr(message, "_buzzer_job_id", None)
        if job_id is None:
            return
        writer = self.writer(broker)
        if exception is None and not message.failed:
            writer.finish(Finish(job_id, "succeeded", now()))
            return
        error, tb = describe(exception) if exception else ("Message failed", "")
        # Retries (earlier in the chain) has already decided: failed means no more tries.
        status = "dead" if message.failed else "retrying"
        writer.finish(Finish(job_id, status, now(), error=error, traceback=tb))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

"""When a message became ready to run, for the queue wait histogram (`jobs.stats`).

Dramatiq's `message_timestamp` is the first send: a retry keeps it, and the worker drops
the `eta` when it moves a delayed message (a retry's backoff, a wait for the database)
to its queue, so neither tells how long an attempt waited in the queue. Every enqueue
through a broker with this middleware stamps the moment the message becomes ready:
now, or its eta when it goes to the delay queue (then now again when the worker moves
it over). Messages sent through a broker without it (the web's dispatch twin,
`jobs.services.sender`) are stamped at their send by `message_timestamp` itself.
"""

from __future__ import annotations

import threading
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

import dramatiq
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware

READY_OPTION = "buzzer_ready_ms"


_delayed = threading.local()


class ReadyTime(Middleware):
    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        ready = current_millis() + (delay or 0)
        message.options[READY_OPTION] = ready
        if delay:  # a retry's backoff, or a wait: the job tracking records when it runs next
            _delayed.last = (message.message_id, ready)


def take_next_run(message_id: str) -> datetime | None:
    """When the message just sent back with a delay by this thread runs next (its retry,
    its wait), or None: read once, by the tracking of the attempt that failed."""
    last = getattr(_delayed, "last", None)
    _delayed.last = None
    if last is None or last[0] != message_id:
        return None
    return datetime.fromtimestamp(last[1] / 1000, tz=dt_timezone.utc)


def ready_ms(message: Any) -> int:
    """Epoch milliseconds at which the message became ready to run."""
    return int(message.options.get(READY_OPTION) or message.message_timestamp)

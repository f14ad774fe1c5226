"""Pausing a queue (Sidekiq, Oban, Bull Board have it): its workers stop taking messages
from it, everything already in it waits there, and nothing is lost. A set in Redis
names the paused queues; each worker's consumer of the queue looks at it at most every
PAUSE_CHECK_SECONDS and, while its queue is in it, fetches nothing. Messages a worker had
already fetched before the pause still run. Operators pause and resume from the queue
dashboard (permission `jobs.pause_queue`); both are audited."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.conf import settings

logger = logging.getLogger(__name__)

PAUSE_CHECK_SECONDS = 1.0


class UnknownQueue(ValueError):
    """Not one of BUZZER_QUEUES."""


def paused_key(namespace: str) -> str:
    return f"{namespace}:buzzer:paused-queues"


def paused_queues(client: Any, namespace: str) -> set[str]:
    return {name.decode() if isinstance(name, bytes) else name for name in client.smembers(paused_key(namespace))}


def set_paused(queue_name: str, paused: bool, *, user: Any = None) -> bool:
    """Pause or resume a queue; True when that changed something. Audited."""
    from jobs.models import JobAction

    if queue_name not in settings.BUZZER_QUEUES:
        raise UnknownQueue(f"There is no queue {queue_name!r}.")
    broker = dramatiq.get_broker()
    key = paused_key(broker.namespace)
    changed = bool(broker.client.sadd(key, queue_name) if paused else broker.client.srem(key, queue_name))
    if changed:
        who = user if getattr(user, "is_authenticated", False) else None
        JobAction.objects.create(
            kind=JobAction.Kind.QUEUE_PAUSE if paused else JobAction.Kind.QUEUE_RESUME,
            subject=f"queue {queue_name}",
            user=who,
            reason="Workers take no message from it until it is resumed." if paused else "Workers take from it again.",
        )
        logger.warning("Queue %s %s by %s", queue_name, "paused" if paused else "resumed", user or "the system")
    return changed

"""Periodic jobs: actors that the scheduler process enqueues at a fixed interval.

The scheduler only enqueues; the work runs on the workers. Each run has a key made of
the actor and its time slot, so two schedulers running at once still write one job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Periodic:
    actor_name: str
    seconds: int


_registry: dict[str, Periodic] = {}


def periodic(*, seconds: int) -> Callable[[Any], Any]:
    """Decorator for an actor that takes no arguments: run it every `seconds`."""

    def register(actor: Any) -> Any:
        _registry[actor.actor_name] = Periodic(actor.actor_name, seconds)
        return actor

    return register


def registered() -> list[Periodic]:
    return list(_registry.values())


def enqueue_due(entry: Periodic, now: float | None = None) -> Any:
    """Write this slot's job for `entry` (once per slot, however many schedulers ask)."""
    from jobs.services import enqueue

    slot = int((time.time() if now is None else now) // entry.seconds)
    return enqueue(entry.actor_name, key=f"periodic:{entry.actor_name}:{slot}")

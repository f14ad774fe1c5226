"""Events and their subscribers: `publish("order.placed", ...)` becomes one job per
subscribed actor."""

from collections import defaultdict
from collections.abc import Callable
from typing import Any

_subscribers: dict[str, list[str]] = defaultdict(list)


def subscribe(event: str) -> Callable[[Any], Any]:
    """Decorator for an actor: run it with the event's payload whenever it is published."""

    def register(actor: Any) -> Any:
        if actor.actor_name not in _subscribers[event]:
            _subscribers[event].append(actor.actor_name)
        return actor

    return register


def subscribers(event: str) -> list[str]:
    return list(_subscribers.get(event, ()))

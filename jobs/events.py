"""Events and their subscribers: `publish("order.placed", ...)` becomes one job per
subscribed actor."""

from collections import defaultdict
from collections.abc import Callable
from typing import Any

_subscribers: dict[str, list[str]] = defaultdict(list)
_conditions: dict[tuple[str, str], Callable[[], bool]] = {}


def subscribe(event: str, *, when: Callable[[], bool] | None = None) -> Callable[[Any], Any]:
    """Decorator for an actor: run it with the event's payload whenever it is published.

    `when` makes the subscription conditional: it is asked at every publish (inside the
    publisher's transaction, so it should be cheap, e.g. a cached flag) and no job is
    written while it answers False. Webhooks use it: no endpoint, no job.
    """

    def register(actor: Any) -> Any:
        if actor.actor_name not in _subscribers[event]:
            _subscribers[event].append(actor.actor_name)
        if when is not None:
            _conditions[(event, actor.actor_name)] = when
        return actor

    return register


def subscribers(event: str) -> list[str]:
    """The actors that want this event now (conditional ones only while their `when` holds)."""
    names = _subscribers.get(event, ())
    return [name for name in names if (condition := _conditions.get((event, name))) is None or condition()]

"""Event types that webhooks can carry. An app adds one with a single line:

    webhooks.event("order.placed", document=order_placed_document)

`document` gets the keyword arguments the app passes to `jobs.publish(...)` and returns
the event's `data` (None: the object is gone, nothing is sent). The event then reaches
endpoints through the outbox: `jobs.publish` writes, in the publisher's transaction, one
job of an actor made here (only while some enabled endpoint wants the type), and that
job writes the event and one delivery per endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jobs

QUEUE = "webhooks"
Document = Callable[..., dict[str, Any] | None]
_documents: dict[str, Document] = {}
_actors: dict[str, Any] = {}


def event(event_type: str, *, document: Document) -> Any:
    """Make `event_type` a webhook event; returns the actor that fans it out."""
    _documents[event_type] = document
    if event_type in _actors:
        return _actors[event_type]

    def publish_webhook(**payload: Any) -> None:
        from webhooks import services

        services.fan_out(event_type, payload)

    actor = jobs.actor(
        publish_webhook,
        actor_name=f"publish_webhook:{event_type}",
        queue_name=QUEUE,
        max_retries=5,
        min_backoff=1_000,
        max_backoff=60_000,
        time_limit=60_000,
    )
    jobs.subscribe(event_type, when=lambda: _wanted(event_type))(actor)
    _actors[event_type] = actor
    return actor


def _wanted(event_type: str) -> bool:
    from webhooks.services import wanted

    return wanted(event_type)


def document(event_type: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    return _documents[event_type](**payload)


def types() -> list[str]:
    return sorted(_documents)

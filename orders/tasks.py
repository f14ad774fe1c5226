"""Order side effects as actors: thin, they take ids and call one service each."""

from datetime import timedelta

from django.conf import settings

import jobs
import webhooks
from orders import idempotency, serializers, services

# Each subscriber states its retry policy; PermanentError always goes to the DLQ.


@jobs.subscribe("order.placed")
@jobs.actor(max_retries=5, min_backoff=2_000, max_backoff=120_000, time_limit=30_000)
def send_confirmation_email(order_id: str) -> None:
    services.send_confirmation(order_id)


@jobs.subscribe("order.placed")
@jobs.actor(max_retries=8, min_backoff=1_000, max_backoff=60_000, time_limit=30_000)
def update_inventory(order_id: str) -> None:
    services.update_inventory(order_id)


@jobs.subscribe("order.placed")
@jobs.actor(max_retries=8, min_backoff=1_000, max_backoff=300_000, time_limit=30_000)
def record_analytics(order_id: str) -> None:
    services.record_analytics(order_id)


@jobs.actor(max_retries=8, min_backoff=5_000, max_backoff=300_000, time_limit=30_000)
def settle_charge(order_id: str, reference: str, amount: str) -> None:
    services.settle_charge(order_id, reference, amount)


@jobs.periodic(seconds=3600)
@jobs.actor(max_retries=3, time_limit=300_000)
def prune_idempotency_keys() -> None:
    idempotency.prune(timedelta(hours=settings.BUZZER_IDEMPOTENCY_TTL_HOURS))


# Endpoints that want it get the order as `GET /api/orders/<id>/` shows it.
webhooks.event("order.placed", document=serializers.order_placed_document)

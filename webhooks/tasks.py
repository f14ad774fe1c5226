"""The delivery actor: thin, it takes the delivery's id and calls one service.

Its own retries only cover surprises (a bug, Redis failing mid-way): a receiver's
failure is not an exception here, it is logged and answered by the retry schedule
(webhooks/services.py). The time limit covers the 10 s request with room for the
database writes around it.
"""

import jobs
from webhooks import services
from webhooks.registry import QUEUE


@jobs.actor(queue_name=QUEUE, max_retries=3, min_backoff=5_000, max_backoff=60_000, time_limit=60_000)
def deliver_webhook(delivery_id: str, step: int) -> None:
    services.deliver(delivery_id, step)

"""The delivery actor: thin, it takes the delivery's id and calls one service; and the
lifecycle hooks that make a delivery follow its job.

One delivery is one job whose attempts follow the retry schedule (webhooks/services.py):
a failed attempt raises `DeliveryFailed` with the schedule's wait, and the backbone's
retry sends it again then; `may_retry` bounds the surprises (a bug) by the same
schedule. The time limit covers the 10 s request with room for the database writes
around it.
"""

from typing import Any

import jobs
from webhooks import services
from webhooks.registry import QUEUE


@jobs.actor(queue_name=QUEUE, max_retries=20, retry_when=services.may_retry, time_limit=60_000)
def deliver_webhook(delivery_id: str, manual: bool = False) -> None:
    services.deliver(delivery_id, manual=manual)


@jobs.on_dead(deliver_webhook)
def _dead(job: Any) -> None:
    services.job_gave_up(job, "")


@jobs.on_discard(deliver_webhook)
def _discarded(job: Any) -> None:
    services.job_gave_up(job, f"{job.last_error} (its job was discarded)"[:2000])


@jobs.on_cancel(deliver_webhook)
def _cancelled(job: Any) -> None:
    services.job_gave_up(job, "its job was cancelled")


@jobs.on_retry(deliver_webhook)
def _retried(job: Any) -> None:
    services.job_retried(job)

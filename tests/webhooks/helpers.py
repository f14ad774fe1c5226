from __future__ import annotations

import jobs
from jobs.models import Job
from webhooks import services
from webhooks.models import Delivery


def delivery_job(delivery: Delivery) -> Job:
    """The delivery's job: every attempt of its schedule is an attempt of this job."""
    return Job.objects.get(key=f"webhook:{delivery.pk}:deliver")


def run_next_attempt(delivery: Delivery, *, manual: bool = False) -> BaseException | None:
    """Run the delivery's next attempt here, as its job's worker would (its wait is not
    waited for); returns what the attempt raised for its job: `DeliveryFailed` (the
    schedule goes on), `PermanentError` (it is over), or None (delivered)."""
    try:
        services.deliver(str(delivery.pk), manual=manual)
    except (services.DeliveryFailed, jobs.PermanentError) as exc:
        return exc
    return None

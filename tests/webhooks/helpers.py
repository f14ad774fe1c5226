from typing import Any

from jobs.models import Job
from webhooks import services
from webhooks.models import Delivery


def next_attempt_job(delivery: Delivery) -> Job | None:
    """The delivery's attempt job that has not run yet (the newest waiting one)."""
    return (
        Job.objects.filter(key__startswith=f"webhook:{delivery.pk}:", status__in=Job.WAITING)
        .order_by("-created_at")
        .first()
    )


def run_next_attempt(delivery: Delivery) -> Any:
    """Run the delivery's waiting attempt here, as a worker would (no scheduler: its
    due time is not waited for)."""
    job = next_attempt_job(delivery)
    assert job is not None, "no attempt is waiting"
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    return services.deliver(*job.args)

"""The jobs app's own actors."""

from __future__ import annotations

import logging

from jobs import lifecycle
from jobs.actors import actor

logger = logging.getLogger(__name__)


@actor(max_retries=10, min_backoff=1_000, max_backoff=300_000, time_limit=300_000)
def run_dead_hooks(job_id: str, generation: int) -> None:
    """The `on_dead` hooks of a job that went dead (written with its dead row)."""
    from jobs.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != Job.Status.DEAD or job.options.get("buzzer_generation", 0) != generation:
        logger.info("Job %s is no longer dead (generation %s): its dead hooks are not run", job_id, generation)
        return
    lifecycle.run("dead", job)

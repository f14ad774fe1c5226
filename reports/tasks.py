"""Report actors: thin, they take ids and call one service each."""

import jobs
from reports import scheduled, services

# A failing generation is retried this many times, then the report ends `failed` and
# its job dead together (the service counts the attempts; see reports.services).
GENERATE_MAX_RETRIES = 3


@jobs.actor(max_retries=GENERATE_MAX_RETRIES, min_backoff=5_000, max_backoff=120_000, time_limit=1_800_000)
def generate_report(report_id: str) -> None:
    services.generate_report(report_id, max_attempts=GENERATE_MAX_RETRIES + 1)


@jobs.periodic(seconds=3600)
@jobs.actor(max_retries=3, time_limit=300_000)
def expire_reports() -> None:
    services.expire_reports()


@jobs.actor(max_retries=GENERATE_MAX_RETRIES, min_backoff=5_000, max_backoff=120_000, time_limit=1_800_000)
def run_scheduled_report(kind: str, parameters: dict, recipients: list, schedule: str) -> None:
    """Fired by a `jobs.Schedule`: make the report here and email it to the recipients."""
    scheduled.run_scheduled_report(kind, parameters, recipients, schedule, max_attempts=GENERATE_MAX_RETRIES + 1)

"""Running jobs in-process on Dramatiq's StubBroker."""

from typing import Any

from jobs.middleware import JobTracking


def drain(stub_broker: Any, stub_worker: Any) -> None:
    """Run every message (retries included) and wait until the job rows are written."""
    for queue_name in list(stub_broker.queues):
        if not queue_name.endswith((".DQ", ".XQ")):
            stub_broker.join(queue_name, timeout=10_000, fail_fast=False)
    stub_worker.join()
    for middleware in stub_broker.middleware:
        if isinstance(middleware, JobTracking):
            middleware.flush()

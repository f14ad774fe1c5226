"""gunicorn config for the fault suite: each web worker dies with `os._exit` right after
an order's transaction commits, before its jobs are sent to Redis (the send runs in the
transaction's on_commit callback, which this replaces)."""

import os
from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    import jobs.services

    def die_after_commit(jobs: Any) -> int:
        os._exit(1)

    jobs.services.dispatch = die_after_commit

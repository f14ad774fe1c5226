"""gunicorn config for the fault suite: each web worker dies with `os._exit` right after
an order's jobs were sent to Redis, before they are marked enqueued (the marks go to the
process's marker thread, which this replaces)."""

import os
from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    import jobs.services

    def die_before_the_mark(ids: Any) -> None:
        os._exit(1)

    jobs.services._marker.add = die_before_the_mark

"""`jobs.actor`: Dramatiq's actor decorator with Buzzer's conventions."""

from collections.abc import Callable
from typing import Any

import dramatiq

from jobs.errors import PermanentError


def actor(
    fn: Callable[..., Any] | None = None,
    *,
    max_retries: int,
    time_limit: int,
    min_backoff: int | None = None,
    max_backoff: int | None = None,
    throws: tuple[type[BaseException], ...] = (),
    queue_name: str = "default",
    **options: Any,
) -> Any:
    """Declare an actor that states its retry policy.

    `max_retries` and `time_limit` (ms) are required so that every actor says how it
    fails; `PermanentError` is always in `throws`, so raising it sends the job straight
    to the dead-letter queue.
    """
    if min_backoff is not None:
        options["min_backoff"] = min_backoff
    if max_backoff is not None:
        options["max_backoff"] = max_backoff
    decorator = dramatiq.actor(
        queue_name=queue_name,
        max_retries=max_retries,
        time_limit=time_limit,
        throws=(PermanentError, *throws),
        **options,
    )
    return decorator(fn) if fn is not None else decorator

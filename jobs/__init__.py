"""Buzzer's jobs backbone: outbox enqueue, tracking, retries, effects ledger.

The public API is importable from here; models load lazily so that importing `jobs`
never needs the app registry.
"""

from typing import Any

from jobs.actors import actor
from jobs.errors import PermanentError
from jobs.events import subscribe
from jobs.lifecycle import on_cancel, on_dead, on_discard, on_retry
from jobs.periodic import periodic

__all__ = [
    "CancelUnavailable",
    "Cancelled",
    "PermanentError",
    "actor",
    "cancel",
    "cancel_requested",
    "checkpoint",
    "email_accepted",
    "enqueue",
    "message_id",
    "on_cancel",
    "on_dead",
    "on_discard",
    "on_retry",
    "once",
    "periodic",
    "publish",
    "send_without_outbox",
    "subscribe",
]


def enqueue(*args: Any, **kwargs: Any) -> Any:
    from jobs.services import enqueue as _enqueue

    return _enqueue(*args, **kwargs)


def publish(*args: Any, **kwargs: Any) -> Any:
    from jobs.services import publish as _publish

    return _publish(*args, **kwargs)


def send_without_outbox(*args: Any, **kwargs: Any) -> bool:
    from jobs.services import send_without_outbox as _send

    return _send(*args, **kwargs)


def once(key: str, *, external: bool = False, check: Any = None) -> Any:
    from jobs.effects import once as _once

    return _once(key, external=external, check=check)


def email_accepted(message_id: str) -> bool:
    from jobs.effects import email_accepted as _accepted

    return _accepted(message_id)


def message_id(key: str) -> str:
    from jobs.effects import message_id as _message_id

    return _message_id(key)


def cancel(job_or_id: Any, *, by: Any = None, reason: str = "") -> str | None:
    from jobs.cancellation import cancel as _cancel

    return _cancel(job_or_id, by=by, reason=reason)


def cancel_requested() -> bool:
    from jobs.cancellation import cancel_requested as _requested

    return _requested()


def checkpoint() -> None:
    from jobs.cancellation import checkpoint as _checkpoint

    _checkpoint()


def __getattr__(name: str) -> Any:
    if name in ("Cancelled", "CancelUnavailable"):
        import jobs.cancellation as _cancel_module

        return getattr(_cancel_module, name)
    raise AttributeError(name)

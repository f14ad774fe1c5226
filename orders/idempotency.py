"""`Idempotency-Key` for the JSON API, as card processors do it: the same key with the
same body replays the first response; with another body it is refused; while the first
request is still running, the second is told to wait."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import ApiKey, IdempotencyKey

# A request that died without answering leaves its key in progress; after this long a
# retry may take the key over (its order, if any, was never committed).
STALE_AFTER = timedelta(minutes=2)
MAX_KEY_LENGTH = 255


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Begun:
    record: IdempotencyKey | None = None  # ours to finish
    replay: IdempotencyKey | None = None  # a finished first response
    conflict: str = ""  # "in_progress" or "mismatch"


def begin(api_key: ApiKey, key: str, request_hash: str) -> Begun:
    try:
        # In autocommit (a request) the INSERT is its own transaction and a duplicate key
        # spoils nothing: one statement. Inside a transaction a savepoint keeps it usable.
        with transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext():
            return Begun(record=IdempotencyKey.objects.create(api_key=api_key, key=key, request_hash=request_hash))
    except IntegrityError:
        pass
    existing = IdempotencyKey.objects.get(api_key=api_key, key=key)
    if existing.request_hash != request_hash:
        return Begun(conflict="mismatch")
    if existing.status == IdempotencyKey.Status.DONE:
        return Begun(replay=existing)
    if existing.created_at < timezone.now() - STALE_AFTER:
        taken = IdempotencyKey.objects.filter(
            pk=existing.pk, status=IdempotencyKey.Status.IN_PROGRESS, created_at=existing.created_at
        ).update(created_at=timezone.now())
        if taken:
            existing.refresh_from_db()
            return Begun(record=existing)
    return Begun(conflict="in_progress")


def finish(record: IdempotencyKey, status: int, body: Any) -> None:
    IdempotencyKey.objects.filter(pk=record.pk).update(
        status=IdempotencyKey.Status.DONE, response_status=status, response_body=body
    )


def abandon(record: IdempotencyKey) -> None:
    """The request failed unexpectedly: free the key so that a retry runs afresh."""
    IdempotencyKey.objects.filter(pk=record.pk, status=IdempotencyKey.Status.IN_PROGRESS).delete()


def prune(older_than: timedelta) -> int:
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted

"""The effects ledger: do a side effect at most once per key, however often the job
that does it runs.

Two kinds of effects:

- In the database (a stock decrement): `once(key)` writes the ledger row in the same
  transaction as the effect, so it happens exactly once; a block that raises leaves no
  row and can run again.
- Outside (an email, a webhook): `once(key, external=True)` records the key as started
  in a short transaction of its own, runs the block outside any transaction (no database
  lock is held while the mail server thinks — on SQLite that lock would stop every
  writer), then marks it done. A block that raises frees the key for the next try. If
  the worker died in the middle, the next delivery of the same job takes the key over
  and does the effect again. To keep that window to the instant between the effect and
  a Redis write (rather than a database commit, which waits for the write lock under
  load), the end of the block is first marked in Redis, and a take-over that finds the
  mark only records the effect as done. What remains — a worker killed between the mail
  server's answer and that mark — is why emails carry a stable Message-ID.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)
_current = threading.local()


class EffectInProgress(Exception):
    """Another job is doing this external effect right now: try again later."""


def set_current_job(job_id: Any) -> None:
    """Called by the tracking middleware around each job the worker thread runs."""
    _current.job_id = job_id


def current_job() -> Any:
    return getattr(_current, "job_id", None)


@contextmanager
def once(key: str, *, external: bool = False) -> Iterator[bool]:
    """Yield True the first time `key` is seen (the block should do the effect), False
    once it is done. Keys name the effect and its object, e.g.
    ``email:order-confirmation:<order id>``."""
    from jobs.models import Effect

    if not external:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    Effect.objects.create(key=key)
            except IntegrityError:
                yield False
                return
            yield True
        return

    if not _start(key):
        yield False
        return
    try:
        yield True
    except BaseException:
        Effect.objects.filter(key=key, state=Effect.State.STARTED).delete()
        raise
    _mark_done(key)
    Effect.objects.filter(key=key).update(state=Effect.State.DONE, updated_at=timezone.now())


def _marks() -> tuple[Any, str] | None:
    """The broker's Redis client and the prefix of the done marks (None without Redis)."""
    import dramatiq

    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    return (client, f"{broker.namespace}:buzzer:effect-done:") if client is not None else None


def _mark_done(key: str) -> None:
    from django.conf import settings

    marks = _marks()
    if marks is None:
        return
    client, prefix = marks
    try:
        client.set(prefix + key, 1, ex=settings.BUZZER_CLAIM_TTL_SECONDS)
    except Exception:
        logger.warning("Could not mark effect %s done in Redis", key, exc_info=True)


def _marked_done(key: str) -> bool:
    marks = _marks()
    if marks is None:
        return False
    client, prefix = marks
    try:
        return bool(client.exists(prefix + key))
    except Exception:  # noqa: BLE001 - unknown: do it again, as without the mark
        return False


def _start(key: str) -> bool:
    """Record an external effect as started; False when it is already done."""
    from jobs.models import Effect

    job_id = current_job()
    for _ in range(3):
        try:
            with transaction.atomic():
                Effect.objects.create(key=key, state=Effect.State.STARTED, job_id=job_id)
            return True
        except IntegrityError:
            existing = Effect.objects.filter(key=key).first()
        if existing is None:
            continue  # freed by a failed try in between: start again
        if existing.state == Effect.State.DONE:
            return False
        if job_id is not None and existing.job_id == job_id:
            # A delivery of this very job started it and died (the job's claim makes
            # sure no other delivery of it runs now). If it got as far as the mark in
            # Redis, the effect happened: record it. Otherwise take it over.
            if _marked_done(key):
                Effect.objects.filter(pk=existing.pk).update(state=Effect.State.DONE, updated_at=timezone.now())
                return False
            Effect.objects.filter(pk=existing.pk).update(updated_at=timezone.now())
            return True
        raise EffectInProgress(f"{key} is being done by job {existing.job_id}")
    raise EffectInProgress(f"{key} keeps changing hands")


def happened(key: str) -> bool:
    from jobs.models import Effect

    return Effect.objects.filter(key=key, state=Effect.State.DONE).exists()

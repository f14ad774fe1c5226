"""The effects ledger: do a side effect at most once per key, however often the job
that does it runs."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import IntegrityError, transaction


@contextmanager
def once(key: str) -> Iterator[bool]:
    """Yield True the first time `key` is seen, False afterwards.

    The ledger row is written in the same transaction as whatever the block writes, so
    a database effect (a stock decrement) happens exactly once, and a block that raises
    leaves no ledger row behind and can be tried again. Keys name the effect and its
    object, e.g. ``email:order-confirmation:<order id>``.
    """
    from jobs.models import Effect

    with transaction.atomic():
        try:
            with transaction.atomic():
                Effect.objects.create(key=key)
        except IntegrityError:
            yield False
            return
        yield True


def happened(key: str) -> bool:
    from jobs.models import Effect

    return Effect.objects.filter(key=key).exists()

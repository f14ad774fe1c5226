"""A broker whose Redis does not answer (nothing listens on port 1), for outage tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from dramatiq.brokers.redis import RedisBroker

DEAD_REDIS = "redis://127.0.0.1:1/0?socket_connect_timeout=0.5&socket_timeout=0.5"


@contextmanager
def redis_down() -> Iterator[RedisBroker]:
    previous = dramatiq.get_broker()
    broker = RedisBroker(url=DEAD_REDIS, middleware=[])  # connects lazily: no error yet
    dramatiq.set_broker(broker)
    try:
        yield broker
    finally:
        dramatiq.set_broker(previous)

"""Switch the test process from the stub broker to the suite's real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from django.conf import settings
from django_dramatiq.utils import load_middleware
from dramatiq.brokers.redis import RedisBroker

from jobs import redis_client


@contextmanager
def redis_broker(url: str | None = None) -> Iterator[RedisBroker]:
    """The suite's own Redis, or the Redis at `url` (a fault test's own server)."""
    stub = dramatiq.get_broker()
    middleware = [load_middleware(path) for path in settings.DRAMATIQ_BROKER["MIDDLEWARE"]]
    broker_url = settings.BROKER_URL if url is None else f"{url}?socket_connect_timeout=1&socket_timeout=5"
    # Through the factory: with REDIS_SENTINELS set (a failover test), the current master.
    client = redis_client.client(broker_url)
    broker = RedisBroker(client=client, middleware=middleware, namespace=settings.BUZZER_NAMESPACE)
    broker.client.flushdb()  # the suite's own server (or a fault test's) belongs to the suite alone
    for queue_name in settings.BUZZER_QUEUES:
        broker.declare_queue(queue_name)
    actors = list(stub.actors.values())
    for actor in actors:
        actor.broker = broker
        broker.declare_actor(actor)
    dramatiq.set_broker(broker)
    try:
        yield broker
    finally:
        for actor in actors:
            actor.broker = stub
        dramatiq.set_broker(stub)
        broker.client.flushdb()
        broker.close()

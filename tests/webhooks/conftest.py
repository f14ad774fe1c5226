from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.receiver import Receiver
from webhooks import services
from webhooks.models import Endpoint


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_cached_endpoints() -> Iterator[None]:
    services.forget_endpoints()
    yield
    services.forget_endpoints()


@pytest.fixture
def endpoint(db: None, receiver: Receiver) -> Endpoint:
    return services.create_endpoint(receiver.url)


@pytest.fixture
def quick_schedule(settings: Any) -> None:
    """Three attempts, no waiting: the schedule's shape without its days."""
    settings.BUZZER_WEBHOOK_RETRY_SCHEDULE = ["0s", "0s"]

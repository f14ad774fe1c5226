"""Per-endpoint concurrency in Redis: a delivery past the limit waits (no retry used),
briefly behind a busy endpoint, about a timeout behind a failing one."""

import uuid

import pytest

from jobs.effects import EffectInProgress
from webhooks.slots import endpoint_slot


def test_past_the_limit_a_delivery_waits_and_a_freed_slot_is_taken_again(real_broker, settings):
    settings.BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY = 2
    settings.BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY = 1
    settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS = 10
    endpoint = uuid.uuid4()
    with endpoint_slot(endpoint), endpoint_slot(endpoint):
        with pytest.raises(EffectInProgress) as busy:
            with endpoint_slot(endpoint):
                pass
        assert 200 <= busy.value.delay_ms <= 1000
        with pytest.raises(EffectInProgress) as failing:
            with endpoint_slot(endpoint, failing=True):
                pass
        assert 10_000 <= failing.value.delay_ms <= 15_000
    with endpoint_slot(endpoint, failing=True):  # both freed
        pass
    with endpoint_slot(uuid.uuid4()):  # another endpoint is never held back
        pass

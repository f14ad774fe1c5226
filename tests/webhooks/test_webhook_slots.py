"""Per-endpoint concurrency in Redis: a delivery past the limit waits (no retry used),
briefly behind a busy endpoint; behind a failing one it takes its turn in a line, so
that a backlog wakes about as often as a slot frees."""

import time
import uuid

import pytest

from jobs.effects import EffectInProgress
from webhooks.slots import endpoint_slot


def wait_asked(endpoint: uuid.UUID, *, failing: bool = False, waiter: str = "") -> int:
    with pytest.raises(EffectInProgress) as busy:
        with endpoint_slot(endpoint, failing=failing, waiter=waiter):
            pass
    return busy.value.delay_ms


@pytest.fixture
def limits(settings):
    settings.BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY = 2
    settings.BUZZER_WEBHOOK_FAILING_ENDPOINT_CONCURRENCY = 1
    settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS = 10


def test_past_the_limit_a_delivery_waits_and_a_freed_slot_is_taken_again(real_broker, limits):
    endpoint = uuid.uuid4()
    with endpoint_slot(endpoint), endpoint_slot(endpoint):
        assert 200 <= wait_asked(endpoint) <= 1000  # a busy endpoint: a moment
        assert 10_000 <= wait_asked(endpoint, failing=True, waiter="a") <= 15_000  # a failing one: a timeout
    with endpoint_slot(endpoint, failing=True, waiter="a"):  # both freed
        pass
    with endpoint_slot(uuid.uuid4()):  # another endpoint is never held back
        pass


def test_behind_a_failing_endpoint_each_waiter_waits_for_the_turns_ahead_of_it(real_broker, limits):
    endpoint = uuid.uuid4()
    with endpoint_slot(endpoint, failing=True, waiter="first"):
        waits = [wait_asked(endpoint, failing=True, waiter=f"w{n}") for n in range(6)]
        # w5 has five ahead in a line served one at a time: about six timeouts, spread ±50%.
        assert 30_000 <= waits[5] <= 90_000
        assert waits[0] <= 15_000
        # Asking again does not put a waiter behind itself.
        assert 30_000 <= wait_asked(endpoint, failing=True, waiter="w5") <= 90_000
    with endpoint_slot(endpoint, failing=True, waiter="w0"):  # its turn: it leaves the line
        pass
    with endpoint_slot(endpoint, failing=True, waiter="first"):
        assert wait_asked(endpoint, failing=True, waiter="w5") <= 90_000 * 5 / 6


def test_behind_an_endpoint_that_refuses_quickly_the_line_moves_at_its_pace(real_broker, limits):
    """A receiver that is down refuses in a millisecond: its turns are short, and so is
    the wait of the deliveries in its line (not a timeout a turn)."""
    endpoint = uuid.uuid4()
    with endpoint_slot(endpoint, failing=True, waiter="quick"):  # a turn of a few ms
        pass
    with endpoint_slot(endpoint, failing=True, waiter="first"):
        waits = [wait_asked(endpoint, failing=True, waiter=f"w{n}") for n in range(6)]
    # w5: the slot holder's turn and five ahead, a quarter of a second each, spread ±50%.
    assert 750 <= waits[5] <= 2_250
    assert waits[0] <= 375


def test_an_endpoint_that_was_quick_and_now_hangs_gets_its_timeout_back(real_broker, limits):
    endpoint = uuid.uuid4()
    with endpoint_slot(endpoint, failing=True, waiter="quick"):
        pass
    with endpoint_slot(endpoint, failing=True, waiter="hanging"):
        time.sleep(1.1)  # in flight for longer than a quick turn
        assert 10_000 <= wait_asked(endpoint, failing=True, waiter="w0") <= 15_000
    # It took over a second: the turn it leaves is that long, whatever came before.
    with endpoint_slot(endpoint, failing=True, waiter="first"):
        assert wait_asked(endpoint, failing=True, waiter="w1") >= 10_000


def test_a_resumed_endpoint_whose_turns_were_slow_is_waited_on_for_a_turn_not_a_moment(real_broker, limits):
    """Resumed, an endpoint counts as healthy again (the full limit), but its last turns
    took a timeout: the deliveries that find its slots just taken wait for a turn in the
    line, not a moment each (hundreds of them would wake several times a second)."""
    endpoint = uuid.uuid4()
    with endpoint_slot(endpoint, waiter="slow"):
        time.sleep(1.1)  # a turn over a second
    with endpoint_slot(endpoint, waiter="h1"), endpoint_slot(endpoint, waiter="h2"):  # just taken
        waits = [wait_asked(endpoint, waiter=f"w{n}") for n in range(4)]
    assert all(wait >= 5_000 for wait in waits), waits  # the rest of a timeout, not 0.2-1 s
    line = real_broker.client.zrange(f"{real_broker.namespace}:buzzer:webhook-waiters:{endpoint}", 0, -1)
    assert {member.decode() for member in line} == {"w0", "w1", "w2", "w3"}  # they joined its line
    fresh = uuid.uuid4()  # an endpoint with quick turns keeps the moment
    with endpoint_slot(fresh, waiter="q"):
        pass
    with endpoint_slot(fresh), endpoint_slot(fresh):
        assert 200 <= wait_asked(fresh) <= 1000

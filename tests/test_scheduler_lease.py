"""One active scheduler: the lease in Redis (the suite's database)."""

import time

from jobs.lease import Lease


def test_only_one_holder_at_a_time_and_the_standby_takes_over_after_expiry(real_broker):
    first = Lease(real_broker.client, "test:lease", ttl_seconds=0.5)
    second = Lease(real_broker.client, "test:lease", ttl_seconds=0.5)

    assert first.acquire() is True
    assert second.acquire() is False
    assert first.renew() is True and second.renew() is False
    time.sleep(0.7)  # the holder died: no renewal
    assert second.acquire() is True
    assert first.renew() is False  # and the old holder learns it lost the lease
    assert second.current_holder() == second.holder


def test_a_clean_release_hands_over_at_once(real_broker):
    first = Lease(real_broker.client, "test:lease2", ttl_seconds=30)
    second = Lease(real_broker.client, "test:lease2", ttl_seconds=30)
    first.acquire()
    second.release()  # not the holder: changes nothing
    assert second.acquire() is False
    first.release()
    assert second.acquire() is True

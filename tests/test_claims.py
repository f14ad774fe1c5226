"""Claims decide which delivery of a job runs: real Redis (the suite's database)."""

import time

import pytest

from jobs.claims import MemoryClaims, RedisClaims, job_key


@pytest.fixture
def claims(real_broker):
    return RedisClaims(real_broker, ttl_seconds=60, dead_after_seconds=20)


def beat(broker, worker, age_ms=0):
    broker.client.zadd(f"{broker.namespace}:__heartbeats__", {worker: time.time() * 1000 - age_ms})


def test_first_delivery_claims_and_a_duplicate_is_refused(claims, real_broker):
    beat(real_broker, "worker-a")
    assert claims.claim("job-1", 1, "worker-a") is True
    assert claims.claim("job-1", 1, "worker-b") is False
    assert claims.claim("job-1", 1, "worker-a") is False


def test_a_retry_claims_the_next_attempt_but_not_an_older_one(claims, real_broker):
    beat(real_broker, "worker-a")
    assert claims.claim("job-2", 1, "worker-a")
    assert claims.claim("job-2", 2, "worker-b") is True
    assert claims.claim("job-2", 1, "worker-c") is False


def test_redelivery_after_the_holder_died_reports_the_dead_worker(claims, real_broker):
    beat(real_broker, "worker-dead", age_ms=21_000)
    assert claims.claim("job-3", 1, "worker-dead")

    assert claims.claim("job-3", 1, "worker-b") == "dead:worker-dead"
    assert claims.take_over("job-3", 1, "worker-dead", "worker-b") == 1  # the first crash
    assert claims.take_over("job-3", 1, "worker-dead", "worker-c") == 0  # only one takes it over
    beat(real_broker, "worker-b")
    assert claims.claim("job-3", 1, "worker-c") is False


def test_each_takeover_counts_a_crash(claims):
    claims.claim("job-7", 1, "w1")
    assert claims.take_over("job-7", 1, "w1", "w2") == 1
    assert claims.take_over("job-7", 1, "w2", "w3") == 2


def test_holder_without_any_heartbeat_counts_as_dead(claims):
    assert claims.claim("job-4", 1, "never-seen")
    assert claims.claim("job-4", 1, "worker-b") == "dead:never-seen"


def test_a_new_generation_is_claimed_afresh(claims, real_broker):
    beat(real_broker, "worker-a")
    claims.claim(job_key("job-5", 0), 3, "worker-a")
    assert claims.claim(job_key("job-5", 1), 1, "worker-b") is True


def test_claims_expire_after_their_ttl(claims, real_broker):
    claims.claim("job-6", 1, "worker-a")
    ttl = real_broker.client.ttl(f"{real_broker.namespace}:buzzer:claim:job-6")
    assert 0 < ttl <= 60


def test_memory_claims_follow_the_same_rules():
    claims = MemoryClaims()
    assert claims.claim("j", 1, "w") is True
    assert claims.claim("j", 1, "w2") is False
    assert claims.claim("j", 2, "w2") is True
    assert claims.claim("j", 1, "w3") is False


def test_a_released_claim_lets_the_same_attempt_run_again_but_not_an_older_one(claims, real_broker):
    beat(real_broker, "worker-a")
    beat(real_broker, "worker-b")
    assert claims.claim("job-9", 2, "worker-a") is True
    assert claims.release("job-9", 2, "worker-b") is False  # not the holder: nothing changes
    assert claims.claim("job-9", 2, "worker-b") is False
    assert claims.release("job-9", 2, "worker-a") is True
    assert claims.claim("job-9", 1, "worker-b") is False
    assert claims.claim("job-9", 2, "worker-b") is True
    assert claims.claim("job-9", 2, "worker-c") is False


def test_a_released_first_attempt_is_claimed_again():
    memory = MemoryClaims()
    assert memory.claim("job-10", 1, "worker-a") is True
    assert memory.release("job-10", 1, "worker-a") is True
    assert memory.claim("job-10", 1, "worker-b") is True
    assert memory.claim("job-10", 1, "worker-c") is False


def test_a_claim_that_could_not_be_released_is_released_once_redis_answers(claims, real_broker):
    from jobs import claims as claims_module

    beat(real_broker, "worker-a")
    beat(real_broker, "worker-b")
    assert claims.claim("job-11", 1, "worker-a") is True
    claims_module.release_later(("job-11", 1, "worker-a"))  # Redis was away at the time
    assert claims.claim("job-11", 1, "worker-b") is False

    claims_module.release_pending(claims)

    assert claims.claim("job-11", 1, "worker-b") is True
    assert claims_module._unreleased == []

"""Infrastructure errors are not the job's failure: which errors count as such, and a job
that meets one runs again as the same attempt without using up its retries."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest
import redis
from django.db import IntegrityError, OperationalError, ProgrammingError
from psycopg_pool import PoolTimeout

import jobs
from jobs.infra import is_database_unavailable, is_infrastructure_error
from jobs.models import Job, JobAttempt
from tests.support.stub import drain

calls: list[str] = []
failures: dict[str, list[BaseException]] = {}


def wrapped(driver_error: BaseException, django_class: type[Exception] = OperationalError) -> Exception:
    """The error as Django raises it: its own class, the driver's error as the cause."""
    try:
        try:
            raise driver_error
        except BaseException as exc:
            raise django_class(str(exc)) from exc
    except django_class as outer:
        return outer


class TooManyClients(psycopg.OperationalError):
    sqlstate = "53300"


class AdminShutdown(psycopg.OperationalError):
    sqlstate = "57P01"


class UndefinedColumn(psycopg.ProgrammingError):
    sqlstate = "42703"


@pytest.mark.parametrize(
    "error",
    [
        wrapped(psycopg.OperationalError('connection failed: connection to server at "127.0.0.1" refused')),
        wrapped(TooManyClients("FATAL:  sorry, too many clients already")),
        wrapped(AdminShutdown("terminating connection due to administrator command")),
        wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
        wrapped(PoolTimeout("couldn't get a connection after 3.00 sec")),
        wrapped(sqlite3.OperationalError("database is locked")),
        wrapped(psycopg.InterfaceError("the connection is closed"), django_class=OperationalError),
    ],
    ids=["refused", "too-many-clients", "admin-shutdown", "lost", "pool-timeout", "sqlite-locked", "closed"],
)
def test_unreachable_database_is_an_infrastructure_error(error: Exception) -> None:
    assert is_database_unavailable(error)
    assert is_infrastructure_error(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(UndefinedColumn('column "nope" does not exist'), django_class=ProgrammingError),
        wrapped(sqlite3.OperationalError("no such column: nope")),
        IntegrityError("UNIQUE constraint failed: orders_order.id"),
        RuntimeError("the mail server said no"),
        ValueError("bad input"),
    ],
    ids=["pg-undefined-column", "sqlite-no-such-column", "integrity", "runtime", "value"],
)
def test_a_bad_query_or_a_bug_is_the_jobs_own_failure(error: Exception) -> None:
    assert not is_infrastructure_error(error)


def test_redis_unreachable_is_an_infrastructure_error() -> None:
    assert is_infrastructure_error(redis.ConnectionError("Connection refused"))
    assert is_infrastructure_error(redis.TimeoutError("Timeout reading from socket"))
    assert not is_infrastructure_error(redis.ResponseError("WRONGTYPE"))


@jobs.actor(max_retries=1, min_backoff=10, max_backoff=20, time_limit=5_000)
def needs_the_database(label: str) -> None:
    calls.append(label)
    pending = failures.get(label)
    if pending:
        raise pending.pop(0)


@pytest.fixture(autouse=True)
def _reset(settings: Any) -> None:
    settings.BUZZER_WAIT_MIN_BACKOFF_MS = 10
    settings.BUZZER_WAIT_MAX_BACKOFF_MS = 20
    calls.clear()
    failures.clear()


@pytest.mark.django_db(transaction=True)
def test_database_outage_uses_no_retry_and_the_job_goes_on_when_it_answers(stub_broker, stub_worker) -> None:
    # Five database failures against a budget of one retry: none of them is counted.
    failures["order-1"] = [wrapped(TooManyClients("sorry, too many clients already")) for _ in range(5)]
    job = jobs.enqueue(needs_the_database, "order-1")

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert calls == ["order-1"] * 6
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert "too many clients" in job.last_error  # the wait is on record
    assert not JobAttempt.objects.filter(job=job).exists()  # but no failed attempt


@pytest.mark.django_db(transaction=True)
def test_an_ordinary_error_still_uses_up_the_retries(stub_broker, stub_worker) -> None:
    failures["order-2"] = [RuntimeError("no"), RuntimeError("no again"), RuntimeError("never")]
    job = jobs.enqueue(needs_the_database, "order-2")

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 2)
    assert calls == ["order-2"] * 2


@pytest.mark.django_db(transaction=True)
def test_waiting_has_a_limit_after_which_the_error_counts(stub_broker, stub_worker, settings: Any) -> None:
    settings.BUZZER_WAIT_LIMIT = 2
    failures["order-3"] = [wrapped(psycopg.OperationalError("connection refused")) for _ in range(10)]
    job = jobs.enqueue(needs_the_database, "order-3")

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    # two waits, then attempt 1 fails for real, attempt 2 (the one retry) too: dead.
    assert (job.status, job.attempts) == ("dead", 2)
    assert calls == ["order-3"] * 4
    assert Job.objects.get(pk=job.pk).last_error.startswith("OperationalError")

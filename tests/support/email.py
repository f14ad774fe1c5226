"""An email backend for tests with worker processes: every sent message is counted in
the suite's Redis database, and failures can be injected."""

import hashlib
import json
import os
import signal
import smtplib
import time
from typing import Any

import redis
from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

SENT_KEY = "test:emails"
ACCEPTED_KEY = "test:emails:accepted"
FAIL_KEY = "test:email-failures"
DELAY_KEY = "test:email-delay-once"
EVERY_DELAY_KEY = "test:email-delay-every"
KILL_KEY = "test:email-kills-worker"
KILL_BROKER_KEY = "test:email-kills-broker"
# The ledger may live in another Redis than the broker's, so that a test can kill the
# broker's Redis without losing its count of what was sent.
LEDGER_URL_ENV = "BUZZER_TEST_LEDGER_URL"


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get(LEDGER_URL_ENV) or settings.REDIS_URL)


class RedisLedgerBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Any) -> int:
        r = client()
        kill = r.get(KILL_KEY)  # "1": every send; else only sends to that address
        if kill and (kill == b"1" or any(kill.decode() in message.to for message in email_messages)):
            r.incr(f"{KILL_KEY}:deaths")  # a poison message: the worker process dies mid-job, every time
            os.kill(os.getpid(), signal.SIGKILL)
        doomed = r.get(KILL_BROKER_KEY)  # "address|pid": that send kills the broker's Redis, then fails
        if doomed:
            address, _, pid = doomed.decode().partition("|")
            if any(address in message.to for message in email_messages) and r.delete(KILL_BROKER_KEY):
                os.kill(int(pid), signal.SIGKILL)
                _wait_until_gone(int(pid))
                r.set(f"{KILL_BROKER_KEY}:done", time.time())
                raise smtplib.SMTPServerDisconnected("injected failure, the broker's Redis killed meanwhile")
        started = time.time()
        delay = r.getdel(DELAY_KEY)
        if delay:  # the first send after delay_next() hangs, like a stuck SMTP server
            time.sleep(float(delay))
        every = r.get(EVERY_DELAY_KEY)
        if every:  # a slow SMTP server: every send takes this long
            time.sleep(float(every))
        if r.decr(FAIL_KEY) >= 0:
            raise smtplib.SMTPServerDisconnected("injected failure")
        for message in email_messages:
            message_id = message.extra_headers.get("Message-ID")
            entry = {
                "to": message.to,
                "subject": message.subject,
                "id": message_id,
                "pid": os.getpid(),
                "started": started,
                "finished": time.time(),
            }
            # Accepted and findable by its Message-ID at once, as in a provider's API.
            with r.pipeline(transaction=True) as pipe:
                pipe.rpush(SENT_KEY, json.dumps(entry))
                if message_id:
                    pipe.sadd(ACCEPTED_KEY, message_id)
                pipe.execute()
        return len(email_messages)

    def accepted(self, message_id: str) -> bool:
        """Has a message with this Message-ID been accepted? (`jobs.email_accepted`)"""
        answered = bool(client().sismember(ACCEPTED_KEY, message_id))
        client().incr(f"{ACCEPTED_KEY}:asked")
        if answered:
            client().incr(f"{ACCEPTED_KEY}:found")
        return answered


def _wait_until_gone(pid: int) -> None:
    """Until the killed process no longer accepts connections (its zombie waits for the
    test process to reap it)."""
    from tests.support.workers import alive

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.01)


def kill_broker_on_send_to(address: str, redis_pid: int) -> None:
    """The next send to `address` SIGKILLs the broker's Redis (process `redis_pid`) and
    then fails, so that the job's retry meets a Redis that is gone."""
    client().set(KILL_BROKER_KEY, f"{address}|{redis_pid}")


def broker_killed_at() -> float | None:
    done = client().get(f"{KILL_BROKER_KEY}:done")
    return float(done) if done else None


def sent() -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client().lrange(SENT_KEY, 0, -1)]


def fail_next(count: int) -> None:
    client().set(FAIL_KEY, count)


def delay_next(seconds: float) -> None:
    client().set(DELAY_KEY, seconds)


def delay_every(seconds: float) -> None:
    client().set(EVERY_DELAY_KEY, seconds)


def confirmation_id(order_id: object) -> str:
    """The Message-ID of an order's confirmation (orders.services.send_confirmation)."""
    key = f"email:order-confirmation:{order_id}"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@buzzer>"


def reset() -> None:
    client().delete(
        SENT_KEY, ACCEPTED_KEY, f"{ACCEPTED_KEY}:asked", f"{ACCEPTED_KEY}:found", FAIL_KEY, DELAY_KEY,
        EVERY_DELAY_KEY, KILL_KEY, f"{KILL_KEY}:deaths", KILL_BROKER_KEY, f"{KILL_BROKER_KEY}:done",
    )  # fmt: skip


def times_asked() -> str:
    """How often a take-over asked whether an email was accepted (its outcome unknown),
    and how often it had been (it would have gone out twice without asking)."""
    asked, found = client().mget(f"{ACCEPTED_KEY}:asked", f"{ACCEPTED_KEY}:found")
    return f"{int(asked or 0)} take-overs asked the mail backend whether their email had been accepted, " + (
        f"{int(found or 0)} had been (not sent again)"
    )


def kill_workers_on_send(on: bool = True, to: str = "") -> None:
    if on:
        client().set(KILL_KEY, to or 1)
    else:
        client().delete(KILL_KEY)


def worker_deaths() -> int:
    return int(client().get(f"{KILL_KEY}:deaths") or 0)

"""An email backend for tests with worker processes: every sent message is counted in
the suite's Redis database, and failures can be injected."""

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
FAIL_KEY = "test:email-failures"
DELAY_KEY = "test:email-delay-once"
KILL_KEY = "test:email-kills-worker"


def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


class RedisLedgerBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Any) -> int:
        r = client()
        if r.get(KILL_KEY):  # a poison message: the worker process dies mid-job, every time
            r.incr(f"{KILL_KEY}:deaths")
            os.kill(os.getpid(), signal.SIGKILL)
        delay = r.getdel(DELAY_KEY)
        if delay:  # the first send after delay_next() hangs, like a stuck SMTP server
            time.sleep(float(delay))
        if r.decr(FAIL_KEY) >= 0:
            raise smtplib.SMTPServerDisconnected("injected failure")
        for message in email_messages:
            r.rpush(
                SENT_KEY,
                json.dumps(
                    {"to": message.to, "subject": message.subject, "id": message.extra_headers.get("Message-ID")}
                ),
            )
        return len(email_messages)


def sent() -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client().lrange(SENT_KEY, 0, -1)]


def fail_next(count: int) -> None:
    client().set(FAIL_KEY, count)


def delay_next(seconds: float) -> None:
    client().set(DELAY_KEY, seconds)


def kill_workers_on_send(on: bool = True) -> None:
    if on:
        client().set(KILL_KEY, 1)
    else:
        client().delete(KILL_KEY)


def worker_deaths() -> int:
    return int(client().get(f"{KILL_KEY}:deaths") or 0)

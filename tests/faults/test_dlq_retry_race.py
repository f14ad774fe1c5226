"""A job that dead-lettered for real, and 20 Retry clicks on it at the same moment over
real HTTP to gunicorn's admin (a logged-in operator, CSRF and all): it is re-sent once,
runs once after the fault is cleared, and sends one email."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest

from jobs.models import Job, JobAction
from tests.faults.conftest import FaultStack
from tests.support import email
from tests.support.data import QUICK_RETRIES, email_job
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

CLICKS = 20
SECRET_KEY = "fault-suite-dlq-secret-key-" + "x" * 40
PASSWORD = "pw-for-tests-only"  # tests/conftest.py's staff users


class AdminSession:
    """An operator logged in to the admin over HTTP. The production settings mark the
    session and CSRF cookies Secure, which a client keeps from a plain-HTTP test server,
    so the cookies are carried by hand."""

    def __init__(self, base_url: str, username: str) -> None:
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        page = self.get("/admin/login/")
        response = self.post(
            "/admin/login/",
            {"username": username, "password": PASSWORD, "next": "/admin/", "csrfmiddlewaretoken": token_in(page)},
        )
        assert response.status_code == 302 and "sessionid" in self.cookies, (response.status_code, response.text[:500])

    def _keep(self, response: requests.Response) -> requests.Response:
        self.cookies.update(response.cookies.get_dict())
        return response

    def _header(self, cookies: dict[str, str]) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}

    def get(self, path: str) -> str:
        response = self._keep(requests.get(self.base_url + path, headers=self._header(self.cookies), timeout=30))
        assert response.status_code == 200, (path, response.status_code)
        return response.text

    def post(self, path: str, data: dict[str, str], keep: bool = True) -> requests.Response:
        """POST without following the redirect; `keep=False` for concurrent posts, which
        must not share cookie updates."""
        response = requests.post(
            self.base_url + path, data=data, headers=self._header(dict(self.cookies)), allow_redirects=False, timeout=60
        )
        return self._keep(response) if keep else response


def token_in(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def flash_messages(response: requests.Response) -> list[str]:
    """The admin's messages set on a response (Django's cookie storage, signed with the
    web process' SECRET_KEY, which the test shares)."""
    request = HttpRequest()
    request.COOKIES = {CookieStorage.cookie_name: response.cookies.get(CookieStorage.cookie_name, "")}
    return [str(message) for message in CookieStorage(request)]


def queued(stack: FaultStack, job: Job) -> int:
    """How many messages of `job` wait in its queue (no worker runs)."""
    client = stack.redis.client()
    redis_ids = client.lrange(key(f"{job.queue_name}"), 0, -1)
    payloads = client.hmget(key(f"{job.queue_name}.msgs"), redis_ids) if redis_ids else []
    return sum(1 for payload in payloads if payload and json.loads(payload)["message_id"] == str(job.id))


def test_20_concurrent_retries_of_a_dead_job_resend_it_once(
    stack: FaultStack, stocked: dict, operator: Any, settings: Any
) -> None:
    settings.SECRET_KEY = SECRET_KEY
    email.fail_next(1_000)  # the mail server refuses everything
    worker = stack.workers(processes=1, threads=2)
    job = email_job(stocked, QUICK_RETRIES)
    wait_until(lambda: Job.objects.get(pk=job.pk).status == Job.Status.DEAD, timeout=60, what="the job to die")
    job.refresh_from_db()
    dead_attempts = job.attempts
    client = stack.redis.client()
    assert client.zcard(key("default.XQ")) == 1  # Dramatiq's own dead-letter set holds it too
    worker.stop()  # so that the queue shows what the clicks sent
    assert queued(stack, job) == 0

    web = stack.web(workers=2, threads=8, SECRET_KEY=SECRET_KEY)
    operator_session = AdminSession(web.url, operator.username)
    page = operator_session.get("/admin/jobs/job/dead-letters/")
    assert "injected failure" in page
    token = token_in(page)
    email.fail_next(0)  # the cause is fixed
    barrier = threading.Barrier(CLICKS)

    def click(_: int) -> requests.Response:
        barrier.wait()
        return operator_session.post(f"/admin/jobs/job/{job.id}/retry/", {"csrfmiddlewaretoken": token}, keep=False)

    with ThreadPoolExecutor(max_workers=CLICKS) as pool:
        responses = list(pool.map(click, range(CLICKS)))

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {302: CLICKS}, statuses
    said = Counter(text for response in responses for text in flash_messages(response))
    resent_said = sum(n for text, n in said.items() if text.startswith("Re-sent job"))
    refused_said = sum(n for text, n in said.items() if "not dead" in text)
    assert (resent_said, refused_said) == (1, CLICKS - 1), said
    job.refresh_from_db()
    assert job.status == Job.Status.ENQUEUED
    assert job.options["buzzer_generation"] == 1
    assert JobAction.objects.filter(job=job, kind=JobAction.Kind.RETRY).count() == 1
    assert JobAction.objects.get(job=job, kind=JobAction.Kind.RETRY).user == operator
    sent = queued(stack, job)
    assert sent == 1
    assert client.zcard(key("default.XQ")) == 0  # and it left Dramatiq's dead-letter set

    stack.workers(processes=1, threads=4)
    wait_until(lambda: Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED, timeout=60, what="the re-sent job")
    wait_until(lambda: client.llen(key("default")) == 0, timeout=30, what="the queue to drain")
    job.refresh_from_db()
    assert job.attempts == 1
    emails = [message for message in email.sent() if message["id"] == email.confirmation_id(job.object_id)]
    assert len(emails) == len(email.sent()) == 1
    record(
        f"DLQ retry race: job dead after {dead_attempts} attempts; {CLICKS} concurrent Retry POSTs -> {CLICKS} x 302, "
        f"{resent_said} 'Re-sent', {refused_said} 'not dead any more'; 1 retry action, generation "
        f"{job.options['buzzer_generation']}, {sent} message in Redis; succeeded in {job.attempts} attempt, "
        f"{len(emails)} email"
    )

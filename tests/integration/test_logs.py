"""Logs you can follow: one `grep` of a request id finds the request (gunicorn) and every
line of the jobs it created (a real worker), as JSON lines."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.data import order_body, order_jobs
from tests.support.http import request
from tests.support.waiting import wait_until
from tests.support.web import WebProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def json_lines(text: str) -> list[dict]:
    lines = []
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


def test_one_grep_of_the_request_id_follows_an_order_through_its_jobs(products, api_key, worker_factory):
    web = WebProcess(workers=1, threads=4, LOG_FORMAT="json")
    try:
        workers = worker_factory(processes=1, threads=4, LOG_FORMAT="json")
        request_id = f"checkout-{uuid.uuid4().hex[:12]}"
        status, headers, body = request(
            web.url + "/api/orders/",
            "POST",
            order_body(),
            {"Authorization": f"Bearer {api_key}", "X-Request-ID": request_id},
        )
        assert status == 201, body
        assert headers["X-Request-ID"] == request_id
        wait_until(lambda: order_jobs().filter(status="succeeded").count() == 3, timeout=60, what="the jobs")
        jobs = {str(pk): actor for pk, actor in order_jobs().values_list("pk", "actor_name")}
        web_text, worker_text = web.output_all(), workers.output_all()
    finally:
        web.stop()

    # What `grep <request id>` over both logs finds:
    found = [line for line in json_lines(web_text) + json_lines(worker_text) if request_id in json.dumps(line)]
    requests = [line for line in found if line.get("path") == "/api/orders/"]
    assert len(requests) == 1
    assert (requests[0]["method"], requests[0]["status"], requests[0]["request_id"]) == ("POST", 201, request_id)
    assert {"timestamp", "level", "logger", "event", "duration_ms"} <= set(requests[0])
    job_lines = [line for line in found if "job_id" in line]
    assert {line["job_id"] for line in job_lines} == set(jobs), job_lines
    for line in job_lines:
        assert line["request_id"] == request_id
        assert line["actor"] == jobs[line["job_id"]]
        assert line["attempt"] == 1 and line["queue"] in ("default", "premium")
    finished = [line for line in job_lines if line.get("outcome") == "succeeded"]
    assert len(finished) == 3 and all(line["duration_ms"] >= 0 for line in finished)
    print(f"grep {request_id}: 1 request line, {len(job_lines)} job lines for its 3 jobs")


def test_a_request_without_an_id_gets_one_and_a_bad_one_is_replaced(client):
    plain = client.get("/")
    generated = plain["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/", headers={"X-Request-ID": "mine-1"})["X-Request-ID"] == "mine-1"
    hostile = client.get("/", headers={"X-Request-ID": 'x" injected\nline'})["X-Request-ID"]
    assert hostile != 'x" injected\nline' and len(hostile) == 32

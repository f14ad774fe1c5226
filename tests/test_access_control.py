"""Who may see and do what, tried with many ids and many wrong credentials.

Complements the single-case checks in tests/reports/test_report_pages.py,
tests/test_api_bad_input.py, tests/test_shop_pages.py and tests/test_job_admin.py:
somebody else's report answers 404 for every id tried (theirs, random, malformed) on
every page and endpoint; the API answers 401 with a JSON error on every route for every
kind of missing or wrong key; an order page is its session's (or an order viewer's);
admin job and schedule actions need their permission and a CSRF token, and change
nothing without them; job messages are JSON, never pickle.
"""

from __future__ import annotations

import json
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client
from django.utils import timezone

from jobs.models import Job, JobAction, Schedule
from orders.models import ApiKey, IdempotencyKey, Order
from reports import services
from reports.models import Report
from reports.scheduled import signed_download_url
from tests.support.data import order_body
from tests.support.openapi import api_routes
from tests.support.reports import new_report

pytestmark = pytest.mark.django_db

MALFORMED_IDS = ["1", "abc", "00000000-0000-0000-0000-00000000000", "not-a-uuid-at-all", "%00", "..%2F..%2Fadmin"]


@pytest.fixture(autouse=True)
def _isolated(settings: Any, tmp_path: Path, stub_broker: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def _user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username, password="pw-for-tests-only", **extra)


def _logged_in(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def owner_reports(products: Any) -> list[Report]:
    """Reports of one user in every state, one of them with its file."""
    owner = _user("ada")
    finished = new_report(owner, "low_stock", threshold=100)
    services.generate_report(str(finished.id))
    reports = [Report.objects.get(pk=finished.pk)]
    for status in ("queued", "running", "failed", "cancelled", "expired"):
        report = new_report(owner, "low_stock", threshold=len(reports) + 1)
        Report.objects.filter(pk=report.pk).update(status=status)
        reports.append(report)
    return reports


def _report_pages(report_id: Any) -> list[tuple[str, str]]:
    return [
        ("GET", f"/reports/{report_id}/"),
        ("GET", f"/reports/{report_id}/status"),
        ("GET", f"/reports/{report_id}/download"),
        ("POST", f"/reports/{report_id}/cancel"),
        ("GET", f"/reports/{report_id}/shared-download"),
    ]


def _statuses() -> dict[Any, str]:
    return dict(Report.objects.values_list("pk", "status"))


@pytest.mark.parametrize("who", ["another user", "a superuser"])
def test_somebody_elses_report_ids_answer_404_on_every_report_page(owner_reports: list[Report], who: str) -> None:
    intruder = _user("grace") if who == "another user" else _user("boss", is_staff=True, is_superuser=True)
    client = _logged_in(intruder)
    before = _statuses()
    ids = [str(r.id) for r in owner_reports] + [str(uuid.uuid4()) for _ in range(10)] + MALFORMED_IDS

    for report_id in ids:
        for method, url in _report_pages(report_id):
            response = client.generic(method, url)
            assert response.status_code == 404, (method, url, response.status_code)
            assert b"threshold" not in response.content  # nothing of the report leaks

    assert _statuses() == before  # no cancel went through


def test_the_owner_gets_404_too_for_ids_that_are_not_theirs(owner_reports: list[Report]) -> None:
    owner = owner_reports[0].owner
    client = _logged_in(owner)
    assert client.get(f"/reports/{owner_reports[0].id}/").status_code == 200  # the control: their own

    for report_id in [str(uuid.uuid4()) for _ in range(10)] + MALFORMED_IDS + [str(owner_reports[0].id).upper()]:
        for method, url in _report_pages(report_id)[:4]:
            assert client.generic(method, url).status_code == 404, (method, url)


def test_the_signed_link_opens_only_its_own_report(owner_reports: list[Report], client: Client) -> None:
    finished, other = owner_reports[0], owner_reports[1]
    link = signed_download_url(finished)
    token = link.split("token=", 1)[1]
    Report.objects.filter(pk=other.pk).update(status="succeeded", file=finished.file.name)

    assert client.get(f"/reports/{finished.id}/shared-download?token={token}").status_code == 200
    for query in ("", "?token=", "?token=x", f"?token={token}x", f"?token={token[:-2]}"):
        assert client.get(f"/reports/{finished.id}/shared-download{query}").status_code == 404, query
    assert client.get(f"/reports/{other.id}/shared-download?token={token}").status_code == 404


def test_pages_never_show_a_report_of_an_api_key_and_the_api_never_a_users(
    owner_reports: list[Report], api: Any
) -> None:
    api_report_id = api.post("/api/reports/", {"kind": "low_stock", "parameters": {"threshold": 7}}).json()["id"]
    page_user = _logged_in(owner_reports[0].owner)

    for method, url in _report_pages(api_report_id)[:4]:
        assert page_user.generic(method, url).status_code == 404, url
    for report in owner_reports:
        for suffix in ("", "download"):
            response = api.get(f"/api/reports/{report.id}/{suffix}")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"


def test_another_api_key_gets_404_for_every_report_and_order_id(api: Any, client: Client, products: Any) -> None:
    ids = {
        "reports": [
            api.post("/api/reports/", {"kind": "low_stock", "parameters": {"threshold": n}}).json()["id"]
            for n in (1, 2, 3)
        ],
        "orders": [api.post("/api/orders/", order_body()).json()["id"] for _ in range(3)],
    }
    services.generate_report(ids["reports"][0])
    _, other_key = ApiKey.issue("other")
    other = {"Authorization": f"Bearer {other_key}"}

    for kind, real in ids.items():
        urls = [f"/api/{kind}/{i}/" for i in [*real, *(uuid.uuid4() for _ in range(10)), *MALFORMED_IDS]]
        if kind == "reports":
            urls += [f"{url}download" for url in urls]
        for url in urls:
            response = client.get(url, headers=other)
            assert response.status_code == 404, url
            assert response["Content-Type"] == "application/json"
            assert response.json()["error"]["code"] == "not_found"
            assert api.get(url).status_code in ((200, 404) if url.split("/")[3] in real else (404,))


# --- The API without a valid key ----------------------------------------------------


def _wrong_authorizations(valid: str, revoked: str) -> list[str | None]:
    return [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer bz_unknown-key",
        f"Bearer {valid}x",
        f"Bearer {valid[:-1]}",
        f"Basic {valid}",
        f"Token {valid}",
        valid,
        f"Bearer{valid}",
        f"Bearer {revoked}",
        "Bearer " + "x" * 5000,
        "Bearer \u00e9\u00e8",
    ]


def test_every_api_route_answers_401_json_to_every_wrong_key(client: Client, api_key: str, products: Any) -> None:
    revoked_row, revoked = ApiKey.issue("revoked")
    ApiKey.objects.filter(pk=revoked_row.pk).update(active=False)
    some_id = uuid.uuid4()
    before = (Order.objects.count(), Report.objects.count(), Job.objects.count(), IdempotencyKey.objects.count())
    tried = 0

    for path, view in api_routes().items():
        if path == "/api/openapi.json":
            continue
        url = path.replace("{order_id}", str(some_id)).replace("{report_id}", str(some_id))
        for method in view.api_methods:
            for authorization in _wrong_authorizations(api_key, revoked):
                headers = {"Idempotency-Key": "k"}
                if authorization is not None:
                    headers["Authorization"] = authorization
                body = json.dumps(order_body() if "orders" in path else {"kind": "low_stock"})
                response = client.generic(method, url, data=body, content_type="application/json", headers=headers)
                assert response.status_code == 401, (method, url, authorization, response.status_code)
                assert response["Content-Type"] == "application/json"
                assert response["WWW-Authenticate"] == "Bearer"
                assert response.json()["error"]["code"] == "unauthorized"
                tried += 1

    assert tried == 5 * len(_wrong_authorizations(api_key, revoked))
    after = (Order.objects.count(), Report.objects.count(), Job.objects.count(), IdempotencyKey.objects.count())
    assert after == before
    # The control: the same calls with the valid key get past authentication.
    ok = client.get(f"/api/orders/{some_id}/", headers={"Authorization": f"bearer {api_key}"})
    assert ok.status_code == 404


# --- Order pages --------------------------------------------------------------------


def _checkout(client: Client) -> str:
    response = client.post(
        "/orders/", {"email": "ada@example.com", "qty-BUZ-001": "1", "card": "4242424242424242", "priority": "standard"}
    )
    assert response.status_code == 302
    return response["Location"]


def test_an_order_page_is_only_for_its_session_and_order_viewers(products: Any, api: Any) -> None:
    location = _checkout(Client())
    api_order = f"/orders/{api.post('/api/orders/', order_body()).json()['id']}/"
    viewer_of_orders = _user("clerk", is_staff=True)
    view_order = Permission.objects.get(codename="view_order", content_type__app_label="orders")
    viewer_of_orders.user_permissions.add(view_order)
    jobs_only_staff = _user("ops", is_staff=True)
    jobs_only_staff.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs"))

    for client in (Client(), _logged_in(_user("grace")), _logged_in(jobs_only_staff)):
        for url in (location, api_order, f"/orders/{uuid.uuid4()}/", "/orders/not-a-uuid/"):
            assert client.get(url).status_code == 404, url
    assert _logged_in(viewer_of_orders).get(location).status_code == 200
    assert _logged_in(viewer_of_orders).get(api_order).status_code == 200


def test_another_session_sees_none_of_many_orders(products: Any) -> None:
    placer = Client()
    locations = [_checkout(placer) for _ in range(5)]
    stranger = Client()
    _checkout(stranger)  # a session with orders of its own

    for location in locations:
        assert placer.get(location).status_code == 200
        assert stranger.get(location).status_code == 404


# --- Admin actions: permission AND CSRF --------------------------------------------


def _grant(user: Any, *codenames: str) -> Any:
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


def _token(client: Client) -> str:
    page = client.get("/accounts/login/").content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def _dead_job() -> Job:
    return Job.objects.create(
        actor_name="send_confirmation_email", status="dead", attempts=3, finished_at=timezone.now(), last_error="boom"
    )


ACTIONS = [
    # (name, permission, url, data)
    ("retry", "retry_job", "/admin/jobs/job/{job}/retry/", {}),
    ("discard", "discard_job", "/admin/jobs/job/{job}/discard/", {"reason": "tested"}),
    ("retry group", "retry_job", "/admin/jobs/job/dead-letters/retry-group/", {"fingerprint": "{fingerprint}"}),
    (
        "discard group",
        "discard_job",
        "/admin/jobs/job/dead-letters/discard-group/",
        {"fingerprint": "{fingerprint}", "confirm": "1", "reason": "tested"},
    ),
    ("retry matching", "retry_job", "/admin/jobs/job/retry-matching/", {"query": "status=dead"}),
    ("retry selected", "retry_job", "/admin/jobs/job/", {"action": "retry_selected", "_selected_action": "{job}"}),
    ("run now", "run_schedule", "/admin/jobs/schedule/{schedule}/run-now/", {}),
    ("pause", "run_schedule", "/admin/jobs/schedule/{schedule}/pause/", {}),
    ("cancel", "cancel_job", "/admin/jobs/job/{job}/cancel/", {}),
    ("cancel selected", "cancel_job", "/admin/jobs/job/", {"action": "cancel_selected", "_selected_action": "{job}"}),
]


def _state(job: Job, schedule: Schedule) -> tuple[Any, ...]:
    job.refresh_from_db()
    schedule.refresh_from_db()
    return job.status, job.attempts, JobAction.objects.count(), Job.objects.count(), schedule.enabled


@pytest.mark.parametrize(("name", "permission", "url", "data"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_an_admin_action_needs_its_permission_and_a_csrf_token(
    operator: Any, name: str, permission: str, url: str, data: dict[str, str]
) -> None:
    job = _dead_job()
    if permission == "cancel_job":  # what can be cancelled is a job still waiting
        Job.objects.filter(pk=job.pk).update(status="enqueued", attempts=0)
    schedule = Schedule.objects.create(name="s", actor_name="prune_idempotency_keys", cron="0 6 * * *")
    url = url.format(job=job.pk, schedule=schedule.pk)
    data = {k: v.format(job=job.pk, fingerprint=job.error_fingerprint) for k, v in data.items()}
    allowed = _grant(operator, "view_job", "view_schedule", permission)
    others = [p for p in ("retry_job", "discard_job", "run_schedule", "cancel_job") if p != permission]
    not_allowed = _grant(_user("looker", is_staff=True), "view_job", "view_schedule", *others)
    before = _state(job, schedule)

    anonymous = Client(enforce_csrf_checks=True)
    response = anonymous.post(url, {**data, "csrfmiddlewaretoken": _token(anonymous)})
    assert response.status_code in (302, 403) and "/admin/login/" in response.get("Location", "/admin/login/")
    no_token = _logged_in(allowed, csrf=True).post(url, data)
    assert no_token.status_code == 403, "accepted without a CSRF token"
    bad_token = _logged_in(allowed, csrf=True).post(url, {**data, "csrfmiddlewaretoken": "x" * 64})
    assert bad_token.status_code == 403
    without_permission = _logged_in(not_allowed, csrf=True)
    response = without_permission.post(url, {**data, "csrfmiddlewaretoken": _token(without_permission)})
    assert response.status_code == 403 or (name.endswith("selected") and response.status_code in (200, 302))
    assert _state(job, schedule) == before, "changed without permission or CSRF token"

    permitted = _logged_in(allowed, csrf=True)
    response = permitted.post(url, {**data, "csrfmiddlewaretoken": _token(permitted)})
    assert response.status_code == 302
    assert _state(job, schedule) != before, "the control: with both, the action happens"


def test_admin_actions_are_post_only(operator: Any) -> None:
    job = _dead_job()
    schedule = Schedule.objects.create(name="s", actor_name="prune_idempotency_keys", cron="0 6 * * *")
    client = _logged_in(_grant(operator, "view_job", "retry_job", "run_schedule", "cancel_job", "requeue_job"))
    for url in (
        f"/admin/jobs/job/{job.pk}/retry/",
        f"/admin/jobs/job/{job.pk}/cancel/",
        f"/admin/jobs/job/{job.pk}/requeue/",
        "/admin/jobs/job/dead-letters/retry-group/",
        "/admin/jobs/job/dead-letters/discard-group/",
        "/admin/jobs/job/retry-matching/",
        f"/admin/jobs/schedule/{schedule.pk}/run-now/",
        f"/admin/jobs/schedule/{schedule.pk}/pause/",
    ):
        assert client.get(url).status_code == 405, url
    assert _state(job, schedule)[:2] == ("dead", 3)


# --- Job payloads: JSON, never pickle ------------------------------------------------

EXECUTED: list[str] = []


def _record(value: str) -> str:
    EXECUTED.append(value)
    return value


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_record, ("unpickled",))


def test_the_broker_encodes_messages_as_json(settings: Any) -> None:
    assert settings.DRAMATIQ_ENCODER == "dramatiq.encoder.JSONEncoder"
    assert type(dramatiq.get_encoder()) is dramatiq.JSONEncoder


def test_a_job_message_on_the_queue_is_plain_json(stub_broker: Any, django_capture_on_commit_callbacks: Any) -> None:
    import jobs

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        job = jobs.enqueue("send_confirmation_email", order_id="an-order")

    (raw,) = stub_broker.queues["default"].queue  # looked at, left for the broker's flush
    message = json.loads(raw.decode("utf-8"))
    assert (message["message_id"], message["kwargs"]) == (str(job.id), {"order_id": "an-order"})


def test_a_pickled_message_is_refused_and_never_unpickled() -> None:
    payload = pickle.dumps({"queue_name": "default", "actor_name": "x", "args": [_Exploit()], "kwargs": {}})
    EXECUTED.clear()

    with pytest.raises(dramatiq.DecodeError):
        dramatiq.Message.decode(payload)

    assert EXECUTED == []


# --- A Redis password in REDIS_URL ---------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_a_password_in_redis_url_reaches_the_connection(scheme: str) -> None:
    import redis

    from config.settings import _with_query

    url = _with_query(f"{scheme}://:s3cr%40t@cache.internal:6380/2", socket_connect_timeout=1.0, socket_timeout=5.0)
    pool = redis.ConnectionPool.from_url(url)

    assert pool.connection_kwargs["password"] == "s3cr@t"
    assert (pool.connection_kwargs["host"], pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (
        "cache.internal",
        6380,
        2,
    )
    assert (pool.connection_class is redis.SSLConnection) == (scheme == "rediss")

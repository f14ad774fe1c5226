"""The jobs admin: list, detail, Retry and Discard buttons, permissions, escaping."""

import html
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import admin as jobs_admin
from jobs.models import Job, JobAction, JobAttempt

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def make_job(**fields):
    defaults = {"actor_name": "send_confirmation_email", "status": "dead", "attempts": 3, "finished_at": timezone.now()}
    return Job.objects.create(**{**defaults, **fields})


def logged_in(user, csrf=False):
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csrf_token(client, url):
    page = client.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_list_shows_jobs_with_their_object_and_filters(operator):
    job = make_job(object_type="orders.order", object_id=str(uuid.uuid4()), status="succeeded")

    page = logged_in(operator).get("/admin/jobs/job/").content.decode()

    assert str(job.id)[:8] in page
    assert job.object_id in page
    for filter_title in ("By status", "By actor", "By queue", "By created"):
        assert filter_title in page


def test_list_never_counts_the_whole_table(operator, monkeypatch):
    monkeypatch.setattr(jobs_admin, "COUNT_CAP", 5)
    Job.objects.bulk_create([Job(actor_name="record_analytics", status="succeeded") for _ in range(8)])

    with CaptureQueriesContext(connection) as queries:
        response = logged_in(operator).get("/admin/jobs/job/")

    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "jobs_job" in q["sql"]]
    assert counts, "the list counts its rows somehow"
    assert all("LIMIT" in sql for sql in counts), counts
    # a constant, which any index answering the filter covers: no row read to count
    assert all("SELECT (1)" in sql and '"jobs_job"."id"' not in sql.partition("FROM")[0] for sql in counts), counts

    with CaptureQueriesContext(connection) as queries:
        logged_in(operator).get("/admin/jobs/job/", {"q": "someone@example.com"})
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "jobs_job" in q["sql"]]
    assert counts and all("LIMIT" in sql for sql in counts), counts
    # after a search, the dead ones are counted along: the status, never the rows' ids
    assert all('"jobs_job"."id"' not in sql.split("FROM (", 1)[-1].partition("FROM")[0] for sql in counts), counts


def test_list_rows_are_cell_for_cell_those_of_djangos_admin(operator):
    """The job list renders its rows itself (jobs/admin_list.py): same HTML as Django's."""
    from django.contrib import admin
    from django.contrib.admin.templatetags.admin_list import items_for_result
    from django.test import RequestFactory
    from django.urls import reverse
    from django.utils.html import format_html_join

    from jobs import admin_list

    make_job(actor_name=XSS, object_type="orders.order", object_id="a b/c?d&e<f>", last_error=XSS)
    make_job(status="scheduled", due_at=timezone.now() + timezone.timedelta(hours=2), object_type="", attempts=0)
    make_job(status="running", options={"buzzer_cancel_requested": True}, object_type="x.y", object_id=XSS)
    request = RequestFactory().get("/admin/jobs/job/", {"status__exact": "dead", "q": "", "o": "1"})
    request.GET = request.GET.copy()
    request.GET.pop("status__exact")  # every job, with filters to preserve in the links
    request.user = operator
    model_admin = admin.site._registry[Job]
    changelist = model_admin.get_changelist_instance(request)
    changelist.formset = None

    rows = admin_list.Rows(changelist)

    assert rows.fast
    theirs = [
        format_html_join("", "{}", ((c,) for c in items_for_result(changelist, job, None)))
        for job in changelist.result_list
    ]
    assert list(rows) == theirs and len(theirs) == 3
    job = changelist.result_list[0]
    assert model_admin.action_checkbox(job) == admin.ModelAdmin.action_checkbox(model_admin, job)
    for object_id in ("a b/c?d&e<f>", "42", "ü%20#x"):
        expected = reverse("admin:orders_order_change", args=[object_id])
        assert admin_list.change_url("admin:orders_order_change", object_id) == expected
    assert admin_list.change_url("admin:x_y_change", "1") is None


def test_list_queries_do_not_grow_with_its_rows(operator):
    """The list defers the heavy columns (jobs.admin.JobChangeList): no cell may read one."""
    client = logged_in(operator)
    make_job(status="succeeded")
    with CaptureQueriesContext(connection) as one:
        assert client.get("/admin/jobs/job/").status_code == 200
    now = timezone.now()
    for status, extra in [
        ("scheduled", {"due_at": now + timezone.timedelta(hours=1)}),
        ("running", {"worker": "gone-worker", "options": {"buzzer_cancel_requested": True}}),
        ("running", {"worker": "w", "started_at": now}),
        ("dead", {"last_error": "boom", "traceback": "Traceback", "error_fingerprint": "f" * 40}),
        ("succeeded", {"started_at": now - timezone.timedelta(seconds=2), "finished_at": now}),
        ("enqueued", {"object_type": "orders.order", "object_id": "42", "enqueued_at": now, "key": "k"}),
    ]:
        make_job(status=status, args=[1], kwargs={"email": "a@example.com"}, **extra)

    with CaptureQueriesContext(connection) as many:
        page = client.get("/admin/jobs/job/").content.decode()

    assert page.count('class="action-select"') == 7
    assert "scheduled · in" in page and "running · cancelling" in page and ">order 42<" in page
    assert len(many.captured_queries) == len(one.captured_queries), [q["sql"] for q in many.captured_queries]


@pytest.mark.parametrize("field", ["id", "object_id", "error"])
def test_search_finds_a_job_by_id_object_or_error(operator, field):
    wanted = make_job(object_id="order-77", last_error="SMTPServerDisconnected: relay gone")
    other = make_job(object_id="order-78", last_error="TimeoutError")
    term = {"id": str(wanted.id), "object_id": "order-77", "error": "relay gone"}[field]

    page = logged_in(operator).get("/admin/jobs/job/", {"q": term}).content.decode()

    assert str(wanted.id)[:8] in page
    assert str(other.id)[:8] not in page


def test_detail_shows_arguments_attempts_and_operator_actions(operator):
    job = make_job(kwargs={"order_id": "o-1"}, last_error="boom", traceback="Traceback: line 1")
    JobAttempt.objects.create(job=job, number=1, status="retrying", finished_at=timezone.now(), error="first boom")
    JobAction.objects.create(job=job, kind="discard", user=operator, reason="tested")

    page = logged_in(operator).get(f"/admin/jobs/job/{job.id}/change/").content.decode()

    for text in (
        html.escape('"order_id": "o-1"'),
        "first boom",
        "Traceback: line 1",
        "tested",
        "operator",
        str(job.id),
    ):
        assert text in page


def test_everything_from_outside_is_escaped_on_every_jobs_page(operator):
    job = make_job(
        actor_name=XSS, args=[XSS], kwargs={"x": XSS}, last_error=XSS, traceback=XSS, object_type="x.y", object_id=XSS
    )
    JobAttempt.objects.create(job=job, number=1, status="dead", finished_at=timezone.now(), error=XSS, traceback=XSS)
    JobAction.objects.create(job=job, kind="retry", reason=XSS)
    client = logged_in(operator)

    for url in (
        "/admin/jobs/job/",
        f"/admin/jobs/job/{job.id}/change/",
        "/admin/jobs/job/dead-letters/",
        f"/admin/jobs/job/{job.id}/discard/",
        f"/admin/jobs/job/?q={XSS}",
    ):
        page = client.get(url).content.decode()
        assert "<script>alert" not in page, url
    assert "&lt;script&gt;" in client.get(f"/admin/jobs/job/{job.id}/change/").content.decode()


def test_operator_sees_retry_and_retries_with_csrf(operator, stub_broker, django_capture_on_commit_callbacks):
    job = make_job()
    client = logged_in(operator, csrf=True)
    url = f"/admin/jobs/job/{job.id}/change/"
    assert 'id="retry-job"' in client.get(url).content.decode()
    token = csrf_token(client, url)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/jobs/job/{job.id}/retry/", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "enqueued" and job.attempts == 0
    assert stub_broker.queues["default"].qsize() == 1
    assert JobAction.objects.get(job=job).user == operator


def test_retry_without_csrf_is_refused(operator):
    job = make_job()
    response = logged_in(operator, csrf=True).post(f"/admin/jobs/job/{job.id}/retry/")
    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).status == "dead"


def test_retry_is_post_only(operator):
    job = make_job()
    assert logged_in(operator).get(f"/admin/jobs/job/{job.id}/retry/").status_code == 405
    assert Job.objects.get(pk=job.pk).status == "dead"


def test_staff_without_the_permissions_see_no_buttons_and_get_403(viewer):
    job = make_job()
    client = logged_in(viewer)

    page = client.get(f"/admin/jobs/job/{job.id}/change/").content.decode()
    assert 'id="retry-job"' not in page and 'id="discard-job"' not in page
    assert 'id="retry-matching"' not in client.get("/admin/jobs/job/").content.decode()
    dead_letters = client.get("/admin/jobs/job/dead-letters/").content.decode()
    assert "retry-group" not in dead_letters and "discard-group" not in dead_letters
    assert client.post(f"/admin/jobs/job/{job.id}/retry/").status_code == 403
    assert client.post(f"/admin/jobs/job/{job.id}/discard/", {"reason": "no"}).status_code == 403
    assert client.post("/admin/jobs/job/retry-matching/", {"query": ""}).status_code == 403
    assert client.post("/admin/jobs/job/dead-letters/retry-group/", {"fingerprint": ""}).status_code == 403
    group = {"fingerprint": job.error_fingerprint, "confirm": "1", "reason": "no"}
    assert client.post("/admin/jobs/job/dead-letters/discard-group/", group).status_code == 403
    response = client.post("/admin/jobs/job/", {"action": "retry_selected", "_selected_action": [str(job.id)]})
    assert Job.objects.get(pk=job.pk).status == "dead"
    assert response.status_code in (200, 302, 403)


def test_discard_needs_a_reason_and_keeps_it(operator):
    job = make_job()
    client = logged_in(operator)

    page = client.post(f"/admin/jobs/job/{job.id}/discard/", {"reason": "  "}).content.decode()
    assert "Say why" in page
    assert Job.objects.get(pk=job.pk).status == "dead"

    client.post(f"/admin/jobs/job/{job.id}/discard/", {"reason": "duplicate order"})
    assert Job.objects.get(pk=job.pk).status == "discarded"
    assert JobAction.objects.get(job=job).reason == "duplicate order"


def test_retry_selected_action_retries_only_dead_ones(operator):
    dead, done = make_job(), make_job(status="succeeded")
    logged_in(operator).post(
        "/admin/jobs/job/", {"action": "retry_selected", "_selected_action": [str(dead.id), str(done.id)]}
    )
    assert Job.objects.get(pk=dead.pk).status == "pending"  # in the outbox, sent after commit
    assert Job.objects.get(pk=done.pk).status == "succeeded"


def test_discard_selected_asks_for_a_reason_first(operator):
    job = make_job()
    client = logged_in(operator)
    page = client.post("/admin/jobs/job/", {"action": "discard_selected", "_selected_action": [str(job.id)]})
    assert 'name="reason"' in page.content.decode()
    assert Job.objects.get(pk=job.pk).status == "dead"

    client.post(
        "/admin/jobs/job/",
        {"action": "discard_selected", "_selected_action": [str(job.id)], "confirm": "1", "reason": "spam"},
    )
    assert Job.objects.get(pk=job.pk).status == "discarded"


def test_retry_all_matching_the_filter_leaves_the_rest(operator):
    emails = [make_job(actor_name="send_confirmation_email") for _ in range(3)]
    other = make_job(actor_name="update_inventory")

    logged_in(operator).post(
        "/admin/jobs/job/retry-matching/", {"query": "status__exact=dead&actor=send_confirmation_email"}
    )

    assert {Job.objects.get(pk=j.pk).status for j in emails} == {"pending"}
    assert Job.objects.get(pk=other.pk).status == "dead"


def test_dead_letters_page_groups_and_retries_a_group(operator):
    for _ in range(3):
        make_job(last_error="SMTP 421 try later")
    lone = make_job(last_error="KeyError: 'sku'")
    client = logged_in(operator)

    page = client.get("/admin/jobs/job/dead-letters/").content.decode()
    assert "SMTP 421 try later" in page and "Retry 3" in page and "Retry 1" in page

    client.post(
        "/admin/jobs/job/dead-letters/retry-group/",
        {"fingerprint": Job.objects.exclude(pk=lone.pk).first().error_fingerprint},
    )
    assert Job.objects.filter(status="pending").count() == 3
    assert Job.objects.get(pk=lone.pk).status == "dead"


def test_order_admin_shows_its_jobs_as_a_timeline(operator, products, api):
    from django.contrib.auth import get_user_model

    api.post("/api/orders/", {"email": "t@example.com", "items": [{"sku": "BUZ-001"}], "card": "4242424242424242"})
    from orders.models import Order

    order = Order.objects.get()
    admin_user = get_user_model().objects.create_superuser("root", "r@example.com", "pw-for-tests-only")
    page = logged_in(admin_user).get(f"/admin/orders/order/{order.id}/change/").content.decode()

    assert 'id="job-timeline"' in page
    for actor in ("send_confirmation_email", "update_inventory", "record_analytics"):
        assert actor in page
    assert 'class="buzzer-status buzzer-status-' in page and ".buzzer-status-succeeded" in page  # badges, styled
    assert 'name="_save"' not in page and "/delete/" not in page  # a paid order is read, not edited
    assert admin_user.has_perm("orders.delete_order")  # even a superuser: the page, not the permission
    client = logged_in(admin_user)
    assert client.post(f"/admin/orders/order/{order.id}/delete/", {"post": "yes"}).status_code == 403
    assert Order.objects.filter(pk=order.pk).exists()


def test_admin_index_links_the_console(operator):
    page = logged_in(operator).get("/admin/").content.decode()
    assert 'id="buzzer-console"' in page
    assert "/admin/jobs/dashboard/" in page and "/admin/jobs/job/dead-letters/" in page


def test_a_delayed_job_shows_scheduled_with_its_due_time_and_can_be_filtered(operator):
    due = timezone.now() + timezone.timedelta(minutes=30)
    delayed = make_job(status="scheduled", attempts=0, finished_at=None, due_at=due)
    other = make_job(status="enqueued", attempts=0, finished_at=None)
    client = logged_in(operator)

    page = client.get("/admin/jobs/job/?status__exact=scheduled").content.decode()
    assert f'<span title="{delayed.pk}">' in page
    assert f'<span title="{other.pk}">' not in page
    assert "scheduled · in 29\xa0minutes" in page or "scheduled · in 30\xa0minutes" in page
    detail = client.get(f"/admin/jobs/job/{delayed.pk}/change/").content.decode()
    local = timezone.localtime(delayed.due_at)
    assert f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d}" in detail  # the due time, to the ms
    assert "Waiting for its time." in detail


def test_cancel_button_cancels_a_waiting_job_with_permission_only(operator, viewer):
    from django.contrib.auth.models import Permission

    job = make_job(status="enqueued", attempts=0, finished_at=None)
    url = f"/admin/jobs/job/{job.pk}/change/"
    assert 'id="cancel-job"' not in logged_in(viewer).get(url).content.decode()
    assert logged_in(viewer).post(f"/admin/jobs/job/{job.pk}/cancel/").status_code == 403
    assert 'id="cancel-job"' not in logged_in(operator).get(url).content.decode()  # operator lacks cancel_job

    operator.user_permissions.add(Permission.objects.get(codename="cancel_job"))
    client = logged_in(operator, csrf=True)
    page = client.get(url).content.decode()
    assert 'id="cancel-job"' in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(f"/admin/jobs/job/{job.pk}/cancel/", {"csrfmiddlewaretoken": token}, follow=True)
    assert "it will not run" in response.content.decode()
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert JobAction.objects.get(job=job).kind == "cancel"
    assert 'id="cancel-job"' not in client.get(url).content.decode()  # finished: no button


def test_cancel_selected_cancels_the_waiting_ones_only(operator):
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(Permission.objects.get(codename="cancel_job"))
    waiting = [make_job(status=s, attempts=0, finished_at=None) for s in ("pending", "scheduled", "retrying")]
    done = make_job(status="succeeded")
    response = logged_in(operator).post(
        "/admin/jobs/job/",
        {"action": "cancel_selected", "_selected_action": [str(j.pk) for j in [*waiting, done]]},
        follow=True,
    )
    assert "Cancelled 3 job(s)" in response.content.decode()
    assert sorted(Job.objects.values_list("status", flat=True)) == ["cancelled"] * 3 + ["succeeded"]


def test_retry_all_is_offered_with_its_count_only_where_dead_jobs_match(operator, monkeypatch):
    dead = make_job(status="dead")
    make_job(status="dead", actor_name="update_inventory")
    make_job(status="succeeded")
    client = logged_in(operator)

    everything = client.get("/admin/jobs/job/").content.decode()
    assert 'id="retry-matching">Retry 2 dead</button>' in everything
    assert 'data-confirm="Retry 2 dead jobs matching this filter?"' in everything
    one = client.get("/admin/jobs/job/", {"actor": "update_inventory"}).content.decode()
    assert 'id="retry-matching">Retry 1 dead</button>' in one
    assert 'data-confirm="Retry 1 dead job matching this filter?"' in one
    searched = client.get("/admin/jobs/job/", {"q": "update_inventory"}).content.decode()
    assert 'id="retry-matching">Retry 1 dead</button>' in searched  # the search leads, the status is checked
    by_id = client.get("/admin/jobs/job/", {"q": str(dead.pk)[:8]}).content.decode()
    assert 'id="retry-matching">Retry 1 dead</button>' in by_id
    succeeded = client.get("/admin/jobs/job/", {"status__exact": "succeeded"}).content.decode()
    assert 'id="retry-matching"' not in succeeded
    monkeypatch.setattr(jobs_admin, "COUNT_CAP", 1)  # the list's count stops short: dead counted apart
    capped = client.get("/admin/jobs/job/").content.decode()
    assert 'id="retry-matching">Retry 2 dead</button>' in capped


def test_the_job_page_leads_with_the_outcome_and_keeps_failed_attempts_below(operator):
    started = timezone.now() - timezone.timedelta(seconds=5)
    job = make_job(
        status="succeeded",
        attempts=2,
        last_error="TimeoutError: relay slow",
        traceback="Traceback (most recent call last):\n" + "  line\n" * 400 + "TimeoutError: relay slow",
        enqueued_at=started - timezone.timedelta(milliseconds=12),
        started_at=started,
        finished_at=started + timezone.timedelta(milliseconds=8.2),
    )
    JobAttempt.objects.create(
        job=job, number=1, status="retrying", worker="w1", started_at=started - timezone.timedelta(seconds=3),
        finished_at=started - timezone.timedelta(seconds=2.9), error=job.last_error, traceback=job.traceback,
    )  # fmt: skip

    page = logged_in(operator).get(f"/admin/jobs/job/{job.pk}/change/").content.decode()

    outcome = page.index("Succeeded on attempt 2 (1 failed before), in 8.2\xa0ms.")
    assert outcome < page.index("Failed attempts")
    assert "Last error" not in page  # the error is the failed attempt's, below, not the job's outcome
    assert page.count("TimeoutError: relay slow") >= 2  # the attempt's error and the end of its traceback
    assert "  line\n" * 400 in page  # the traceback whole
    local = timezone.localtime(job.started_at)
    assert f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d}" in page
    assert "12\xa0ms" in page  # waited: from enqueued to started


def test_a_dead_job_leads_with_its_error(operator):
    job = make_job(status="dead", last_error="ValueError: price missing", traceback="Traceback …\nValueError")
    page = logged_in(operator).get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert page.index("Dead after 3 attempts") < page.index("ValueError: price missing") < page.index("Timings")


def test_retries_show_their_next_attempt_soonest_first_and_run_now_on_demand(operator, real_broker):
    now = timezone.now()
    later = make_job(status="retrying", attempts=2, due_at=now + timezone.timedelta(minutes=20))
    sooner = make_job(status="retrying", attempts=1, due_at=now + timezone.timedelta(seconds=90))
    client = logged_in(operator, csrf=True)

    page = client.get("/admin/jobs/job/", {"status__exact": "retrying"}).content.decode()
    assert page.index(str(sooner.pk)[:8]) < page.index(str(later.pk)[:8])  # soonest first
    assert "retrying · next in 1\xa0minute<" in page and re.search("retrying · next in (19|20)\xa0minutes", page)
    assert 'id="retries-link"' in page

    detail = client.get(f"/admin/jobs/job/{later.pk}/change/").content.decode()
    assert 'id="retry-now"' in detail
    token = csrf_token(client, f"/admin/jobs/job/{later.pk}/change/")
    client.post(f"/admin/jobs/job/{later.pk}/retry-now/", {"csrfmiddlewaretoken": token})

    later.refresh_from_db()
    assert later.status == "enqueued" and later.due_at is None and later.attempts == 2
    queued = [m for m in real_broker.client.hvals(f"{real_broker.namespace}:default.msgs")]
    assert any(str(later.pk).encode() in body and b'"retries":2' in body for body in queued)
    action = JobAction.objects.get(job=later)
    assert action.user == operator and "Attempt 3 run now" in action.reason
    # Twice is once: the job is no longer waiting for a retry.
    client.post(f"/admin/jobs/job/{later.pk}/retry-now/", {"csrfmiddlewaretoken": token})
    assert JobAction.objects.filter(job=later).count() == 1


def test_a_failed_attempt_records_when_the_next_one_is_due(settings):
    from jobs.waits import ReadyTime, take_next_run

    class Message:
        message_id = "m-1"
        options: dict = {}

    ReadyTime().before_enqueue(None, Message(), 30_000)
    due = take_next_run("m-1")
    assert due is not None and 29 <= (due - timezone.now()).total_seconds() <= 31
    assert take_next_run("m-1") is None  # read once

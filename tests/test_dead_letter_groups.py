"""The dead-letters page: dead jobs grouped by error fingerprint, paginated, with Retry
group and Discard group acting on exactly the group's jobs."""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import jobs
from jobs import admin as jobs_admin
from jobs import dlq
from jobs.fingerprints import fingerprint
from jobs.models import Job, JobAction
from jobs.writer import Finished, Started, write
from tests.support.stub import drain

pytestmark = pytest.mark.django_db

PAGE = "/admin/jobs/job/dead-letters/"


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def dead(error, actor="send_confirmation_email", **fields):
    return Job.objects.create(
        actor_name=actor, status="dead", attempts=3, finished_at=timezone.now(), last_error=error, **fields
    )


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_writer_fingerprints_a_failed_attempt_in_the_update_that_writes_its_error():
    job = Job.objects.create(actor_name="send_confirmation_email", status="enqueued")
    now = timezone.now()
    events = [
        Started(job.id, 1, "w", now, "send_confirmation_email", "default", [], {}),
        Finished(
            job.id, 1, "dead", now, error="LookupError: Order 1234 not found", actor_name="send_confirmation_email"
        ),
    ]

    with CaptureQueriesContext(connection) as queries:
        write(events)

    job.refresh_from_db()
    assert job.error_fingerprint == fingerprint("send_confirmation_email", "LookupError: Order 9 not found")
    updates = [q["sql"] for q in queries.captured_queries if "UPDATE" in q["sql"]]
    assert len(updates) == 1 and "last_error" in updates[0] and "error_fingerprint" in updates[0]


@jobs.actor(max_retries=0, time_limit=5_000)
def order_lookup(order_id: int) -> None:
    raise LookupError(f"Order {order_id} not found")


@pytest.mark.django_db(transaction=True)
def test_jobs_that_die_of_the_same_error_with_different_ids_are_one_group(stub_broker, stub_worker):
    for order_id in (1234, 5678, 91011):
        jobs.enqueue(order_lookup, order_id)
    drain(stub_broker, stub_worker)

    [group] = dlq.with_examples(dlq.groups())
    assert group.count == 3
    assert (group.signature.actor_name, group.signature.exception, group.signature.message) == (
        "order_lookup",
        "LookupError",
        "Order <num> not found",
    )


def test_the_page_shows_each_group_once_with_count_first_last_seen_and_an_example(operator):
    early = timezone.now() - timedelta(hours=2)
    first = dead("LookupError: Order 1234 not found")
    Job.objects.filter(pk=first.pk).update(finished_at=early)
    latest = dead("LookupError: Order 5678 not found")
    dead("KeyError: Order 1234 not found")  # another exception class: another group
    dead("LookupError: Order 1234 not found", actor="update_inventory")  # another actor: another group

    page = logged_in(operator).get(PAGE).content.decode()

    rows = re.findall(r'<tr data-actor="([^"]*)" data-fingerprint="(\w*)">', page)
    assert len(rows) == 3
    assert "Order &lt;num&gt; not found" in page and "LookupError" in page
    assert "Retry 2" in page and "Discard 2…" in page
    assert f"/admin/jobs/job/{latest.pk}/change/" in page  # the example is the latest of the group
    assert "Order 5678 not found" in page
    assert "4 dead jobs in 3 groups" in page


# The rows as the page's template wrote them before jobs.admin.dead_letter_rows did.
TEMPLATE_ROW = """{% for group in groups %}{% with sig=group.signature %}
<tr data-actor="{{ sig.actor_name }}" data-fingerprint="{{ group.fingerprint }}">
<td><a href="{{ list_url }}?status__exact=dead&amp;fingerprint={{ group.fingerprint|urlencode }}"
 class="group-jobs">{{ group.count }}</a></td>
<td>{{ sig.actor_name|default:"–" }}</td>
<td>
<div class="group-signature"><strong>{{ sig.exception|default:"(no exception class)" }}</strong>
 {{ sig.message|truncatechars:300 }}</div>
{% if group.example %}<div class="group-example">e.g.
 <a href="{{ list_url }}{{ group.example.pk }}/change/">job {{ group.example.pk|stringformat:"s"|slice:":8" }}</a>:
<pre class="buzzer-pre">{{ group.example.last_error|truncatechars:400 }}</pre></div>{% endif %}
</td>
<td>{{ group.first_seen|default:"–" }}</td>
<td>{{ group.last_seen|default:"–" }}</td>
<td>{% if can_retry %}<form method="post" action="{{ retry_group_url }}"
data-confirm="Retry the {{ group.count }} dead job{{ group.count|pluralize }} of this group?">{% csrf_token %}
<input type="hidden" name="fingerprint" value="{{ group.fingerprint }}">
<input type="hidden" name="next" value="{{ request.get_full_path }}">
<button type="submit" class="buzzer-button retry-group">Retry {{ group.count }}</button>
</form>{% endif %}{% if can_discard %}<form method="post" action="{{ discard_group_url }}"
data-confirm="">{% csrf_token %}
<input type="hidden" name="fingerprint" value="{{ group.fingerprint }}">
<input type="hidden" name="next" value="{{ request.get_full_path }}">
<button type="submit" class="buzzer-button discard-group">Discard {{ group.count }}…</button>
</form>{% endif %}</td></tr>{% endwith %}{% endfor %}"""


@pytest.mark.parametrize("buttons", [True, False])
def test_rows_are_those_the_template_wrote(operator, buttons):
    from django.template import engines
    from django.test import RequestFactory
    from django.urls import reverse

    dead('ValueError: bad <b>"input"</b> & 42 ' + "x" * 500, actor="<script>x</script>")
    dead("")
    dead("Timeout: upstream", queue_name="premium")
    request = RequestFactory().get(PAGE, {"p": "1", "odd": "{}<>&"})
    request.user = operator
    groups = dlq.with_examples(dlq.groups())
    groups.append(dlq.Group(fingerprint="f" * 40, count=3, first_seen=None, last_seen=None))

    ours = "".join(jobs_admin.dead_letter_rows(request, groups, can_retry=buttons, can_discard=buttons))
    theirs = (
        engines["django"]
        .from_string(TEMPLATE_ROW)
        .render(
            {
                "groups": groups,
                "can_retry": buttons,
                "can_discard": buttons,
                "list_url": reverse("admin:jobs_job_changelist"),
                "retry_group_url": reverse("admin:jobs_job_retry_group"),
                "discard_group_url": reverse("admin:jobs_job_discard_group"),
            },
            request,
        )
    )

    def normal(page):  # whitespace between tags, the CSRF token's per-call mask, the seen times
        page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "csrf", page)
        page = re.sub(r">\s+<", "><", re.sub(r"\s+", " ", page)).strip()
        return re.sub(r"(</div></td>)<td>.*?</td><td>.*?</td>", r"\1<td>seen</td><td>seen</td>", page)

    assert normal(ours) == normal(theirs)
    assert ours.count("<tr ") == 4 and ("retry-group" in ours) == buttons
    assert "&lt;script&gt;" in ours and "<script>" not in ours
    seen = re.findall(r'<td><span title="(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+)">(\d+\xa0\w+) ago</span></td>', ours)
    assert len(seen) == 6 and all(age.endswith(("second", "seconds")) for _, age in seen)  # 3 groups with times
    assert ours.count("<td>–</td><td>–</td>") == 1  # the group without any


def test_the_page_is_paginated(operator, monkeypatch):
    monkeypatch.setattr(jobs_admin, "DEAD_LETTER_GROUPS_PER_PAGE", 2)
    for word in ("alpha", "beta", "gamma", "delta", "epsilon"):
        dead(f"ValueError: {word} broke")
    client = logged_in(operator)

    first = client.get(PAGE).content.decode()
    last = client.get(PAGE, {"p": 3}).content.decode()

    assert len(re.findall(r"<tr data-actor=", first)) == 2
    assert len(re.findall(r"<tr data-actor=", last)) == 1
    assert "page 1 of 3" in first and "?p=2" in first


def test_the_link_to_a_group_lists_exactly_its_jobs(operator):
    wanted = [dead("LookupError: Order 1 not found"), dead("LookupError: Order 2 not found")]
    other = dead("ValueError: nope")

    page = (
        logged_in(operator)
        .get("/admin/jobs/job/", {"status__exact": "dead", "fingerprint": wanted[0].error_fingerprint})
        .content.decode()
    )

    assert all(str(job.pk)[:8] in page for job in wanted)
    assert str(other.pk)[:8] not in page


def test_retry_group_resends_exactly_the_dead_jobs_of_the_group(operator, stub_broker):
    group = [dead(f"LookupError: Order {n} not found") for n in (1, 2, 3)]
    same_error_not_dead = Job.objects.create(
        actor_name="send_confirmation_email", status="succeeded", last_error="LookupError: Order 4 not found"
    )
    other = dead("ValueError: nope")
    other_actor = dead("LookupError: Order 5 not found", actor="update_inventory")

    response = logged_in(operator).post(
        "/admin/jobs/job/dead-letters/retry-group/", {"fingerprint": group[0].error_fingerprint}
    )

    assert response.status_code == 302
    assert {Job.objects.get(pk=j.pk).status for j in group} == {"pending"}  # sent after commit
    assert Job.objects.get(pk=same_error_not_dead.pk).status == "succeeded"
    assert Job.objects.get(pk=other.pk).status == "dead"
    assert Job.objects.get(pk=other_actor.pk).status == "dead"
    assert set(JobAction.objects.filter(kind="retry").values_list("job_id", flat=True)) == {j.pk for j in group}


def test_discard_group_asks_for_a_reason_then_discards_the_group_with_it(operator):
    group = [dead(f"LookupError: Order {n} not found") for n in (1, 2)]
    other = dead("ValueError: nope")
    client = logged_in(operator)
    url = "/admin/jobs/job/dead-letters/discard-group/"

    asked = client.post(url, {"fingerprint": group[0].error_fingerprint}).content.decode()
    assert 'name="reason"' in asked and "2 dead jobs" in asked
    missing = client.post(url, {"fingerprint": group[0].error_fingerprint, "confirm": "1", "reason": " "})
    assert "Say why" in missing.content.decode()
    assert {Job.objects.get(pk=j.pk).status for j in group} == {"dead"}

    done = client.post(url, {"fingerprint": group[0].error_fingerprint, "confirm": "1", "reason": "orders deleted"})

    assert done.status_code == 302
    assert {Job.objects.get(pk=j.pk).status for j in group} == {"discarded"}
    assert Job.objects.get(pk=other.pk).status == "dead"
    actions = JobAction.objects.filter(kind="discard")
    assert {(a.job_id, a.reason, a.user) for a in actions} == {(j.pk, "orders deleted", operator) for j in group}


def test_the_migration_fingerprints_dead_jobs_written_before_it():
    from importlib import import_module

    from django.apps import apps

    migration = import_module("jobs.migrations.0004_error_fingerprints_and_search")
    old = [dead(f"LookupError: Order {n} not found") for n in range(3)]
    Job.objects.update(error_fingerprint="")
    monkey_chunk, migration.CHUNK = migration.CHUNK, 2
    try:
        migration.fingerprint_dead_jobs(apps, None)
    finally:
        migration.CHUNK = monkey_chunk

    assert {Job.objects.get(pk=j.pk).error_fingerprint for j in old} == {
        fingerprint("send_confirmation_email", "LookupError: Order 0 not found")
    }


def test_an_unknown_group_retries_nothing(operator):
    dead("ValueError: nope")
    logged_in(operator).post("/admin/jobs/job/dead-letters/retry-group/", {"fingerprint": uuid.uuid4().hex})
    assert Job.objects.get().status == "dead"

"""The queue dashboard at /admin/jobs/dashboard/: staff only, everything escaped."""

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

import jobs
from jobs import charts, stats
from jobs.claims import Heartbeat
from jobs.models import Alert, QueueSample
from jobs.writer import Finished
from tests.support.outage import redis_down

pytestmark = pytest.mark.django_db

URL = "/admin/jobs/dashboard/"


@jobs.actor(max_retries=0, time_limit=1_000)
def shown(n: int) -> None:
    """Never run here: its messages only fill the queue."""


def finished(actor, status="succeeded"):
    now = timezone.now()
    return Finished(
        uuid.uuid4(), 1, status, now, actor_name=actor, queue_name="default", started_at=now - timedelta(seconds=2)
    )


def main_part(response):
    """The dashboard's own markup, without the admin's header, footer and icon sprite."""
    return response.content.decode().split('id="content-main"', 1)[1].split("<!-- END Content -->", 1)[0]


def test_staff_see_queues_workers_actors_alerts_and_charts(admin_client, real_broker):
    shown.send(1)
    shown.send(2)
    heartbeat = Heartbeat(real_broker, interval=0.05)
    time.sleep(0.2)
    heartbeat.stop()
    stats.record(real_broker.client, real_broker.namespace, [finished("shop.email"), finished("shop.email", "dead")])
    Alert.objects.create(kind="queue_rising", queue_name="default", message="Queue default has been rising")
    QueueSample.objects.create(queue_name="default", at=timezone.now() - timedelta(minutes=3), depth=7, processed=12)
    from jobs.models import Job

    mine = Job.objects.create(
        actor_name="shop.email", status="running", worker=real_broker.broker_id, started_at=timezone.now()
    )
    lost = Job.objects.create(actor_name="shop.stock", status="running", worker="w-gone", started_at=timezone.now())

    response = admin_client.get(URL)

    assert response.status_code == 200
    page = main_part(response)
    assert '<meta http-equiv="refresh" content="10">' in response.content.decode()
    assert '<tr data-queue="default"><td>default</td><td class="depth">2</td>' in page
    assert response.context["snapshot"].workers_alive == 1
    assert "alive" in page
    assert '<tr data-actor="shop.email"><td>shop.email</td><td>2</td>' in page
    assert "50.0 %" in page  # one dead out of two
    assert "Queue default has been rising" in page
    assert page.count("<svg") == 4 and '<circle cx="' in page  # one sample: a dot that shows
    assert "default: 2 now" in page  # the depth chart's legend says what the table says
    assert "<script" not in page  # inline SVG, no chart library
    busy = page.split('id="busy"', 1)[1].split("</table>", 1)[0]
    assert f">{str(mine.pk)[:8]}</a></td>" in busy and f">{str(lost.pk)[:8]}</a></td>" in busy
    assert busy.index(str(mine.pk)[:8]) < busy.index("w-gone") < busy.index(str(lost.pk)[:8])
    assert "gone" in busy
    assert 'id="busy-more"' not in page


def test_the_busy_table_lists_the_longest_running_jobs_and_links_to_the_rest(admin_client, real_broker):
    from jobs.dashboard import BUSY_LIMIT
    from jobs.models import Job

    now = timezone.now()
    Job.objects.bulk_create(
        Job(actor_name="shop.email", status="running", worker="w-1", started_at=now - timedelta(seconds=n))
        for n in range(BUSY_LIMIT + 5)
    )

    page = main_part(admin_client.get(URL))

    busy = page.split('id="busy"', 1)[1].split("</table>", 1)[0]
    assert busy.count("/change/") == BUSY_LIMIT
    oldest = Job.objects.filter(status="running").order_by("started_at").first()
    assert str(oldest.pk)[:8] in busy
    assert f"The {BUSY_LIMIT} longest-running jobs are shown" in page
    assert 'href="/admin/jobs/job/?status__exact=running">every running job</a>' in page


def test_names_and_messages_are_escaped(admin_client, real_broker, settings):
    evil = "<script>alert('x')</script>"
    settings.BUZZER_QUEUES = ["default", evil]
    stats.record(real_broker.client, real_broker.namespace, [finished(evil)])
    Alert.objects.create(kind="queue_rising", queue_name=evil, message=f"Queue {evil} is rising")
    QueueSample.objects.create(queue_name=evil, at=timezone.now() - timedelta(minutes=1), depth=3)

    response = admin_client.get(URL)

    assert response.status_code == 200
    content = response.content.decode()
    assert evil not in content
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    # queue table, actor table, alert queue and message, chart legends (4 charts)
    assert content.count(escaped) >= 8


def test_the_dashboard_is_for_staff_only(client, django_user_model):
    assert client.get(URL).status_code == 302
    django_user_model.objects.create_user("customer", password="pw-for-tests-only")
    client.login(username="customer", password="pw-for-tests-only")

    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_clear_503_when_redis_is_down(admin_client):
    with redis_down():
        started = time.monotonic()
        response = admin_client.get(URL)

    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert "Redis does not answer" in response.content.decode()


def test_charts_bucket_samples_by_minute_for_the_hour_and_by_quarter_hour_for_the_day(settings):
    settings.BUZZER_QUEUES = ["default", "premium"]
    now = timezone.now().replace(second=30, microsecond=0)
    for minutes_ago, depth, processed in [(2, 40, 30), (2, 80, 30), (1, 20, 60), (300, 5, 150)]:
        at = now - timedelta(minutes=minutes_ago)
        QueueSample.objects.create(queue_name="default", at=at, depth=depth, processed=processed)

    hour_depth, hour_rate, day_depth, day_rate = charts.build_charts(["default", "premium"], now)

    default = next(s for s in hour_depth.series if s.name == "default")
    assert len(default.segments) == 1 and len(default.segments[0].split()) == 2  # two adjacent minutes
    assert default.last == 20  # the latest minute's highest depth
    assert [g.label for g in hour_depth.gridlines] == ["0", "50", "100"]  # a round ceiling over 80
    assert next(s for s in hour_rate.series if s.name == "default").last == 60  # jobs in that minute
    assert next(s for s in day_rate.series if s.name == "default").last == pytest.approx(120 / 15)
    assert next(s for s in day_depth.series if s.name == "premium").segments == []
    assert hour_depth.empty is False and next(s for s in hour_depth.series if s.name == "premium").last is None


def test_operators_pause_and_resume_a_queue_with_permission_and_audit(client, django_user_model, real_broker):
    from django.contrib.auth.models import Permission

    from jobs import queues
    from jobs.models import JobAction

    viewer = django_user_model.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    operator = django_user_model.objects.create_user("op", password="pw-for-tests-only", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="pause_queue"))
    for user in (viewer, operator):
        user.user_permissions.add(Permission.objects.get(codename="view_job"))
    pause_url = "/admin/jobs/dashboard/queue/default/"

    client.force_login(viewer)
    assert 'action="/admin/jobs/dashboard/queue/default/"' not in client.get(URL).content.decode()
    assert client.post(pause_url, {"paused": "1"}).status_code == 403
    assert queues.paused_queues(real_broker.client, real_broker.namespace) == set()

    client.force_login(operator)
    assert 'action="/admin/jobs/dashboard/queue/default/"' in client.get(URL).content.decode()
    assert client.post(pause_url, {"paused": "1"}).status_code == 302
    assert queues.paused_queues(real_broker.client, real_broker.namespace) == {"default"}
    assert '<span class="buzzer-bad">paused</span>' in main_part(client.get(URL))
    assert client.post(pause_url, {"paused": "0"}).status_code == 302
    assert queues.paused_queues(real_broker.client, real_broker.namespace) == set()
    kinds = list(JobAction.objects.filter(subject="queue default").values_list("kind", "user__username"))
    assert kinds == [("queue_pause", "op"), ("queue_resume", "op")]
    assert client.post("/admin/jobs/dashboard/queue/nope/", {"paused": "1"}).status_code == 404
    assert client.get(pause_url).status_code == 405

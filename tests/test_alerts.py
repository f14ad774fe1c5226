"""Alerts from the queue samples: a queue rising, the dead-letter queue growing."""

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from jobs import alerts
from jobs.models import Alert, QueueSample

pytestmark = pytest.mark.django_db

STEP = timedelta(seconds=10)


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.BUZZER_QUEUES = ["default"]
    settings.BUZZER_ALERT_RISING_MINUTES = 5
    settings.BUZZER_SAMPLE_SECONDS = 5
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def samples(end, depths=None, dead=None, queue="default"):
    """One sample every STEP, the last one at `end`."""
    count = len(depths if depths is not None else dead)
    depths = depths if depths is not None else [0] * count
    dead = dead if dead is not None else [0] * count
    QueueSample.objects.bulk_create(
        QueueSample(queue_name=queue, at=end - STEP * (count - 1 - i), depth=d, dead=x)
        for i, (d, x) in enumerate(zip(depths, dead, strict=True))
    )


def window_of(values_per_step):
    """31 samples: 5 minutes at one every 10 s."""
    return [values_per_step(i) for i in range(31)]


def open_alerts(kind):
    return list(Alert.objects.filter(kind=kind, closed_at__isnull=True))


def test_a_queue_rising_through_the_window_opens_one_alert_and_mails_once(caplog):
    now = timezone.now()
    samples(now, depths=window_of(lambda i: 10 + 4 * i))

    with caplog.at_level(logging.WARNING, logger="jobs.alerts"):
        opened = alerts.check_alerts(now)
    alerts.check_alerts(now + timedelta(seconds=5))

    assert [a.kind for a in opened] == ["queue_rising"]
    [alert] = open_alerts("queue_rising")
    assert alert.queue_name == "default" and "10 → 130" in alert.message
    assert alert.notified_at is not None
    assert len(mail.outbox) == 1 and "queue_rising" in mail.outbox[0].subject
    assert "rising" in caplog.text


def test_a_backlog_that_saws_up_and_down_while_growing_alerts():
    now = timezone.now()
    # Bursts of 60 arrive and workers drain 40 before the next: troughs 0, 20, 40, ...
    samples(now, depths=window_of(lambda i: (i // 3) * 20 + (60 if i % 3 == 1 else 30 if i % 3 == 2 else 0)))

    alerts.check_alerts(now)

    assert len(open_alerts("queue_rising")) == 1


@pytest.mark.parametrize(
    "depth",
    [
        lambda i: 5000 + (i * 37) % 11,  # big and steady: size alone never alerts
        lambda i: 3 if i in (10, 29, 30) else 0,  # blips on an idle queue, even one at the end
        lambda i: max(0, 300 - 10 * i),  # draining
    ],
    ids=["big-steady", "idle-blips", "draining"],
)
def test_queues_that_do_not_keep_rising_do_not_alert(depth):
    now = timezone.now()
    samples(now, depths=window_of(depth))

    assert alerts.check_alerts(now) == []
    assert Alert.objects.count() == 0


def test_without_samples_covering_the_window_nothing_is_judged():
    now = timezone.now()
    samples(now, depths=[10 + 10 * i for i in range(12)])  # two minutes of a five-minute window

    assert alerts.check_alerts(now) == []


def test_a_rising_alert_closes_once_the_backlog_stops_growing():
    now = timezone.now()
    samples(now, depths=window_of(lambda i: 10 + 4 * i))
    alerts.check_alerts(now)

    later = now + timedelta(minutes=5)
    samples(later, depths=[130 - 4 * i for i in range(30)])  # drained over the next five minutes
    alerts.check_alerts(later)

    assert open_alerts("queue_rising") == []
    assert Alert.objects.get(kind="queue_rising").closed_at == later


def test_dead_letters_growing_since_the_previous_check_opens_an_alert():
    now = timezone.now()
    samples(now, dead=[2] * 30 + [5])

    alerts.check_alerts(now)
    samples(now + STEP, dead=[7])  # still growing: the same alert stays open
    alerts.check_alerts(now + STEP)

    [alert] = open_alerts("dlq_growing")
    assert "from 2 to 5" in alert.message
    assert len(mail.outbox) == 1


def test_the_dead_letter_alert_closes_after_a_window_without_growth():
    now = timezone.now()
    samples(now, dead=[2] * 30 + [5])
    alerts.check_alerts(now)

    quiet = now + timedelta(minutes=2)
    samples(quiet, dead=[5] * 12)
    alerts.check_alerts(quiet)
    assert len(open_alerts("dlq_growing")) == 1  # growth still inside the window

    later = now + timedelta(minutes=6)
    samples(later, dead=[5] * 24)
    alerts.check_alerts(later)
    assert open_alerts("dlq_growing") == []


def test_a_failed_mail_is_sent_at_the_next_check(monkeypatch):
    now = timezone.now()
    samples(now, depths=window_of(lambda i: 10 + 4 * i))
    real_mail_admins = alerts.mail_admins

    def smtp_down(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(alerts, "mail_admins", smtp_down)
    alerts.check_alerts(now)
    assert open_alerts("queue_rising")[0].notified_at is None

    monkeypatch.setattr(alerts, "mail_admins", real_mail_admins)
    alerts.check_alerts(now + timedelta(seconds=5))
    assert open_alerts("queue_rising")[0].notified_at is not None
    assert len(mail.outbox) == 1


def test_the_dead_letter_alert_closes_as_soon_as_the_retry_empties_them():
    now = timezone.now()
    samples(now, dead=[0] * 30 + [4])
    alerts.check_alerts(now)
    [alert] = open_alerts("dlq_growing")
    assert alert.baseline == 0 and alert.label == "Dead letters growing"

    samples(now + STEP, dead=[0])  # the operator retried the 4
    alerts.check_alerts(now + STEP)
    assert open_alerts("dlq_growing") == []


def test_a_rising_alert_closes_once_the_queue_is_empty():
    now = timezone.now()
    samples(now, depths=window_of(lambda i: i * 3))
    alerts.check_alerts(now)
    assert len(open_alerts("queue_rising")) == 1

    samples(now + STEP, depths=[0])
    alerts.check_alerts(now + STEP)
    assert open_alerts("queue_rising") == []


def test_the_dashboard_names_alerts_in_words_and_links_where_to_act(operator):
    from django.test import Client

    now = timezone.now()
    samples(now, dead=[0] * 30 + [4])
    alerts.check_alerts(now)
    client = Client()
    client.force_login(operator)
    page = client.get("/admin/jobs/dashboard/").content.decode()
    assert '<a href="/admin/jobs/job/dead-letters/">Dead letters growing</a>' in page
    assert "dlq_growing" not in page

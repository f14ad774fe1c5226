"""Alerts an operator should look at, judged from the queue samples after each one.

Queue rising (`queue_rising`): over the last BUZZER_ALERT_RISING_MINUTES, split into
three equal spans, the lowest depth of each span is strictly higher than the one before,
and the last depth is higher than the first. Judging the floor rather than the size or
every step means a big but steady queue never alerts, a queue that blips from 0 to 3
and back never alerts (its floor stays 0), while a backlog the workers never catch up
with does, even when it saws up and down as bursts arrive and get drained. It closes
when the last span's floor is no higher than the first's (the backlog stopped growing);
in between it stays as it is, so that it does not flap.

Dead letters growing (`dlq_growing`): the DLQ's count (dead Job rows of the queue) is
higher in the latest sample than in the one before. It closes once a whole window of
samples shows no growth, or as soon as the count is back where it was before it grew
(the operator retried or discarded those jobs). A queue whose depth is 0 is not rising.

Either needs samples covering the window (the scheduler may have been down): without
them nothing opens or closes. One open Alert per kind and queue; on opening it is logged
and mailed to ADMINS once (`notified_at`; a failed mail is tried again next time).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import pairwise

from django.conf import settings
from django.core.mail import mail_admins
from django.utils import timezone

from jobs.models import Alert, QueueSample

logger = logging.getLogger(__name__)

QUEUE_RISING = "queue_rising"
DLQ_GROWING = "dlq_growing"
SPANS = 3


def _window() -> timedelta:
    return timedelta(minutes=settings.BUZZER_ALERT_RISING_MINUTES)


def _covers(samples: list[QueueSample], start: datetime) -> bool:
    """Samples reach back to the start of the window (give or take two intervals)."""
    slack = timedelta(seconds=2 * settings.BUZZER_SAMPLE_SECONDS)
    return len(samples) >= SPANS and samples[0].at <= start + slack


def rising(samples: list[QueueSample], start: datetime, end: datetime) -> bool | None:
    """True when the queue's depth rose through the window, False when it did not rise
    over it, None when it is in between or the samples do not cover the window."""
    if not _covers(samples, start):
        return None
    span = (end - start) / SPANS
    floors: list[int] = []
    for index in range(SPANS):
        low, high = start + span * index, start + span * (index + 1)
        depths = [s.depth for s in samples if low <= s.at < high or (index == SPANS - 1 and s.at == high)]
        if not depths:
            return None
        floors.append(min(depths))
    if all(a < b for a, b in pairwise(floors)) and samples[-1].depth > samples[0].depth:
        return True
    if floors[-1] <= floors[0]:
        return False
    return None


def dead_letters_growing(samples: list[QueueSample], start: datetime) -> bool | None:
    """True when the last sample's dead count rose over the one before, False when no
    sample of a covered window rose, None otherwise."""
    if len(samples) >= 2 and samples[-1].dead > samples[-2].dead:
        return True
    if not _covers(samples, start):
        return None
    if any(b.dead > a.dead for a, b in pairwise(samples)):
        return None
    return False


def _open(kind: str, queue_name: str, message: str, now: datetime, baseline: int | None = None) -> Alert | None:
    if Alert.objects.filter(kind=kind, queue_name=queue_name, closed_at__isnull=True).exists():
        return None
    alert = Alert.objects.create(kind=kind, queue_name=queue_name, message=message, opened_at=now, baseline=baseline)
    logger.warning("Alert opened: %s", message)
    return alert


def _close(kind: str, queue_name: str, now: datetime) -> None:
    if Alert.objects.filter(kind=kind, queue_name=queue_name, closed_at__isnull=True).update(closed_at=now):
        logger.info("Alert closed: %s on queue %s", kind, queue_name)


def notify_pending() -> int:
    """Mail every open alert not yet mailed; returns how many were sent."""
    sent = 0
    for alert in Alert.objects.filter(closed_at__isnull=True, notified_at__isnull=True).order_by("opened_at"):
        try:
            mail_admins(f"Buzzer alert: {alert.kind} {alert.queue_name}".strip(), alert.message, fail_silently=False)
        except Exception:  # the mail server may be down: try again at the next check
            logger.exception("Mailing alert %s failed", alert.pk)
            continue
        Alert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(notified_at=timezone.now())
        sent += 1
    return sent


def check_alerts(now: datetime | None = None) -> list[Alert]:
    """Open and close alerts from the samples; returns the alerts opened now."""
    now = now or timezone.now()
    start = now - _window()
    queues = list(settings.BUZZER_QUEUES)
    opened: list[Alert] = []
    minutes = settings.BUZZER_ALERT_RISING_MINUTES
    for queue_name in queues:
        samples = list(QueueSample.objects.filter(queue_name=queue_name, at__gte=start, at__lte=now).order_by("at"))
        # The dead count is compared with the previous check, which may predate the window.
        previous = (
            QueueSample.objects.filter(queue_name=queue_name, at__lt=start).order_by("-at").first()
            if len(samples) < 2
            else None
        )
        with_previous = [previous, *samples] if previous else samples

        state = rising(samples, start, now)
        if samples and samples[-1].depth == 0:
            state = False  # an empty queue is not rising, whatever the window says
        if state:
            message = (
                f"Queue {queue_name} has been rising for {minutes} minutes: "
                f"depth {samples[0].depth} → {samples[-1].depth}."
            )
            opened.append(_open(QUEUE_RISING, queue_name, message, now))
        elif state is False:
            _close(QUEUE_RISING, queue_name, now)

        state = dead_letters_growing(with_previous, start)
        if state:
            before, after = with_previous[-2].dead, with_previous[-1].dead
            message = f"Dead-letter queue of {queue_name} grew from {before} to {after} jobs."
            opened.append(_open(DLQ_GROWING, queue_name, message, now, baseline=before))
        elif state is False:
            _close(DLQ_GROWING, queue_name, now)
        if samples:  # retried or discarded back to where it was before it grew: cleared
            Alert.objects.filter(
                kind=DLQ_GROWING, queue_name=queue_name, closed_at__isnull=True, baseline__gte=samples[-1].dead
            ).update(closed_at=now)
    # A queue taken out of BUZZER_QUEUES is no longer watched: its alerts cannot clear.
    Alert.objects.filter(closed_at__isnull=True, kind__in=(QUEUE_RISING, DLQ_GROWING)).exclude(
        queue_name__in=queues
    ).update(closed_at=now)
    notify_pending()
    return [a for a in opened if a is not None]


def open_alerts() -> list[Alert]:
    return list(Alert.objects.filter(closed_at__isnull=True).order_by("-opened_at"))

"""Outbound webhooks' business logic: endpoints, fanning an event out to them, one
delivery attempt at a time on the retry schedule, and the operator's actions.

How a delivery retries: one delivery is one job (`deliver_webhook`, on the `webhooks`
queue) and its attempts are that job's attempts, as for every other job. A failed
attempt logs its row and raises `DeliveryFailed` (a `dramatiq.Retry` carrying the
schedule's wait): the jobs backbone's own retry sends it again after that wait, and the
job is `retrying` with the error and the next attempt's time in the console. The last
attempt of the schedule that fails raises `PermanentError`: the job is dead in the DLQ
with the last status and the start of the answer; *Retry* there runs the delivery again
(its schedule afresh), *Discard* gives it up. The delivery row follows its job through
the lifecycle hooks (webhooks/tasks.py). A Resend is a job of one attempt.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import mail_admins
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

import jobs
from jobs.effects import current_attempt, current_job
from jobs.models import Job
from webhooks import registry, sender, signing
from webhooks.addresses import AddressRefused, check
from webhooks.models import Action, Attempt, Delivery, Endpoint, Event
from webhooks.slots import endpoint_slot

logger = logging.getLogger(__name__)

TEST_EVENT = "webhook.test"
USER_AGENT = "Buzzer-Webhooks/1"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Retry-After is honoured up to this long; a longer one waits only this.
MAX_RETRY_AFTER_SECONDS = 86400


class DeliveryFailed(dramatiq.Retry):
    """An attempt failed and the schedule has another one: the job retries after
    `delay` ms. The receiver's failure is the delivery's business, not a bug: Dramatiq
    logs no traceback for it (a `dramatiq.Retry`)."""


# --- the schedule ---------------------------------------------------------------------


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"Not a duration: {text!r} (e.g. 5s, 30m, 10h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def retry_schedule() -> list[float]:
    """Seconds to wait after each failed attempt; one attempt more than waits in all."""
    return [parse_duration(item) for item in settings.BUZZER_WEBHOOK_RETRY_SCHEDULE]


def max_attempts() -> int:
    return len(retry_schedule()) + 1


def may_retry(retries: int, exception: BaseException) -> bool:
    """The delivery actor's `retry_when`: a failed attempt is tried again while the
    schedule has attempts left (a receiver's failure decides this itself by raising
    `DeliveryFailed` or `PermanentError`; this bounds the surprises, such as a bug)."""
    return retries < len(retry_schedule())


def retry_delay(step: int, retry_after: float | None = None) -> float | None:
    """How long to wait after the failed attempt number `step` of the schedule (None:
    it was the last). Up to 10% of jitter so that a recovering receiver does not get
    every retry at once; a longer Retry-After is honoured."""
    schedule = retry_schedule()
    if step > len(schedule):
        return None
    delay = schedule[step - 1] * random.uniform(1.0, 1.1)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


# --- endpoints ------------------------------------------------------------------------

_wanted_cache: dict[str, Any] = {}


def forget_endpoints() -> None:
    """Drop this process's cached view of the endpoints (an endpoint was saved)."""
    _wanted_cache.clear()


def wanted(event_type: str) -> bool:
    """Whether some enabled endpoint wants `event_type`. Asked in the publisher's
    transaction at every publish, so it is answered from a per-process cache that lives
    BUZZER_WEBHOOK_ENDPOINTS_CACHE_SECONDS (saving an endpoint clears it at once in the
    process that saved it): with no endpoint, publishing costs no statement and no job."""
    now = time.monotonic()
    cached = _wanted_cache.get("filters")
    if cached is None or cached[0] < now:
        filters = [list(events) for events in Endpoint.objects.filter(enabled=True).values_list("events", flat=True)]
        cached = (now + settings.BUZZER_WEBHOOK_ENDPOINTS_CACHE_SECONDS, filters)
        _wanted_cache["filters"] = cached
    return any(not events or event_type in events for events in cached[1])


def validate_url(url: str) -> None:
    """ValidationError when `url` may not receive webhooks (checked at save time; the
    same check runs again before every attempt)."""
    try:
        check(url)
    except AddressRefused as exc:
        raise ValidationError(str(exc), code="webhook_url") from None


def validate_event_types(events: Iterable[str]) -> list[str]:
    known = set(registry.types())
    events = [e.strip() for e in events if e.strip()]
    unknown = [e for e in events if e not in known]
    if unknown:
        raise ValidationError(
            f"Unknown event type {unknown[0]!r}; known: {', '.join(sorted(known))}.", code="webhook_event"
        )
    return events


def create_endpoint(
    url: str, *, events: Iterable[str] = (), description: str = "", user: Any = None, check_url: bool = True
) -> Endpoint:
    if check_url:
        validate_url(url)
    endpoint = Endpoint(
        url=url, events=validate_event_types(events), description=description, secret=signing.new_secret()
    )
    with transaction.atomic():
        endpoint.save(force_insert=True)
        _audit(Action.Kind.CREATE, user, endpoint=endpoint)
    return endpoint


def rotate_secret(endpoint: Endpoint, *, user: Any = None) -> str:
    """A new secret; the old one keeps signing next to it for BUZZER_WEBHOOK_ROTATION_HOURS."""
    new = signing.new_secret()
    expires = timezone.now() + timedelta(hours=settings.BUZZER_WEBHOOK_ROTATION_HOURS)
    with transaction.atomic():
        Endpoint.objects.filter(pk=endpoint.pk).update(
            previous_secret=F("secret"), previous_secret_expires_at=expires, secret=new
        )
        _audit(
            Action.Kind.ROTATE, user, endpoint=endpoint, detail=f"old secret valid until {expires:%Y-%m-%d %H:%M} UTC"
        )
    endpoint.refresh_from_db()
    return new


def reveal_secret(endpoint: Endpoint, *, user: Any) -> str:
    _audit(Action.Kind.REVEAL, user, endpoint=endpoint)
    return endpoint.secret


def pause(endpoint: Endpoint, *, user: Any = None) -> bool:
    with transaction.atomic():
        changed = Endpoint.objects.filter(pk=endpoint.pk, enabled=True).update(enabled=False, disabled_reason="paused")
        if changed:
            _audit(Action.Kind.PAUSE, user, endpoint=endpoint)
    forget_endpoints()
    return bool(changed)


def resume(endpoint: Endpoint, *, user: Any = None) -> bool:
    with transaction.atomic():
        changed = Endpoint.objects.filter(pk=endpoint.pk, enabled=False).update(
            enabled=True, disabled_reason="", failing_since=None
        )
        if changed:
            _audit(Action.Kind.RESUME, user, endpoint=endpoint)
    forget_endpoints()
    return bool(changed)


def disable(endpoint_id: Any, reason: str, *, user: Any = None) -> bool:
    """Disable an endpoint (410 Gone, failing for days); the admins are mailed once:
    only the caller whose conditional update disabled it sends the mail."""
    with transaction.atomic():
        changed = Endpoint.objects.filter(pk=endpoint_id, enabled=True).update(enabled=False, disabled_reason=reason)
        if not changed:
            return False
        endpoint = Endpoint.objects.get(pk=endpoint_id)
        _audit(Action.Kind.DISABLE, user, endpoint=endpoint, detail=reason)
        transaction.on_commit(lambda: _mail_disabled(endpoint, reason))
    forget_endpoints()
    logger.warning("Webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
    return True


def _mail_disabled(endpoint: Endpoint, reason: str) -> None:
    try:
        mail_admins(
            f"Webhook endpoint disabled: {endpoint.url}",
            f"Buzzer stopped sending webhooks to {endpoint.url} ({endpoint.pk}): {reason}.\n"
            "Fix the receiver, then Resume the endpoint in the admin and resend what it missed.",
        )
    except Exception:  # the mail server may be down; the audit row and the log stay
        logger.exception("Could not mail the admins about endpoint %s", endpoint.pk)


def _audit(kind: str, user: Any, *, endpoint: Endpoint | None = None, delivery: Any = None, detail: str = "") -> None:
    Action.objects.create(
        kind=kind,
        user=user if user is not None and user.is_authenticated else None,
        endpoint=endpoint,
        delivery=delivery,
        detail=detail,
    )


# --- events ---------------------------------------------------------------------------


def fan_out(event_type: str, payload: dict[str, Any]) -> Event | None:
    """Write the event and one delivery per endpoint that wants it, each with its first
    attempt queued; the event's id is the publishing job's, so running twice writes
    nothing twice."""
    endpoints = [e for e in Endpoint.objects.filter(enabled=True) if e.wants(event_type)]
    if not endpoints:
        return None
    data = registry.document(event_type, payload)
    if data is None:
        logger.info("Webhook event %s not sent: its object is gone (%s)", event_type, payload)
        return None
    job_id = current_job()
    object_type, object_id = "", ""
    if job_id is not None:
        ref = Job.objects.filter(pk=job_id).values_list("object_type", "object_id").first()
        object_type, object_id = ref or ("", "")
    with transaction.atomic():
        event, _ = Event.objects.get_or_create(
            id=job_id or uuid.uuid4(),
            defaults={"type": event_type, "data": data, "object_type": object_type, "object_id": object_id},
        )
        deliver_to(event, endpoints)
    return event


def deliver_to(event: Event, endpoints: Iterable[Endpoint]) -> list[Delivery]:
    """A delivery of `event` to each endpoint (none twice), first attempt queued."""
    written = []
    for endpoint in endpoints:
        delivery, created = Delivery.objects.get_or_create(event=event, endpoint=endpoint)
        if created:
            _enqueue_attempt(delivery)
        written.append(delivery)
    return written


def send_test(endpoint: Endpoint, *, user: Any = None) -> Delivery:
    """A `webhook.test` event to this endpoint alone, whatever types it wants."""
    with transaction.atomic():
        event = Event.objects.create(
            type=TEST_EVENT, data={"endpoint": str(endpoint.pk), "message": "A test event from Buzzer."}
        )
        [delivery] = deliver_to(event, [endpoint])
        _audit(Action.Kind.TEST, user, endpoint=endpoint, delivery=delivery)
    return delivery


def _source(event: Event) -> models.Model | None:
    """The event's object, unsaved (only its label and id matter): its delivery jobs
    name it, so an order's admin page lists them in its job timeline."""
    if not event.object_type:
        return None
    try:
        model = apps.get_model(event.object_type)
    except (LookupError, ValueError):
        return None
    return model(pk=event.object_id)


def _enqueue_attempt(delivery: Delivery, *, manual: bool = False) -> Job:
    """The delivery's job: its attempts follow the retry schedule; a Resend (`manual`)
    is a job of one attempt outside it."""
    from webhooks.tasks import deliver_webhook

    key = f"webhook:{delivery.pk}:resend:{uuid.uuid4().hex}" if manual else f"webhook:{delivery.pk}:deliver"
    args: tuple[Any, ...] = (str(delivery.pk), True) if manual else (str(delivery.pk),)
    return jobs.enqueue(deliver_webhook, *args, key=key, obj=_source(delivery.event), event=delivery.event.type)


def delivery_jobs(delivery: Delivery) -> models.QuerySet[Job]:
    """Every job of a delivery: its scheduled attempts' job and its Resends, oldest first."""
    return Job.objects.filter(key__startswith=f"webhook:{delivery.pk}:").order_by("created_at")


# --- one attempt ----------------------------------------------------------------------


def body_of(event: Event) -> bytes:
    document = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": event.data}
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def deliver(delivery_id: str, manual: bool = False) -> None:
    """One attempt at a delivery: the next of its schedule, or with `manual` a Resend
    (one attempt outside the schedule). Returns when delivered; raises `DeliveryFailed`
    when the schedule tries again later, `PermanentError` when it is over (out of
    attempts, 410 Gone, the endpoint disabled, a Resend that failed).

    Safe to run twice: a delivered one is never sent again; a repeated attempt sends
    once more (delivery is at least once: receivers drop duplicates by `webhook-id`).
    """
    delivery = Delivery.objects.select_related("endpoint", "event").filter(pk=delivery_id).first()
    if delivery is None:
        logger.warning("Webhook delivery %s is gone; nothing to send", delivery_id)
        return
    if delivery.status == Delivery.Status.SUCCEEDED:
        logger.info("Webhook delivery %s already succeeded; not sent again", delivery_id)
        return
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        reason = f"endpoint disabled ({endpoint.disabled_reason or 'paused'})"
        Delivery.objects.filter(pk=delivery.pk).exclude(status=Delivery.Status.SUCCEEDED).update(
            status=Delivery.Status.FAILED, next_attempt_at=None, last_error=reason
        )
        raise jobs.PermanentError(f"Not sent: {reason}; resume it, then Retry this job")
    step = 0 if manual else _step(delivery)
    with endpoint_slot(endpoint.pk, failing=endpoint.failing_since is not None, waiter=str(delivery.pk)):
        started_at = timezone.now()
        outcome, address = _send(delivery)
    _record(delivery, step, started_at, outcome, address)


def _step(delivery: Delivery) -> int:
    """This attempt's place in the schedule (1 = the first): its job's attempt number,
    or, run outside a worker, one more than the scheduled attempts logged."""
    attempt = current_attempt()
    if attempt is not None:
        return attempt
    return delivery.attempt_log.filter(manual=False).count() + 1


def _send(delivery: Delivery) -> tuple[sender.Outcome, str]:
    endpoint, event = delivery.endpoint, delivery.event
    try:
        target = check(endpoint.url)
    except AddressRefused as exc:
        return sender.Outcome(status=None, latency_ms=0, error=f"refused: {exc}"), ""
    body = body_of(event)
    headers = signing.headers(endpoint.secrets(), event.webhook_id, int(time.time()), body)
    headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
    _lend_connection_back()
    outcome = sender.post(
        target,
        body,
        headers,
        connect_timeout=settings.BUZZER_WEBHOOK_CONNECT_TIMEOUT_SECONDS,
        total_timeout=settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS,
    )
    return outcome, target.address


def _lend_connection_back() -> None:
    """A pooled database connection goes back to the pool while the receiver thinks: a
    hanging receiver must not hold one of the process's few connections."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


def _record(delivery: Delivery, step: int, started_at: datetime, outcome: sender.Outcome, address: str) -> None:
    """Log the attempt and decide what follows, in one transaction (an INSERT and an
    UPDATE when it went well); then, for a failed attempt, raise what its job does next."""
    now = timezone.now()
    error = outcome.error or ("" if outcome.ok else f"HTTP {outcome.status}")
    endpoint = delivery.endpoint
    number = delivery.attempts + 1  # two deliveries of one attempt at once may log the same number
    after: dict[str, Any] = {}
    with transaction.atomic():
        Attempt.objects.create(
            delivery=delivery,
            number=number,
            manual=step == 0,
            job_id=current_job(),
            started_at=started_at,
            latency_ms=outcome.latency_ms,
            status_code=outcome.status,
            ok=outcome.ok,
            error=error,
            response=outcome.response,
            address=address,
        )
        update: dict[str, Any] = {
            "attempts": F("attempts") + 1,
            "last_status_code": outcome.status,
            "last_error": error,
        }
        if outcome.ok:
            update.update(status=Delivery.Status.SUCCEEDED, delivered_at=now, next_attempt_at=None)
            if endpoint.failing_since is not None:
                Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            if endpoint.failing_since is None:
                Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=started_at)
            after = _after_failure(delivery, step, outcome, number, error)
            update.update({k: v for k, v in after.items() if k in ("status", "next_attempt_at")})
        Delivery.objects.filter(pk=delivery.pk).exclude(status=Delivery.Status.SUCCEEDED).update(**update)
        if not outcome.ok:
            _disable_if_failing_too_long(endpoint, endpoint.failing_since or started_at, now)
    if "delay" in after:
        raise DeliveryFailed(after["why"], delay=after["delay"])
    if "why" in after:
        raise jobs.PermanentError(after["why"])


def _after_failure(delivery: Delivery, step: int, outcome: sender.Outcome, number: int, error: str) -> dict[str, Any]:
    """What a failed attempt leaves on its delivery (`status`, `next_attempt_at`) and
    tells its job: `why` it failed and, when the schedule goes on, the `delay` in ms."""
    excerpt = outcome.response[:200].replace("\n", " ")
    said = f"{error}: {excerpt}" if excerpt else error
    if outcome.status == 410:
        disable(delivery.endpoint_id, "the receiver answered 410 Gone")
        return {"status": Delivery.Status.FAILED, "next_attempt_at": None, "why": f"{said} (endpoint disabled)"}
    if step == 0:  # a Resend that failed leaves a waiting retry as it was
        waiting = delivery.status == Delivery.Status.RETRYING
        state = {} if waiting else {"status": Delivery.Status.FAILED, "next_attempt_at": None}
        return {**state, "why": f"{said} (a Resend: one attempt)"}
    delay = retry_delay(step, outcome.retry_after)
    if delay is None:
        return {
            "status": Delivery.Status.FAILED,
            "next_attempt_at": None,
            "why": f"{error} after {number} attempts" + (f": {excerpt}" if excerpt else ""),
        }
    eta = timezone.now() + timedelta(seconds=delay)
    return {
        "status": Delivery.Status.RETRYING,
        "next_attempt_at": eta,
        "why": f"{said} (attempt {step} of {max_attempts()}; next at {eta:%Y-%m-%d %H:%M:%S} UTC)",
        "delay": int(delay * 1000),
    }


def _disable_if_failing_too_long(endpoint: Endpoint, since: datetime, now: datetime) -> None:
    if endpoint.enabled and now - since >= timedelta(days=settings.BUZZER_WEBHOOK_DISABLE_AFTER_DAYS):
        disable(endpoint.pk, f"every delivery failed since {since:%Y-%m-%d %H:%M} UTC")


# --- resending ------------------------------------------------------------------------


def resend(delivery: Delivery, *, user: Any = None) -> Job:
    """One more attempt now, outside the schedule (a waiting retry stays as it is)."""
    with transaction.atomic():
        job = _enqueue_attempt(delivery, manual=True)
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SUCCEEDED).update(status=Delivery.Status.PENDING)
        _audit(Action.Kind.RESEND, user, endpoint=delivery.endpoint, delivery=delivery)
    return job


# --- the delivery follows its job (lifecycle hooks, webhooks/tasks.py) ------------------


def _delivery_of(job: Job) -> Delivery | None:
    return Delivery.objects.filter(pk=job.args[0]).first() if job.args else None


def job_gave_up(job: Job, why: str) -> None:
    """The delivery's job is dead, discarded or cancelled: the delivery has failed,
    unless it was delivered, or another of its jobs still has an attempt waiting."""
    delivery = _delivery_of(job)
    if delivery is None:
        return
    others = delivery_jobs(delivery).exclude(pk=job.pk).filter(status__in=(*Job.WAITING, Job.Status.RUNNING))
    if others.exists():
        return
    update: dict[str, Any] = {"status": Delivery.Status.FAILED, "next_attempt_at": None}
    if why:
        update["last_error"] = why
    # Only while the job is still finished: a dead hook that runs late, after an
    # operator's Retry sent the job again, must not fail the delivery on its way.
    still = models.Exists(Job.objects.filter(pk=job.pk, status__in=Job.FINISHED))
    Delivery.objects.filter(still, pk=delivery.pk).exclude(status=Delivery.Status.SUCCEEDED).update(**update)


def job_retried(job: Job) -> None:
    """An operator retried the delivery's dead job: it is on its way again."""
    delivery = _delivery_of(job)
    if delivery is not None:
        Delivery.objects.filter(pk=delivery.pk).exclude(status=Delivery.Status.SUCCEEDED).update(
            status=Delivery.Status.PENDING, next_attempt_at=None
        )


def failed_deliveries(endpoint: Endpoint, since: datetime, until: datetime) -> models.QuerySet[Delivery]:
    return Delivery.objects.filter(
        endpoint=endpoint, status=Delivery.Status.FAILED, created_at__gte=since, created_at__lt=until
    )


def resend_failed(endpoint: Endpoint, since: datetime, until: datetime, *, user: Any = None) -> int:
    """Resend every failed delivery of the endpoint created in [since, until)."""
    count = 0
    with transaction.atomic():
        for delivery in failed_deliveries(endpoint, since, until).select_related("event", "endpoint"):
            resend(delivery, user=user)
            count += 1
        _audit(
            Action.Kind.RESEND,
            user,
            endpoint=endpoint,
            detail=f"{count} failed deliveries created {since:%Y-%m-%d %H:%M} – {until:%Y-%m-%d %H:%M} UTC",
        )
    return count

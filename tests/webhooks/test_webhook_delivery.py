"""One delivery, attempt by attempt, against a real HTTP receiver on loopback (the
attempts run in the test process; tests/integration runs them on real workers)."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

import jobs
from tests.support.receiver import free_port
from tests.webhooks.helpers import delivery_job, run_next_attempt
from webhooks import services
from webhooks.models import Action, Attempt, Delivery, Endpoint

pytestmark = pytest.mark.django_db


def test_500_twice_then_200_is_one_delivered_event_with_three_attempts_and_one_webhook_id(
    endpoint, receiver, quick_schedule
):
    receiver.answer_next("500", "500")
    delivery = services.send_test(endpoint)
    for _ in range(3):
        run_next_attempt(delivery)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    assert list(delivery.attempt_log.values_list("number", "status_code", "ok")) == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    got = receiver.requests()
    assert [r.answer for r in got] == ["500", "500", "200"]
    assert {r.headers["webhook-id"] for r in got} == {delivery.event.webhook_id}
    for request in got:  # each attempt is signed afresh and verifies
        assert Webhook(endpoint.secret).verify(request.body, request.headers)["type"] == "webhook.test"


def test_a_failed_attempt_tells_its_job_to_retry_at_the_schedules_time(endpoint, receiver):
    receiver.answer_next("503")
    delivery = services.send_test(endpoint)
    before = timezone.now()
    failed = run_next_attempt(delivery)

    delivery.refresh_from_db()
    assert delivery.status == "retrying" and delivery_job(delivery).queue_name == "webhooks"
    assert isinstance(failed, services.DeliveryFailed)
    assert "HTTP 503" in str(failed) and "attempt 1 of 12" in str(failed)
    assert 5000 <= failed.delay <= 5500
    assert before + timedelta(seconds=5) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=5.5)


def test_the_schedule_spans_about_three_days():
    total = sum(services.retry_schedule())
    assert timedelta(days=2.5) < timedelta(seconds=total) < timedelta(days=3.5)
    assert services.max_attempts() == len(services.retry_schedule()) + 1
    assert services.retry_schedule()[:3] == [5, 300, 1800]


def test_a_longer_retry_after_is_honoured(endpoint, receiver):
    receiver.answer_next("429:120")
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    delivery.refresh_from_db()
    assert delivery.last_status_code == 429
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=115)


def test_out_of_attempts_the_job_is_dead_with_the_last_status_and_answer(endpoint, receiver, quick_schedule):
    receiver.default = "500"
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    run_next_attempt(delivery)
    last = run_next_attempt(delivery)
    assert isinstance(last, jobs.PermanentError) and str(last) == "HTTP 500 after 3 attempts: answer 500"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)


def test_410_gone_disables_the_endpoint_and_mails_the_admins_once(
    endpoint, receiver, settings, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    receiver.answer_next("410")
    first, second = services.send_test(endpoint), services.send_test(endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        gone = run_next_attempt(first)

    endpoint.refresh_from_db()
    first.refresh_from_db()
    assert not endpoint.enabled and "410" in endpoint.disabled_reason
    assert first.status == "failed" and isinstance(gone, jobs.PermanentError)
    assert len(mail.outbox) == 1 and endpoint.url in mail.outbox[0].subject
    assert Action.objects.filter(kind="disable", endpoint=endpoint).count() == 1

    refused = run_next_attempt(second)  # the endpoint is disabled: nothing is sent, its job is dead
    assert isinstance(refused, jobs.PermanentError) and "endpoint disabled" in str(refused)
    second.refresh_from_db()
    assert second.status == "failed" and "disabled" in second.last_error
    assert len(receiver.requests()) == 1


def test_an_endpoint_failing_for_days_is_disabled_once(
    endpoint, receiver, settings, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.BUZZER_WEBHOOK_DISABLE_AFTER_DAYS = 3
    receiver.default = "500"
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=2))
    run_next_attempt(services.send_test(endpoint))
    endpoint.refresh_from_db()
    assert endpoint.enabled  # two days: not yet

    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=3, minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        run_next_attempt(services.send_test(endpoint))
        run_next_attempt(services.send_test(endpoint))  # already disabled: no second mail
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every delivery failed since" in endpoint.disabled_reason
    assert len(mail.outbox) == 1


def test_a_success_ends_the_endpoints_failing_run(endpoint, receiver):
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=1))
    run_next_attempt(services.send_test(endpoint))
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_hanging_receiver_is_given_up_on_at_the_total_timeout(endpoint, receiver, settings):
    settings.BUZZER_WEBHOOK_TIMEOUT_SECONDS = 1.0
    receiver.answer_next("hang")
    delivery = services.send_test(endpoint)
    started = time.monotonic()
    run_next_attempt(delivery)
    assert time.monotonic() - started < 3
    attempt = Attempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and "timed out" in attempt.error and 900 <= attempt.latency_ms < 3000


def test_a_closed_connection_and_a_refused_one_are_failed_attempts(endpoint, receiver, db):
    receiver.answer_next("close")
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    closed = services.create_endpoint(f"http://127.0.0.1:{free_port()}/hooks")
    refused = services.send_test(closed)
    run_next_attempt(refused)
    delivery.refresh_from_db()
    refused.refresh_from_db()
    assert delivery.status == refused.status == "retrying"
    assert "RemoteDisconnected" in delivery.last_error or "Connection" in delivery.last_error
    assert "ConnectionRefused" in refused.last_error


def test_a_redirect_is_not_followed(endpoint, receiver):
    receiver.answer_next("302")
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("retrying", 302)
    assert len(receiver.requests()) == 1


def test_a_huge_answer_is_read_up_to_64_kb_and_logged_up_to_1_kb(endpoint, receiver):
    receiver.answer_next("big")
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    attempt = Attempt.objects.get(delivery=delivery)
    assert attempt.ok and len(attempt.response) == 1024


def test_running_an_attempt_twice_sends_a_delivered_event_once(endpoint, receiver):
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    run_next_attempt(delivery)
    assert len(receiver.requests()) == 1


def test_a_paused_endpoint_gets_nothing(endpoint, receiver):
    delivery = services.send_test(endpoint)
    services.pause(endpoint)
    run_next_attempt(delivery)
    delivery.refresh_from_db()
    assert receiver.requests() == [] and delivery.status == "failed"


def test_resend_sends_once_more_and_is_audited(endpoint, receiver, admin_user):
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    services.resend(delivery, user=admin_user)
    run_next_attempt(delivery, manual=True)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert list(delivery.attempt_log.values_list("manual", flat=True)) == [False, True]
    assert Action.objects.get(kind="resend", delivery=delivery).user == admin_user


def test_resend_failed_in_a_time_range(endpoint, receiver, quick_schedule):
    receiver.default = "500"
    deliveries = [services.send_test(endpoint) for _ in range(3)]
    for delivery in deliveries:
        for _ in range(3):
            run_next_attempt(delivery)
    Delivery.objects.filter(pk=deliveries[0].pk).update(created_at=timezone.now() - timedelta(days=2))
    receiver.default = "200"
    since, until = timezone.now() - timedelta(hours=1), timezone.now() + timedelta(minutes=1)
    assert services.resend_failed(endpoint, since, until) == 2
    for delivery in deliveries[1:]:
        run_next_attempt(delivery, manual=True)
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["failed", "succeeded", "succeeded"]


def test_after_a_rotation_both_secrets_sign_until_the_old_one_expires(endpoint, receiver):
    old = endpoint.secret
    new = services.rotate_secret(endpoint)
    run_next_attempt(services.send_test(endpoint))
    request = receiver.requests()[-1]
    assert len(request.headers["webhook-signature"].split()) == 2
    assert Webhook(old).verify(request.body, request.headers)
    assert Webhook(new).verify(request.body, request.headers)

    Endpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now())
    run_next_attempt(services.send_test(endpoint))
    request = receiver.requests()[-1]
    assert len(request.headers["webhook-signature"].split()) == 1
    assert Webhook(new).verify(request.body, request.headers)

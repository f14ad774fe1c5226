"""The webhooks console: adding an endpoint shows its secret once; pause, rotate, test,
reveal and resend are permission-checked POSTs, audited; data is escaped."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.webhooks.helpers import delivery_job, run_next_attempt
from webhooks import services
from webhooks.models import Action, Delivery, Endpoint

pytestmark = pytest.mark.django_db


def staff(client, *codenames):
    user = get_user_model().objects.create_user("staff", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="webhooks", codename__in=codenames))
    client.force_login(user)
    return user


def test_adding_an_endpoint_checks_the_url_and_shows_the_secret_once(client, receiver, settings):
    staff(client, "add_endpoint", "change_endpoint", "view_endpoint")
    add = reverse("admin:webhooks_endpoint_add")
    settings.BUZZER_WEBHOOKS_ALLOW_PRIVATE = False
    refused = client.post(add, {"url": "http://169.254.169.254/", "description": ""})
    assert refused.status_code == 200 and "not a public address" in refused.content.decode()

    settings.BUZZER_WEBHOOKS_ALLOW_PRIVATE = True
    response = client.post(add, {"url": receiver.url, "description": "mine", "events": ["order.placed"]}, follow=True)
    endpoint = Endpoint.objects.get()
    assert endpoint.events == ["order.placed"] and endpoint.secret.startswith("whsec_")
    assert endpoint.secret in response.content.decode()
    page = client.get(reverse("admin:webhooks_endpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in page  # only on Reveal, with its permission


def test_reveal_and_rotate_need_the_secret_permission(client, endpoint):
    staff(client, "change_endpoint", "view_endpoint")
    assert client.post(reverse("admin:webhooks_endpoint_reveal", args=[endpoint.pk])).status_code == 403
    assert client.post(reverse("admin:webhooks_endpoint_rotate", args=[endpoint.pk])).status_code == 403


def test_reveal_and_rotate_are_audited(client, endpoint):
    user = staff(client, "change_endpoint", "view_endpoint", "reveal_secret")
    old = endpoint.secret
    response = client.post(reverse("admin:webhooks_endpoint_reveal", args=[endpoint.pk]), follow=True)
    assert old in response.content.decode()
    client.post(reverse("admin:webhooks_endpoint_rotate", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert set(Action.objects.filter(user=user).values_list("kind", flat=True)) == {"reveal", "rotate"}


def test_actions_are_post_only(client, endpoint):
    staff(client, "change_endpoint", "view_endpoint", "reveal_secret", "resend_delivery")
    for name in ("pause", "rotate", "test", "reveal", "resend_failed"):
        assert client.get(reverse(f"admin:webhooks_endpoint_{name}", args=[endpoint.pk])).status_code == 405


def test_pause_resume_and_test_event(client, endpoint, receiver):
    staff(client, "change_endpoint", "view_endpoint")
    client.post(reverse("admin:webhooks_endpoint_pause", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    client.post(reverse("admin:webhooks_endpoint_pause", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.enabled
    client.post(reverse("admin:webhooks_endpoint_test", args=[endpoint.pk]))
    delivery = Delivery.objects.get()
    run_next_attempt(delivery)
    assert receiver.requests()[0].headers["webhook-id"] == delivery.event.webhook_id


def test_resend_needs_its_permission_and_is_audited(client, endpoint, receiver):
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    staff(client, "view_delivery")
    url = reverse("admin:webhooks_delivery_resend", args=[delivery.pk])
    assert client.post(url).status_code == 403

    client.logout()
    get_user_model().objects.all().delete()
    user = staff(client, "view_delivery", "resend_delivery")
    assert client.post(url).status_code == 302
    run_next_attempt(delivery, manual=True)
    assert len(receiver.requests()) == 2
    assert Action.objects.get(kind="resend", delivery=delivery).user == user


def test_resend_failed_in_a_range_from_the_endpoint_page(client, endpoint, receiver, quick_schedule):
    staff(client, "view_endpoint", "change_endpoint", "resend_delivery")
    Delivery.objects.create(event=services.send_test(endpoint).event, endpoint=services.create_endpoint(receiver.url))
    Delivery.objects.update(status="failed")
    response = client.post(
        reverse("admin:webhooks_endpoint_resend_failed", args=[endpoint.pk]),
        {"since": "2000-01-01 00:00", "until": "2999-01-01 00:00"},
        follow=True,
    )
    assert "Resent 1 failed deliveries" in response.content.decode()


def test_the_delivery_page_escapes_what_the_receiver_answered(client, endpoint, receiver):
    delivery = services.send_test(endpoint)
    run_next_attempt(delivery)
    delivery.attempt_log.update(response="<script>alert(1)</script>", error="<b>x</b>")
    staff(client, "view_delivery")
    page = client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    job = delivery_job(delivery)
    assert reverse("admin:jobs_job_change", args=[job.pk]) in page  # the delivery log links to its job


def test_every_webhooks_page_renders_for_a_superuser(admin_client, endpoint, receiver, products):
    from jobs.effects import set_current_job
    from jobs.models import Job
    from orders.services import place_order

    order = place_order(email="a@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242")
    set_current_job(Job.objects.get(actor_name="publish_webhook:order.placed").pk)  # as its worker would
    try:
        services.fan_out("order.placed", {"order_id": str(order.id)})
    finally:
        set_current_job(None)
    delivery = Delivery.objects.get()
    receiver.answer_next("500")
    run_next_attempt(delivery)
    pages = [
        reverse("admin:webhooks_endpoint_changelist"),
        reverse("admin:webhooks_endpoint_change", args=[endpoint.pk]),
        reverse("admin:webhooks_endpoint_add"),
        reverse("admin:webhooks_delivery_changelist"),
        reverse("admin:webhooks_delivery_change", args=[delivery.pk]),
        reverse("admin:webhooks_event_changelist"),
        reverse("admin:webhooks_event_change", args=[delivery.event_id]),
        reverse("admin:webhooks_action_changelist"),
    ]
    for page in pages:
        assert admin_client.get(page).status_code == 200, page
    # The order's page lists its delivery's job in its job timeline.
    timeline = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert timeline.count("deliver_webhook") == 1

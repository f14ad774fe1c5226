import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from jobs.models import Job
from orders.models import Order, Product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stub(stub_broker):
    return stub_broker


def checkout(client, **fields):
    data = {"email": "ada@example.com", "card": "4242424242424242", "priority": "standard", "qty-BUZ-001": "2"}
    data.update(fields)
    return client.post("/orders/", data)


def test_shop_lists_active_products_with_a_checkout_form(client, products):
    page = client.get("/").content.decode()
    assert "Buzzer" in page and "MUG-001" in page
    assert "OLD-001" not in page
    assert 'action="/orders/"' in page and "csrfmiddlewaretoken" in page


def test_checkout_redirects_to_the_order_page_in_customer_words(client, products):
    response = checkout(client)

    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.id}/"
    page = client.get(response["Location"]).content.decode()
    assert "49.80" in page
    assert 'Confirmation e-mail</span>: <span class="step-text">on its way' in page
    assert 'Your items</span>: <span class="step-text">being set aside' in page
    # No internal names for customers, and no technical table.
    for internal in ("send_confirmation_email", "update_inventory", "record_analytics", "enqueued", 'id="jobs"'):
        assert internal not in page
    # Jobs still waiting: the page polls its status (a refresh only without JavaScript).
    assert f'"/orders/{order.id}/status"' in page
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page


def test_order_status_json_speaks_to_the_customer(client, products):
    location = checkout(client)["Location"]
    Job.objects.filter(actor_name="send_confirmation_email").update(status="running")
    Job.objects.filter(actor_name="update_inventory").update(status="retrying")

    response = client.get(location + "status")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    document = response.json()
    assert document["finished"] is False
    assert document["steps"] == [
        {"key": "email", "label": "Confirmation e-mail", "state": "working", "text": "being sent"},
        {"key": "stock", "label": "Your items", "state": "delayed", "text": "delayed, we keep trying"},
    ]
    assert "jobs" not in document  # the technical view is for staff


def test_order_page_stops_polling_when_every_job_is_final(client, products):
    response = checkout(client)
    Job.objects.update(status="succeeded")

    page = client.get(response["Location"]).content.decode()

    assert 'http-equiv="refresh"' not in page and "/status" not in page
    assert "All done" in page
    assert 'Confirmation e-mail</span>: <span class="step-text">sent' in page


def test_a_dead_confirmation_email_is_never_called_done(client, products):
    response = checkout(client)
    Job.objects.update(status="succeeded")
    Job.objects.filter(actor_name="send_confirmation_email").update(status="dead")

    page = client.get(response["Location"]).content.decode()
    document = client.get(response["Location"] + "status").json()

    assert 'http-equiv="refresh"' not in page and document["finished"] is True
    assert "All done" not in page and "All jobs are finished" not in page
    assert "could not be sent — we are on it" in page
    assert "we are on it" in document["summary"]


def test_analytics_are_not_shown_to_customers_and_still_hold_the_polling(client, products):
    response = checkout(client)
    Job.objects.exclude(actor_name="record_analytics").update(status="succeeded")

    document = client.get(response["Location"] + "status").json()

    assert [step["key"] for step in document["steps"]] == ["email", "stock"]
    assert document["finished"] is False  # analytics still waiting: keep polling
    assert "All done" in document["summary"]


def test_staff_see_the_technical_table_and_job_states(client, products):
    location = checkout(client)["Location"]
    staff = get_user_model().objects.create_user("op", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_order", content_type__app_label="orders"))
    client.force_login(staff)

    page = client.get(location).content.decode()
    document = client.get(location + "status").json()

    assert 'id="jobs"' in page and "send_confirmation_email" in page
    assert sorted(job["actor"] for job in document["jobs"]) == [
        "record_analytics",
        "send_confirmation_email",
        "update_inventory",
    ]


def test_order_status_of_another_browser_is_404(client, products):
    location = checkout(client)["Location"]
    client.cookies.clear()

    assert client.get(location + "status").status_code == 404


def test_another_browser_cannot_see_the_order(client, products):
    location = checkout(client)["Location"]
    client.cookies.clear()

    assert client.get(location).status_code == 404


def test_staff_can_see_any_order(client, products):
    location = checkout(client)["Location"]
    client.cookies.clear()
    staff = get_user_model().objects.create_user("op", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_order", content_type__app_label="orders"))
    client.force_login(staff)

    assert client.get(location).status_code == 200


def test_declined_card_shows_the_reason_and_changes_nothing(client, products):
    response = checkout(client, card="4000000000000002")

    assert response.status_code == 302 and response["Location"] == "/"
    assert "The card was declined." in client.get("/").content.decode()
    assert Order.objects.count() == 0 and Job.objects.count() == 0
    assert Product.objects.get(sku="BUZ-001").stock == 1000


def test_a_refused_checkout_redirects_and_the_shop_keeps_what_was_entered(client, products):
    response = checkout(
        client,
        card="4000000000000002",
        priority="premium",
        email="grace@example.com",
        **{"qty-BUZ-001": "2", "qty-MUG-001": "3"},
    )

    assert response.status_code == 302 and response["Location"] == "/"  # a reload never re-submits
    page = client.get("/").content.decode()
    assert 'name="qty-BUZ-001" aria-label="Quantity of Buzzer" value="2"' in page
    assert 'name="qty-MUG-001" aria-label="Quantity of Mug" value="3"' in page
    assert 'name="qty-CAP-001" aria-label="Quantity of Cap" value=""' in page
    assert '<option value="4000000000000002" selected>' in page
    assert '<option value="premium" selected>' in page
    assert 'value="grace@example.com"' in page
    # Shown once: the next visit is a fresh form.
    again = client.get("/").content.decode()
    assert "The card was declined." not in again and 'value="2"' not in again


def test_out_of_stock_names_the_product_not_the_sku(client, products):
    checkout(client, **{"qty-BUZ-001": "", "qty-CAP-001": "5"})

    page = client.get("/").content.decode()
    assert "Only 3 of Cap left." in page
    assert "CAP-001 left" not in page
    assert 'aria-label="Quantity of Cap" value="5"' in page
    assert Order.objects.count() == 0


def test_a_typed_card_number_is_not_kept_in_the_session(client, products):
    checkout(client, card="5555 5555 5555 4444", **{"qty-BUZ-001": "", "qty-CAP-001": "9"})

    assert "5555" not in str(dict(client.session))


def test_empty_basket_is_refused_with_a_message(client, products):
    response = checkout(client, **{"qty-BUZ-001": ""})

    assert response.status_code == 302
    assert "at least one item" in client.get("/").content.decode()
    assert Order.objects.count() == 0


def test_non_numeric_quantity_is_refused_naming_the_product(client, products):
    response = checkout(client, **{"qty-BUZ-001": "two"})

    assert response.status_code == 302
    page = client.get("/").content.decode()
    assert "The quantity of Buzzer must be a whole number." in page
    assert 'value="two"' in page
    assert Order.objects.count() == 0


def test_negative_quantity_is_refused_naming_the_product(client, products):
    checkout(client, **{"qty-MUG-001": "-1"})

    assert "The quantity of Mug cannot be negative." in client.get("/").content.decode()
    assert Order.objects.count() == 0


def test_checkout_needs_csrf(products):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/orders/", {"email": "a@example.com", "qty-BUZ-001": "1"})
    assert response.status_code == 403
    assert Order.objects.count() == 0

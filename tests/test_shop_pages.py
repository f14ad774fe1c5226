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


def test_checkout_redirects_to_the_confirmation_page_with_the_jobs(client, products):
    response = checkout(client)

    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.id}/"
    page = client.get(response["Location"]).content.decode()
    assert "49.80" in page
    for actor in ("send_confirmation_email", "update_inventory", "record_analytics"):
        assert actor in page
    assert 'http-equiv="refresh"' in page  # jobs still waiting: the page refreshes itself


def test_confirmation_page_stops_refreshing_when_all_jobs_are_finished(client, products):
    response = checkout(client)
    Job.objects.update(status="succeeded")

    page = client.get(response["Location"]).content.decode()

    assert 'http-equiv="refresh"' not in page
    assert "All jobs are finished." in page


def test_confirmation_page_stops_refreshing_once_a_job_is_discarded(client, products):
    response = checkout(client)
    Job.objects.update(status="succeeded")
    Job.objects.filter(actor_name="send_confirmation_email").update(status="discarded")

    page = client.get(response["Location"]).content.decode()

    assert 'http-equiv="refresh"' not in page


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

    assert response.status_code == 402
    assert "The card was declined." in response.content.decode()
    assert Order.objects.count() == 0 and Job.objects.count() == 0
    assert Product.objects.get(sku="BUZ-001").stock == 1000


def test_empty_basket_is_refused_with_a_message(client, products):
    response = checkout(client, **{"qty-BUZ-001": ""})

    assert response.status_code == 422
    assert "at least one item" in response.content.decode()
    assert Order.objects.count() == 0


def test_non_numeric_quantity_is_refused(client, products):
    response = checkout(client, **{"qty-BUZ-001": "two"})
    assert response.status_code == 422
    assert Order.objects.count() == 0


def test_checkout_needs_csrf(products):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/orders/", {"email": "a@example.com", "qty-BUZ-001": "1"})
    assert response.status_code == 403
    assert Order.objects.count() == 0

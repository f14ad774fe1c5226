import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_customer_logs_in_on_the_site_and_lands_on_their_reports(django_user_model):
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    client = Client()

    assert client.get("/reports/")["Location"].startswith("/accounts/login/")
    response = client.post("/accounts/login/", {"username": "ada", "password": "pw-for-tests-only", "next": ""})

    assert response.status_code == 302 and response["Location"] == "/reports/"
    assert client.get("/reports/").status_code == 200


def test_a_wrong_password_is_refused_with_a_message(django_user_model):
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    page = Client().post("/accounts/login/", {"username": "ada", "password": "nope"}).content.decode()
    assert "didn't match" in page

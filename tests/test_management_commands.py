import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orders.models import ApiKey, Product, hash_api_key

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent():
    call_command("seed_demo", stdout=io.StringIO())
    before = list(Product.objects.values_list("sku", "stock", "price"))
    Product.objects.filter(sku="BUZ-001").update(stock=7)  # an operator's change survives a rerun
    call_command("seed_demo", stdout=io.StringIO())

    assert len(before) == 6
    assert Product.objects.count() == 6
    assert Product.objects.get(sku="BUZ-001").stock == 7


def test_create_api_key_prints_a_key_that_authenticates():
    out = io.StringIO()
    call_command("create_api_key", "mobile", stdout=out)
    raw = out.getvalue().strip()

    key = ApiKey.objects.get(name="mobile")
    assert key.key_hash == hash_api_key(raw)


def test_ensure_demo_admin_creates_once_and_respects_a_changed_password(monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "s3cret-demo-pass")
    out = io.StringIO()
    call_command("ensure_demo_admin", stdout=out)
    assert "s3cret-demo-pass" in out.getvalue()
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password("s3cret-demo-pass")

    user.set_password("changed-by-operator")
    user.save()
    out = io.StringIO()
    call_command("ensure_demo_admin", stdout=out)
    assert "left alone" in out.getvalue()
    assert get_user_model().objects.count() == 1


def test_models_and_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()

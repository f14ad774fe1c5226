"""An order whose write lost the database: the COMMIT may or may not have happened, so the
charge is neither refunded at once nor kept blindly. `settle_charge` decides once the
database answers: refund when the order was not saved, keep it when it was."""

from __future__ import annotations

from typing import Any
from unittest import mock

import psycopg
import pytest
from django.db import OperationalError

from orders import payments, services
from orders.models import Order
from tests.support.stub import drain

pytestmark = pytest.mark.django_db(transaction=True)


def database_went_away(*args: Any, **kwargs: Any) -> None:
    try:
        raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
    except psycopg.OperationalError as exc:
        raise OperationalError(str(exc)) from exc


@pytest.fixture
def refunds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []
    monkeypatch.setattr(payments.FakeGateway, "refund", lambda self, charge: made.append(charge))
    return made


def place() -> Order:
    return services.place_order(
        email="ada@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
    )


def test_an_order_never_saved_is_refunded_by_the_settling_job(products, refunds, stub_broker, stub_worker, monkeypatch):
    monkeypatch.setattr(services, "SETTLE_DELAY_MS", 1_000)  # production's 5 s, shortened: still a delayed job
    with (
        mock.patch("jobs.services.PreparedJobs.write", side_effect=database_went_away),
        pytest.raises(OperationalError),
    ):
        place()

    assert refunds == []  # not at once: the COMMIT's fate is unknown
    assert not Order.objects.exists()
    drain(stub_broker, stub_worker)

    assert [charge.amount for charge in refunds] == [products["BUZ-001"].price]
    drain(stub_broker, stub_worker)
    assert len(refunds) == 1


def test_an_order_that_was_saved_after_all_keeps_its_charge(products, refunds):
    order = place()

    assert services.settle_charge(str(order.id), order.payment_reference, str(order.total)) is False
    assert refunds == []


def test_a_refund_is_made_once_however_often_the_settling_job_runs(db, refunds):
    assert services.settle_charge("7f0c4d6e-0000-4000-8000-000000000000", "ch_x", "24.90") is True
    assert services.settle_charge("7f0c4d6e-0000-4000-8000-000000000000", "ch_x", "24.90") is False
    assert len(refunds) == 1


def test_an_ordinary_failure_is_refunded_at_once(products, refunds):
    with mock.patch("jobs.services.PreparedJobs.write", side_effect=RuntimeError("bug")), pytest.raises(RuntimeError):
        place()

    assert len(refunds) == 1

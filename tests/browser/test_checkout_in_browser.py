"""A customer in a real browser: the shop, the checkout form, and the order page
following its jobs on a real `rundramatiq` worker, in place, until they are done."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from orders.models import Order
from tests.support import email
from tests.support.workers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SCREENSHOT = ROOT / "var" / "screenshots" / "order.png"


def test_an_order_placed_in_the_browser_follows_its_jobs_in_place(
    live_server: Any, page: Page, worker_factory: Callable[..., Any]
) -> None:
    call_command("seed_demo", stdout=io.StringIO())

    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Products")).to_be_visible()
    page.get_by_label("Quantity of Restaurant buzzer").fill("2")
    page.get_by_label("Quantity of Buzzer mug").fill("1")
    page.get_by_label("Email", exact=True).fill("ada@example.com")
    page.get_by_role("button", name="Place order").click()

    page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+/$"))
    order = Order.objects.get()
    assert page.url == f"{live_server.url}/orders/{order.id}/"
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Order {str(order.id)[:8]} is placed")
    expect(page.get_by_text("Paid 62.30")).to_be_visible()
    expect(page.get_by_text("a confirmation goes to ada@example.com")).to_be_visible()
    steps = page.locator("#steps li")
    expect(steps).to_have_count(2)
    # No worker yet: the jobs wait in Redis; the page polls its status JSON, in place.
    expect(page.locator("#steps li[data-step='email']")).to_have_text("Confirmation e-mail: on its way")
    expect(page.locator("#jobs")).to_have_count(0)  # the technical table is for staff
    page.evaluate("window.samePage = true")

    worker_factory(processes=1, threads=4)
    expect(page.locator("#order-progress[data-finished='true']")).to_have_count(1, timeout=60_000)
    assert page.evaluate("window.samePage") is True  # updated in place, never reloaded
    assert steps.all_inner_texts() == ["Confirmation e-mail: sent", "Your items: set aside for you"]
    expect(page.locator("#order-summary")).to_contain_text("All done")
    page_text = page.locator("main").inner_text()
    for internal in ("send_confirmation_email", "update_inventory", "record_analytics", "succeeded"):
        assert internal not in page_text
    assert [m["to"] for m in email.sent()] == [["ada@example.com"]]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)  # for the README, not asserted

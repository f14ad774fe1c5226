"""The customer pages in a real browser: a refused checkout keeps the form and a reload
never re-submits it; no page scrolls sideways on a phone (390 px) or a laptop (1366 px);
the favicon loads; /api/docs/ renders the operations of /api/openapi.json."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import Browser, Page, expect

from orders.models import Order
from reports import services as report_services
from reports.models import Report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = [390, 1366]
SCROLLING_BOXES = """Array.from(document.querySelectorAll("main *"))
  .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== "visible")
  .map(e => e.tagName + "." + e.className + ":" + e.scrollWidth)"""


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))


def place_order(page: Page, base: str) -> str:
    page.goto(f"{base}/")
    page.get_by_label("Quantity of Restaurant buzzer").fill("2")
    page.get_by_label("Email", exact=True).fill("a-rather-long-address.for-phones@example.com")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+/$"))
    return page.url


def test_a_refused_checkout_keeps_the_form_and_a_reload_does_not_resubmit(live_server: Any, page: Page) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    page.goto(f"{live_server.url}/")
    page.get_by_label("Quantity of Buzzer cap").fill("9")
    page.get_by_label("Quantity of Sticker pack").fill("3")
    page.get_by_label("Email", exact=True).fill("ada@example.com")
    page.get_by_label("Card").select_option("4000000000000002")
    page.get_by_label("Priority").select_option("premium")
    page.get_by_role("button", name="Place order").click()

    expect(page.get_by_role("alert")).to_have_text("Only 8 of Buzzer cap left.")
    assert page.url == f"{live_server.url}/"
    expect(page.get_by_label("Quantity of Buzzer cap")).to_have_value("9")
    expect(page.get_by_label("Quantity of Sticker pack")).to_have_value("3")
    expect(page.get_by_label("Email", exact=True)).to_have_value("ada@example.com")
    expect(page.get_by_label("Card")).to_have_value("4000000000000002")
    expect(page.get_by_label("Priority")).to_have_value("premium")

    page.reload()  # a GET: nothing is posted again
    expect(page.get_by_role("alert")).to_have_count(0)
    assert Order.objects.count() == 0


@pytest.mark.parametrize("width", WIDTHS)
def test_no_customer_page_scrolls_sideways(
    live_server: Any, browser: Browser, width: int, django_user_model: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("seed_demo", stdout=io.StringIO())
    user = django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    report = Report.objects.create(
        owner=user, kind="low_stock", parameters={"threshold": 1000}, fingerprint=f"low-stock-{width}"
    )
    report_services.generate_report(str(report.id))
    Report.objects.create(
        owner=user, kind="sales", parameters={"start": "2026-11-01", "end": "2026-11-30"}, fingerprint="queued"
    )
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    base = live_server.url
    try:
        pages = {"login": f"{base}/accounts/login/"}
        log_in(page, base)
        order_url = place_order(page, base)
        pages.update(
            shop=f"{base}/",
            order=order_url,
            reports=f"{base}/reports/",
            report=f"{base}/reports/{report.id}/",
        )
        too_wide = {}
        for name, url in pages.items():
            page.goto(url)
            overflow = page.evaluate("document.documentElement.scrollWidth")
            # A table's own scroller must not scroll either: everything fits.
            inner = page.evaluate(SCROLLING_BOXES)
            if overflow > width or inner:
                too_wide[name] = (overflow, inner)
        assert not too_wide, f"wider than {width} px: {too_wide}"
        # Refused checkout (the error shown above the form) fits too.
        page.goto(f"{base}/")
        page.get_by_label("Quantity of Buzzer cap").fill("99")
        page.get_by_label("Email", exact=True).fill("ada@example.com")
        page.get_by_role("button", name="Place order").click()
        expect(page.get_by_role("alert")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        context.close()


def test_the_favicon_loads(live_server: Any, page: Page) -> None:
    page.goto(f"{live_server.url}/")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href == "/static/favicon.svg"
    assert page.request.get(f"{live_server.url}{href}").status == 200
    assert page.request.get(f"{live_server.url}/favicon.ico").status == 200  # after its redirect


def test_api_docs_render_the_operations_of_the_openapi_document(live_server: Any, page: Page) -> None:
    document = Client().get("/api/openapi.json").json()
    operations = [
        (method.upper(), path, op.get("summary", ""))
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]

    page.goto(f"{live_server.url}/api/docs/")

    blocks = page.locator(".opblock")
    expect(blocks).to_have_count(len(operations), timeout=20_000)
    shown = [text.replace("\u200b", "") for text in page.locator(".opblock-summary-path").all_inner_texts()]
    for method, path, _ in operations:
        assert path in shown, (method, path)
    assert document["info"]["title"] in page.locator(".info .title").inner_text()

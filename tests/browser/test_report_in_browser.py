"""A user in a real browser requests a report, watches its progress bar move while a
real `rundramatiq` worker generates it, and downloads the CSV."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from orders.models import Product
from reports.models import Report
from tests.support.reports import csv_rows, many_items

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_report_requested_in_the_browser_shows_its_progress_and_downloads(
    live_server: Any,
    page: Page,
    worker_factory: Callable[..., Any],
    django_user_model: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")  # a customer, not staff
    buzzer = Product.objects.create(sku="BUZ-001", name="Buzzer", price="24.90", stock=1000)
    many_items(buzzer, 60, datetime(2026, 11, 5, 12, tzinfo=timezone.utc))
    # 5 rows per chunk, 300 ms each: about 4 s of work, progress written every chunk.
    worker_factory(
        processes=1,
        threads=2,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        BUZZER_REPORT_CHUNK_SIZE="5",
        BUZZER_REPORT_CHUNK_DELAY_MS="300",
        BUZZER_REPORT_PROGRESS_SECONDS="0.1",
    )

    page.goto(f"{live_server.url}/reports/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/reports/$"))
    form = page.locator("#request-orders")
    form.get_by_label("From").fill("2026-11-05")
    form.get_by_label("To (included)").fill("2026-11-05")
    form.get_by_role("button", name="Generate").click()

    page.wait_for_url(re.compile(r"/reports/[0-9a-f-]+/$"))
    assert Report.objects.get().status != "succeeded"  # the page came back before the work was done
    bar = page.get_by_role("progressbar")
    seen, lines = set(), set()
    deadline = time.monotonic() + 60
    while page.locator("#report").get_attribute("data-status") != "succeeded":
        assert time.monotonic() < deadline, f"no success after 60 s; progress seen: {sorted(seen)}"
        seen.add(int(bar.get_attribute("aria-valuenow")))
        lines.add(page.locator("#report-detail").inner_text())
        page.wait_for_timeout(100)
    assert any(0 < value < 100 for value in seen), sorted(seen)  # it moved on the way
    assert not any(line.startswith("0 ") for line in lines), lines  # never "0 rows." under an empty bar
    assert "0 reports ahead of this one." not in lines
    live = page.locator("#report-detail").inner_text()
    assert re.fullmatch(r"60 rows, [0-9.]+ (bytes|KB)\.", live), live
    expect(page.locator("#report-status")).to_have_text("ready")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    assert bar.locator(".progress-bar").evaluate("bar => bar.style.width") == "100%"
    expect(page.locator("#report-cancel")).to_have_count(0)
    expect(page.locator("meta[http-equiv='refresh']")).to_have_count(0)

    page.reload()
    expect(page.locator("#report-detail")).to_have_text(live)  # the same words after a reload

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the CSV").click()
    download = info.value
    rows = csv_rows(Path(download.path()).read_bytes())
    assert len(rows) == 61
    assert {row[4] for row in rows[1:]} == {"BUZ-001"}
    assert download.suggested_filename == "orders-2026-11-05-to-2026-11-05.csv"


def test_a_cancelled_report_keeps_no_bar(live_server: Any, page: Page, django_user_model: Any) -> None:
    django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    page.goto(f"{live_server.url}/reports/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests-only")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/reports/$"))
    form = page.locator("#request-sales")
    form.get_by_role("button", name="Last month").click()
    form.get_by_role("button", name="Generate").click()  # no worker: it stays queued
    page.wait_for_url(re.compile(r"/reports/[0-9a-f-]+/$"))
    expect(page.locator("#report-detail")).to_have_text("Next in line: it starts as soon as a worker is free.")
    report = Report.objects.get()
    Report.objects.filter(pk=report.pk).update(status="running", progress=40, rows_done=40, total_rows=100)
    expect(page.locator("#report-progress")).to_have_attribute("aria-valuenow", "40")

    page.get_by_role("button", name="Cancel").click()

    expect(page.locator("#report-status")).to_have_text("cancelled")
    expect(page.get_by_role("progressbar")).to_be_hidden()
    expect(page.get_by_text("The report is cancelled.")).to_be_visible()

"""The report pages speak to people: date defaults and presets, the threshold's value,
titles instead of slugs, download links in the list, and a status line that makes sense
in every state (next in line, counting rows, running, done, cancelled)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from reports.kinds.base import date_presets
from reports.models import Report
from tests.support.reports import new_report

pytestmark = pytest.mark.django_db


def status(client: Client, report: Report) -> dict[str, Any]:
    return client.get(f"/reports/{report.id}/status").json()


def test_date_forms_start_on_the_last_7_days_and_offer_presets(user_client: Client) -> None:
    today = timezone.localdate()

    page = user_client.get("/reports/").content.decode()

    week_ago = (today - dt.timedelta(days=6)).isoformat()
    assert f'name="start" value="{week_ago}"' in page
    assert f'name="end" value="{today.isoformat()}"' in page
    for label in ("Last 7 days", "Last month", "This year"):
        assert f">{label}</button>" in page


def test_presets_cover_whole_calendar_ranges() -> None:
    presets = {label: (start, end) for label, start, end in date_presets(dt.date(2026, 3, 15))}

    assert presets["Last 7 days"] == (dt.date(2026, 3, 9), dt.date(2026, 3, 15))
    assert presets["Last month"] == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert presets["This year"] == (dt.date(2026, 1, 1), dt.date(2026, 3, 15))
    assert date_presets(dt.date(2027, 1, 10))[1][1:] == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


def test_the_low_stock_form_says_the_shops_threshold(user_client: Client, settings: Any) -> None:
    settings.LOW_STOCK_THRESHOLD = 7

    page = user_client.get("/reports/").content.decode()

    assert "Empty: the shop&#x27;s threshold, 7 units." in page
    assert 'placeholder="7"' in page


def test_the_list_shows_titles_and_download_links(user_client: Client, user: Any, finished: Report) -> None:
    waiting = new_report(user, "low_stock", threshold=3)

    page = user_client.get("/reports/").content.decode()
    table = page[page.index('id="reports"') :]

    assert "Low stock" in table and ">low_stock<" not in table
    assert f'href="/reports/{finished.id}/download"' in table
    assert f'href="/reports/{waiting.id}/download"' not in table
    assert "Stock under 100" in table
    assert re.search(r">ready<", table) and re.search(r">waiting<", table)


def test_a_queued_report_next_in_line_says_so_without_an_estimate(user_client: Client, user: Any) -> None:
    report = new_report(user, "low_stock", threshold=3)

    document = status(user_client, report)

    assert document["queue_position"] == 0
    assert document["eta_seconds"] is None
    assert document["detail"] == "Next in line: it starts as soon as a worker is free."
    assert document["bar"] == "waiting"
    assert "0 reports ahead" not in user_client.get(f"/reports/{report.id}/").content.decode()


def test_a_queued_report_behind_others_counts_them(user_client: Client, user: Any, other_user: Any) -> None:
    new_report(other_user, "low_stock", threshold=3)
    new_report(other_user, "low_stock", threshold=4)
    report = new_report(user, "low_stock", threshold=5)

    assert status(user_client, report)["detail"].startswith("2 reports ahead of this one.")


def test_a_running_report_counting_its_rows_shows_an_indeterminate_bar(user_client: Client, user: Any) -> None:
    report = new_report(user, "sales", start="2026-11-01", end="2026-11-30")
    Report.objects.filter(pk=report.pk).update(status="running", started_at=timezone.now())

    document = status(user_client, report)
    page = user_client.get(f"/reports/{report.id}/").content.decode()

    assert document["bar"] == "counting"
    assert document["detail"] == "Counting the rows…"
    assert "0 rows" not in page and 'data-bar="counting"' in page


def test_a_running_report_before_its_first_rows_says_how_many_are_coming(user_client: Client, user: Any) -> None:
    report = new_report(user, "sales", start="2026-11-01", end="2026-11-30")
    Report.objects.filter(pk=report.pk).update(status="running", started_at=timezone.now(), total_rows=12000)

    document = status(user_client, report)

    assert document["bar"] == "counting"
    assert document["detail"] == "Starting on about 12,000 rows…"


def test_a_running_report_with_known_rows_shows_them(user_client: Client, user: Any) -> None:
    report = new_report(user, "sales", start="2026-11-01", end="2026-11-30")
    Report.objects.filter(pk=report.pk).update(
        status="running", started_at=timezone.now(), total_rows=12000, rows_done=3000, progress=25
    )

    document = status(user_client, report)

    assert document["bar"] == "progress"
    assert document["detail"].startswith("3,000 of about 12,000 rows.")


def test_the_file_size_reads_the_same_live_and_after_reload(user_client: Client, finished: Report) -> None:
    Report.objects.filter(pk=finished.pk).update(file_size=27975, row_count=812)

    document = status(user_client, finished)
    page = user_client.get(f"/reports/{finished.id}/").content.decode()

    assert document["file_size_text"] == "27.3 KB"
    assert document["detail"] == "812 rows, 27.3 KB."
    assert "812 rows, 27.3 KB." in page
    assert "bytes" not in document["detail"]
    assert document["bar"] == "done"


def test_a_cancelled_report_shows_no_bar(user_client: Client, user: Any) -> None:
    report = new_report(user, "sales", start="2026-11-01", end="2026-11-30")
    Report.objects.filter(pk=report.pk).update(status="cancelled", progress=40, rows_done=40, total_rows=100)

    document = status(user_client, report)
    page = user_client.get(f"/reports/{report.id}/").content.decode()

    assert document["bar"] == "none"
    assert re.search(r'id="report-progress" data-bar="none"[^>]* hidden>', page)
    assert document["status_text"] == "cancelled"

"""Reports end to end: the pages in this process, the generation on a real
`rundramatiq` worker over real Redis."""

import time
from datetime import datetime, timezone

import pytest
from django.test import Client

from orders.models import Product
from reports.models import Report
from tests.support.reports import csv_rows, many_items
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DAY = "2026-11-05"


@pytest.fixture
def media(settings, tmp_path):
    """One media directory for this process and the worker, never the one of `make run`."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return str(settings.MEDIA_ROOT)


@pytest.fixture
def logged_in(django_user_model):
    user = django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def buzzer(db):
    return Product.objects.create(sku="BUZ-001", name="Buzzer", price="24.90", stock=1000)


def add_items(product, count):
    many_items(product, count, datetime(2026, 11, 5, 12, tzinfo=timezone.utc))


def test_a_report_requested_on_the_page_is_generated_by_a_worker_and_downloaded(
    logged_in, buzzer, worker_factory, media
):
    add_items(buzzer, 250)
    worker_factory(processes=1, threads=2, MEDIA_ROOT=media)

    response = logged_in.post("/reports/", {"kind": "orders", "start": DAY, "end": DAY})
    assert response.status_code == 302
    status_url = response["Location"] + "status"

    def finished():
        status = logged_in.get(status_url).json()
        return status if status["finished"] else None

    status = wait_until(finished, timeout=60, interval=0.5, what="the report to finish")
    assert status["status"] == "succeeded", status
    assert (status["progress"], status["row_count"]) == (100, 250)
    download = logged_in.get(status["download_url"])
    rows = csv_rows(b"".join(download.streaming_content))
    assert rows[0][:5] == ["order", "placed_at", "email", "priority", "sku"]
    assert len(rows) == 251
    assert {row[4] for row in rows[1:]} == {"BUZ-001"}


def test_a_running_report_is_cancelled_from_its_page(logged_in, buzzer, worker_factory, media):
    add_items(buzzer, 200)
    # 10 rows per chunk and 200 ms per chunk: 4 s of work, slow enough to cancel midway.
    worker_factory(
        processes=1,
        threads=2,
        MEDIA_ROOT=media,
        BUZZER_REPORT_CHUNK_SIZE="10",
        BUZZER_REPORT_CHUNK_DELAY_MS="200",
        BUZZER_REPORT_PROGRESS_SECONDS="0.2",
    )
    detail = logged_in.post("/reports/", {"kind": "orders", "start": DAY, "end": DAY})["Location"]
    report = Report.objects.get()

    try:
        wait_until(lambda: logged_in.get(detail + "status").json()["rows_done"] > 0, timeout=30, what="progress")
    except AssertionError:
        report.refresh_from_db()
        raise AssertionError(f"no progress: {report.status} {report.attempts} {report.error!r}") from None
    logged_in.post(detail + "cancel")
    time.sleep(1)  # past the worker's next checkpoint

    report.refresh_from_db()
    assert report.status == "cancelled"
    assert 0 < report.rows_done < 200
    assert not report.file
    status = logged_in.get(detail + "status").json()
    assert (status["finished"], status["download_url"]) == (True, None)

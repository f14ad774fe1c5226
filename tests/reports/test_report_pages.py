"""The report pages: request, status page, status JSON, cancel, download; each user
sees only their own reports (staff too get 404 here), and nothing is cached."""

import re

import pytest
from django.test import Client

from jobs.models import Job
from reports.models import Report
from tests.support.reports import csv_rows, new_report

pytestmark = pytest.mark.django_db

SALES = {"kind": "sales", "start": "2026-11-01", "end": "2026-11-30"}


def test_pages_need_a_login(client):
    response = client.get("/reports/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_list_shows_a_form_per_kind_and_the_users_reports_newest_first(user_client, user, other_user):
    older = new_report(user, "low_stock", threshold=3)
    newer = new_report(user, "low_stock", threshold=4)
    new_report(other_user, "low_stock", threshold=5)

    page = user_client.get("/reports/").content.decode()

    for kind in ("sales", "orders", "low_stock"):
        assert f'id="request-{kind}"' in page
    links = re.findall(r'href="/reports/([0-9a-f-]+)/"', page)
    assert links == [str(newer.id), str(older.id)]


def test_posting_the_form_creates_the_report_and_its_job_and_redirects_to_it(user_client, user):
    response = user_client.post("/reports/", SALES)

    report = Report.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/reports/{report.id}/"
    assert (report.owner, report.kind, report.status) == (user, "sales", "queued")
    assert report.parameters == {"start": "2026-11-01", "end": "2026-11-30"}
    job = Job.objects.get()
    assert (job.actor_name, job.args, job.object_id) == ("generate_report", [str(report.id)], str(report.id))


def test_the_status_page_polls_while_waiting_and_refreshes_without_javascript(user_client, user):
    report = new_report(user, "low_stock", threshold=3)

    page = user_client.get(f"/reports/{report.id}/").content.decode()

    assert f'"/reports/{report.id}/status"' in page
    assert "setTimeout(poll" in page
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert 'aria-valuenow="0"' in page
    assert 'id="report-cancel"' in page


def test_the_status_json_tells_the_queue_position(user_client, user, other_user):
    new_report(other_user, "low_stock", threshold=3)  # requested earlier, by somebody else
    mine = new_report(user, "low_stock", threshold=3)

    status = user_client.get(f"/reports/{mine.id}/status").json()

    assert status["status"] == "queued"
    assert status["queue_position"] == 1
    assert (status["progress"], status["rows_done"], status["download_url"]) == (0, 0, None)
    assert status["finished"] is False


def test_a_finished_report_page_offers_the_download_and_stops_polling(user_client, finished):
    page = user_client.get(f"/reports/{finished.id}/").content.decode()
    status = user_client.get(f"/reports/{finished.id}/status").json()

    assert f'href="/reports/{finished.id}/download"' in page
    assert "http-equiv" not in page
    assert "setTimeout(poll" not in page
    assert 'id="report-cancel"' not in page
    assert status["download_url"] == f"/reports/{finished.id}/download"
    assert (status["status"], status["progress"], status["row_count"]) == ("succeeded", 100, 1)


def test_the_download_streams_the_csv_as_an_attachment(user_client, finished):
    response = user_client.get(f"/reports/{finished.id}/download")

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith("attachment;")
    assert csv_rows(b"".join(response.streaming_content)) == [
        ["sku", "product", "stock", "price"],
        ["CAP-001", "Cap", "3", "15.00"],
    ]


def test_a_report_without_a_file_has_no_download(user_client, user):
    report = new_report(user, "low_stock", threshold=3)

    assert user_client.get(f"/reports/{report.id}/download").status_code == 404


@pytest.mark.parametrize("suffix", ["", "status", "download"])
def test_another_user_gets_404(client, other_user, finished, suffix):
    client.force_login(other_user)

    assert client.get(f"/reports/{finished.id}/{suffix}").status_code == 404
    assert client.post(f"/reports/{finished.id}/cancel").status_code == 404


@pytest.mark.parametrize("suffix", ["", "status", "download"])
def test_staff_get_404_on_somebody_elses_report_too(client, staff_user, finished, suffix):
    client.force_login(staff_user)

    assert client.get(f"/reports/{finished.id}/{suffix}").status_code == 404


@pytest.mark.parametrize("suffix", ["", "status", "download"])
def test_status_and_download_are_never_cached(user_client, finished, suffix):
    response = user_client.get(f"/reports/{finished.id}/{suffix}")

    assert response.status_code == 200
    assert set(response["Cache-Control"].replace(" ", "").split(",")) == {"private", "no-store"}


def test_cancel_stops_a_queued_report(user_client, user):
    report = new_report(user, "low_stock", threshold=3)

    response = user_client.post(f"/reports/{report.id}/cancel", follow=True)

    assert Report.objects.get(pk=report.pk).status == "cancelled"
    assert "The report is cancelled." in response.content.decode()
    assert user_client.get(f"/reports/{report.id}/status").json()["finished"] is True


def test_cancel_needs_a_csrf_token(user, finished):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    report = new_report(user, "low_stock", threshold=9)

    assert client.post(f"/reports/{report.id}/cancel").status_code == 403
    assert Report.objects.get(pk=report.pk).status == "queued"


def test_cancel_of_a_finished_report_changes_nothing(user_client, finished):
    response = user_client.post(f"/reports/{finished.id}/cancel", follow=True)

    assert Report.objects.get(pk=finished.pk).status == "succeeded"
    assert "The report is already finished: nothing to cancel." in response.content.decode()


def test_a_failed_report_shows_its_reason(user_client, user):
    report = new_report(user, "low_stock", threshold=3)
    Report.objects.filter(pk=report.pk).update(status="failed", error="OSError: disk full")

    page = user_client.get(f"/reports/{report.id}/").content.decode()

    assert "The report could not be generated." in page
    assert "OSError: disk full" in page

"""The reports JSON API: 202 and a status URL, the status document, the file; a key
sees only its own reports; bad input is a JSON error and creates nothing."""

import pytest

from jobs.models import Job
from orders.models import ApiKey
from reports.models import Report
from tests.support.reports import csv_rows

pytestmark = pytest.mark.django_db

BODY = {"kind": "low_stock", "parameters": {"threshold": 20}}


def test_a_request_is_accepted_with_its_status_url(api):
    response = api.post("/api/reports/", BODY)

    report = Report.objects.get()
    assert response.status_code == 202
    assert response["Location"] == f"/api/reports/{report.id}/"
    doc = response.json()
    assert (doc["id"], doc["status"], doc["kind"], doc["parameters"]) == (
        str(report.id),
        "queued",
        "low_stock",
        {"threshold": 20},
    )
    assert report.owner is None
    assert report.api_key == ApiKey.objects.get()
    assert Job.objects.get().args == [str(report.id)]


def test_the_status_and_the_file_follow_the_report(api, products):
    from reports import services

    report_id = api.post("/api/reports/", BODY).json()["id"]
    services.generate_report(report_id)

    doc = api.get(f"/api/reports/{report_id}/").json()
    download = api.get(doc["download_url"])

    assert (doc["status"], doc["row_count"]) == ("succeeded", 1)
    assert doc["download_url"] == f"/api/reports/{report_id}/download"
    assert csv_rows(b"".join(download.streaming_content))[1] == ["CAP-001", "Cap", "3", "15.00"]
    assert "no-store" in download["Cache-Control"]


def test_an_identical_request_returns_the_report_in_progress(api):
    first = api.post("/api/reports/", BODY).json()
    again = api.post("/api/reports/", BODY)

    assert again.status_code == 202
    assert again.json()["id"] == first["id"]
    assert Report.objects.count() == 1


def test_over_the_limit_answers_429_with_retry_after(api, settings):
    settings.BUZZER_REPORTS_PER_USER = 1
    api.post("/api/reports/", BODY)

    response = api.post("/api/reports/", {"kind": "low_stock", "parameters": {"threshold": 30}})

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_reports"
    assert int(response["Retry-After"]) > 0
    assert Report.objects.count() == 1


def test_another_key_gets_404(api, client):
    report_id = api.post("/api/reports/", BODY).json()["id"]
    _, other = ApiKey.issue("other")

    response = client.get(f"/api/reports/{report_id}/", headers={"Authorization": f"Bearer {other}"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_without_a_key_it_is_401(api):
    assert api.post("/api/reports/", BODY, key=None).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ([1, 2], 400, "malformed_json"),
        ({"kind": "payroll"}, 422, "unknown_kind"),
        ({"kind": 7}, 422, "unknown_kind"),
        ({"kind": "sales", "parameters": {"start": "2026-11-05", "end": "2026-11-01"}}, 422, "invalid_parameters"),
        ({"kind": "sales", "parameters": {"start": "5/11", "end": "2026-11-01"}}, 422, "invalid_parameters"),
        ({"kind": "sales", "parameters": "2026"}, 422, "invalid_parameters"),
    ],
)
def test_bad_input_is_a_json_error_and_creates_nothing(api, body, status, code):
    response = api.post("/api/reports/", body)

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].endswith(".")
    assert Report.objects.count() == 0
    assert Job.objects.count() == 0


def test_the_message_of_a_refused_range_names_the_problem(api):
    body = {"kind": "sales", "parameters": {"start": "2026-11-05", "end": "2026-11-01"}}

    assert api.post("/api/reports/", body).json()["error"]["message"] == "The end date is before the start date."


def test_a_body_that_is_not_json_is_415(api):
    response = api.post("/api/reports/", "kind=sales", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415

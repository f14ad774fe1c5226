"""The impatient user: an identical request returns the report in progress, and a user
may have only so many reports queued or running."""

import pytest

from jobs.models import Job
from reports import services
from reports.models import Report

pytestmark = pytest.mark.django_db

SALES = {"kind": "sales", "start": "2026-11-01", "end": "2026-11-30"}


def test_the_same_request_again_returns_the_report_in_progress(user_client):
    first = user_client.post("/reports/", SALES)
    again = user_client.post("/reports/", SALES, follow=True)

    report = Report.objects.get()
    assert first["Location"] == again.redirect_chain[0][0] == f"/reports/{report.id}/"
    assert "The same report is already in progress" in again.content.decode()
    assert Job.objects.count() == 1


def test_the_same_request_after_the_first_finished_makes_a_new_report(user_client):
    user_client.post("/reports/", SALES)
    Report.objects.update(status="succeeded")

    user_client.post("/reports/", SALES)

    assert Report.objects.count() == 2


def test_other_parameters_or_another_user_make_another_report(user, other_user):
    mine, _ = services.request_report("sales", {"start": "2026-11-01", "end": "2026-11-30"}, owner=user)
    longer, created = services.request_report("sales", {"start": "2026-11-01", "end": "2026-12-01"}, owner=user)
    theirs, created_too = services.request_report(
        "sales", {"start": "2026-11-01", "end": "2026-11-30"}, owner=other_user
    )

    assert created and created_too
    assert len({mine.id, longer.id, theirs.id}) == 3


def test_one_report_over_the_limit_is_refused_with_a_message(user_client, settings):
    settings.BUZZER_REPORTS_PER_USER = 2
    for day in ("01", "02"):
        user_client.post("/reports/", {**SALES, "start": f"2026-11-{day}"})

    response = user_client.post("/reports/", {**SALES, "start": "2026-11-03"})

    assert response.status_code == 429
    assert "You already have 2 reports queued or running." in response.content.decode()
    assert Report.objects.count() == 2


def test_finished_reports_do_not_count_against_the_limit(user_client, settings):
    settings.BUZZER_REPORTS_PER_USER = 1
    user_client.post("/reports/", SALES)
    Report.objects.update(status="cancelled")

    response = user_client.post("/reports/", {**SALES, "start": "2026-11-02"})

    assert response.status_code == 302
    assert Report.objects.filter(status="queued").count() == 1


def test_the_limit_is_per_user(user_client, other_user, settings):
    settings.BUZZER_REPORTS_PER_USER = 1
    services.request_report("low_stock", {"threshold": 3}, owner=other_user)

    assert user_client.post("/reports/", SALES).status_code == 302

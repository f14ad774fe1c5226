"""The reports admin: read-only, and what it shows is escaped."""

import pytest

from reports.models import Report
from tests.support.reports import new_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def failed(user):
    report = new_report(user, "low_stock", threshold=3)
    Report.objects.filter(pk=report.pk).update(status="failed", error="<script>alert(1)</script>")
    return report


def test_the_list_shows_reports_with_their_status(admin_client, failed):
    page = admin_client.get("/admin/reports/report/").content.decode()

    assert str(failed.id)[:8] in page
    assert '<span class="buzzer-status buzzer-status-failed">failed</span>' in page


def test_the_report_page_escapes_what_it_shows(admin_client, failed):
    page = admin_client.get(f"/admin/reports/report/{failed.id}/change/").content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


def test_reports_cannot_be_added_changed_or_deleted_there(admin_client, failed):
    assert admin_client.get("/admin/reports/report/add/").status_code == 403
    admin_client.post(f"/admin/reports/report/{failed.id}/change/", {"status": "succeeded"})
    assert admin_client.post(f"/admin/reports/report/{failed.id}/delete/", {"post": "yes"}).status_code == 403
    assert Report.objects.get(pk=failed.pk).status == "failed"

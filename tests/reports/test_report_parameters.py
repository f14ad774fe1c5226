"""Bad report parameters are refused by the form, with a message, and create nothing."""

import pytest

from jobs.models import Job
from reports import services
from reports.models import Report

pytestmark = pytest.mark.django_db

CASES = [
    ({"kind": "sales", "start": "2026-11-30", "end": "2026-11-01"}, "The end date is before the start date."),
    ({"kind": "orders", "start": "2025-01-01", "end": "2026-11-01"}, "The range may cover at most 366 days."),
    ({"kind": "sales", "start": "2026-13-45", "end": "2026-11-01"}, "Enter a valid date."),
    ({"kind": "sales", "start": "yesterday", "end": "2026-11-01"}, "Enter a valid date."),
    ({"kind": "sales", "end": "2026-11-01"}, "This field is required."),
    ({"kind": "low_stock", "threshold": "-1"}, "Ensure this value is greater than or equal to 1."),
    ({"kind": "payroll", "start": "2026-11-01", "end": "2026-11-02"}, "There is no report kind &#x27;payroll&#x27;"),
]


@pytest.mark.parametrize(("form", "message"), CASES)
def test_the_page_refuses_bad_parameters_with_a_message(user_client, form, message):
    response = user_client.post("/reports/", form)

    assert response.status_code == 422
    assert message in response.content.decode()
    assert Report.objects.count() == 0
    assert Job.objects.count() == 0


def test_the_range_limit_is_a_setting_read_at_request_time(user, settings):
    settings.BUZZER_REPORT_MAX_DAYS = 7

    with pytest.raises(services.ReportError, match="at most 7 days"):
        services.request_report("sales", {"start": "2026-11-01", "end": "2026-11-08"}, owner=user)
    report, created = services.request_report("sales", {"start": "2026-11-01", "end": "2026-11-07"}, owner=user)

    assert created
    assert Report.objects.get() == report


def test_the_refused_form_is_shown_again_with_its_values(user_client):
    page = user_client.post("/reports/", CASES[0][0]).content.decode()

    assert 'value="2026-11-30"' in page


def test_low_stock_without_a_threshold_uses_the_shops_and_stores_it(user, settings):
    settings.LOW_STOCK_THRESHOLD = 7

    report, _ = services.request_report("low_stock", {}, owner=user)

    assert report.parameters == {"threshold": 7}

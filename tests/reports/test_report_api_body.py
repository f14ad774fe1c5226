import json

import pytest
from django.test import Client

from reports.models import Report

pytestmark = pytest.mark.django_db


def test_a_report_request_body_over_16_kb_is_413_and_creates_nothing(api_key):
    body = json.dumps({"kind": "low_stock", "parameters": {}, "note": "x" * 17_000})
    response = Client().post(
        "/api/reports/", data=body, content_type="application/json", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert Report.objects.count() == 0

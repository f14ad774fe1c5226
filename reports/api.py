"""The reports JSON API: `POST /api/reports/`, `GET /api/reports/<id>/` and its download.

Authenticated like the orders API (Bearer API key). A key is not a user, so API
reports are owned by their key (`Report.api_key`), and a key sees only its own.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from orders.api import api_view, error, read_json
from orders.models import ApiKey
from reports import http, services
from reports.models import Report

MAX_BODY_BYTES = 16 * 1024


def _document(report: Report) -> dict[str, Any]:
    document = services.status_document(report, reverse("reports:api-download", args=[report.id]))
    document["status_url"] = reverse("reports:api-detail", args=[report.id])
    return document


@api_view("POST")
def create_report(request: HttpRequest, api_key: ApiKey) -> JsonResponse:
    """`{"kind": "sales", "parameters": {"start": "2026-11-01", "end": "2026-11-30"}}`:
    202 with the report and its status URL in `Location` (also when an identical report
    is still in progress: that one is returned)."""
    data, problem = read_json(request, MAX_BODY_BYTES)
    if problem is not None:
        return problem
    parameters = data.get("parameters", {})
    if not isinstance(parameters, dict):
        return error(422, "invalid_parameters", "parameters must be a JSON object.")
    try:
        report, _ = services.request_report(data.get("kind"), parameters, api_key=api_key)
    except services.ReportError as exc:
        headers = {"Retry_After": str(exc.retry_after)} if exc.retry_after else {}
        return error(exc.status, exc.code, exc.message, **headers)
    response = JsonResponse(_document(report), status=202)
    response["Location"] = reverse("reports:api-detail", args=[report.id])
    return http.private(response)


@api_view("GET")
def report_detail(request: HttpRequest, api_key: ApiKey, report_id: Any) -> JsonResponse:
    report = Report.objects.filter(pk=report_id, api_key=api_key).first()
    if report is None:
        return error(404, "not_found", "There is no such report.")
    return http.private(JsonResponse(_document(report)))


@api_view("GET")
def report_download(request: HttpRequest, api_key: ApiKey, report_id: Any) -> HttpResponse:
    report = Report.objects.filter(pk=report_id, api_key=api_key).first()
    if report is None or report.status != Report.Status.SUCCEEDED:
        return error(404, "not_found", "There is no such report with a file to download.")
    return http.download(report)

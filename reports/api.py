"""The reports JSON API: `POST /api/reports/`, `GET /api/reports/<id>/` and its download.

Authenticated like the orders API (Bearer API key). A key is not a user, so API
reports are owned by their key (`Report.api_key`), and a key sees only its own.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from orders.api import api_view, error, read_json
from orders.models import ApiKey
from reports import http, kinds, services
from reports.models import Report

MAX_BODY_BYTES = 16 * 1024


def _document(report: Report) -> dict[str, Any]:
    document = services.status_document(report, reverse("reports:api-download", args=[report.id]))
    document["status_url"] = reverse("reports:api-detail", args=[report.id])
    return document


ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _wrong_type(kind_name: Any, parameters: dict[str, Any]) -> str:
    """What is wrong with the JSON types of the parameters, or "".

    The kinds' forms parse text, as the pages post it: they would take "20" or 20.0 for a
    number, a date as "11/05/2026", and fail on a number where a date belongs. JSON says
    what it is, so the API takes numbers as numbers and dates as ISO 8601 text only (as its
    OpenAPI document says); the form then checks the values.
    """
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        return ""  # the service says which kinds there are
    for name, field in kind.form.base_fields.items():
        value = parameters.get(name)
        if value is None:
            continue  # absent or null: the form says whether it is required
        label = field.label or name
        if isinstance(field, forms.IntegerField) and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{label}: enter a whole number."
        if isinstance(field, forms.DateField) and not (isinstance(value, str) and ISO_DATE.fullmatch(value)):
            return f"{label}: enter a date as YYYY-MM-DD."
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return f"{label}: enter a value."
    return ""


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
    problem = _wrong_type(data.get("kind"), parameters)
    if problem:
        return error(422, "invalid_parameters", problem)
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
    try:
        return http.download(report)
    except Http404:  # the file is gone (deleted under it): a JSON error like any other
        return error(404, "not_found", "The report's file is gone.")

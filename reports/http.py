"""Response helpers shared by the pages and the API."""

from __future__ import annotations

import os

from django.http import FileResponse, Http404, HttpResponse
from django.utils.cache import patch_cache_control

from reports.models import Report


def private(response: HttpResponse) -> HttpResponse:
    """A report's status and file are one person's business: never cached by anybody."""
    patch_cache_control(response, private=True, no_store=True)
    return response


def download(report: Report) -> FileResponse:
    """Stream the report's file (FileResponse reads it in blocks)."""
    if report.status != Report.Status.SUCCEEDED or not report.file.name:
        raise Http404("This report has no file to download.")
    try:
        handle = report.file.storage.open(report.file.name, "rb")
    except FileNotFoundError:
        raise Http404("The report's file is gone.") from None
    response = FileResponse(handle, as_attachment=True, filename=os.path.basename(report.file.name))
    response["Content-Type"] = "text/csv; charset=utf-8"
    return private(response)

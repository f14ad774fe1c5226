"""The report pages: request a report, follow it on its status page, download it.

Each user sees only their own reports; anybody else, staff included, gets 404 here
(staff have the admin).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from reports import http, kinds, services
from reports.models import Report
from reports.scheduled import check_token

LIST_LIMIT = 50


def _own(request: HttpRequest, report_id: Any) -> Report:
    report = Report.objects.filter(pk=report_id, owner=request.user).first()
    if report is None:
        raise Http404("No such report.")
    return report


def _forms(bound: Any = None) -> list[tuple[kinds.Kind, Any]]:
    forms = []
    for kind in kinds.all_kinds():
        # Field ids per kind: the page shows every kind's form at once.
        auto_id = f"id_{kind.name}_%s"
        if bound is not None and bound[0] == kind.name:
            form = kind.form(bound[1], auto_id=auto_id)
            form.is_valid()
        else:
            form = kind.form(auto_id=auto_id)
        forms.append((kind, form))
    return forms


@login_required
@require_http_methods(["GET", "POST"])
def report_list(request: HttpRequest) -> HttpResponse:
    status, error, bound = 200, "", None
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        try:
            report, created = services.request_report(kind, request.POST, owner=request.user)
        except services.ReportError as exc:
            status, error = exc.status, exc.message
            bound = (kind, request.POST) if exc.form is not None else None
        else:
            if not created:
                messages.info(request, "The same report is already in progress: here it is.")
            return redirect("reports:detail", report_id=report.id)
    reports = Report.objects.filter(owner=request.user).order_by("-created_at")[:LIST_LIMIT]
    return render(
        request,
        "reports/report_list.html",
        {"reports": [_row(report) for report in reports], "forms": _forms(bound), "error": error},
        status=status,
    )


def _parameters(report: Report) -> list[tuple[str, Any]]:
    """The stored parameters under their form labels ("From", "Stock under")."""
    kind = kinds.get(report.kind)
    fields = kind.form.base_fields if kind else {}
    return [(getattr(fields.get(name), "label", None) or name, value) for name, value in report.parameters.items()]


def _row(report: Report) -> dict[str, Any]:
    """A line of the list: the kind's title, the status in words, the file when ready."""
    kind = kinds.get(report.kind)
    ready = report.status == Report.Status.SUCCEEDED
    return {
        "report": report,
        "title": kind.title if kind else report.kind,
        "parameters": _parameters(report),
        "status_text": services.STATUS_WORDS[report.status],
        "size": services.file_size_text(report.file_size) if ready else "",
        "download_url": reverse("reports:download", args=[report.id]) if ready else "",
    }


@login_required
@require_GET
def report_detail(request: HttpRequest, report_id: Any) -> HttpResponse:
    report = _own(request, report_id)
    document = services.status_document(report, reverse("reports:download", args=[report.id]))
    response = render(
        request,
        "reports/report_detail.html",
        {
            "report": report,
            "status": document,
            "kind": kinds.get(report.kind),
            "parameters": _parameters(report),
            "status_url": reverse("reports:status", args=[report.id]),
        },
    )
    return http.private(response)


@login_required
@require_GET
def report_status(request: HttpRequest, report_id: Any) -> HttpResponse:
    report = _own(request, report_id)
    return http.private(JsonResponse(services.status_document(report, reverse("reports:download", args=[report.id]))))


@login_required
@require_POST
def report_cancel(request: HttpRequest, report_id: Any) -> HttpResponse:
    report = _own(request, report_id)
    if services.cancel_report(report):
        messages.info(request, "The report is cancelled.")
    else:
        status = Report.objects.get(pk=report.pk).status
        messages.warning(request, services.NOTHING_TO_CANCEL.get(status, "There is nothing to cancel."))
    return redirect("reports:detail", report_id=report.id)


@login_required
@require_GET
def report_download(request: HttpRequest, report_id: Any) -> HttpResponse:
    return http.download(_own(request, report_id))


@require_GET
def shared_download(request: HttpRequest, report_id: Any) -> HttpResponse:
    """The signed link of a scheduled report's email: no account needed, expires with the file."""
    report = Report.objects.filter(pk=report_id).first()
    if report is None or not check_token(report, request.GET.get("token", "")):
        raise Http404("No such report.")
    return http.download(report)

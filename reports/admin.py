from django.contrib import admin
from django.utils.html import format_html

from jobs.admin import ReadOnlyAdminMixin
from reports.models import Report


@admin.register(Report)
class ReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: reports are made by their owners' requests and by the workers."""

    list_display = ["short_id", "kind", "requested_by", "status_badge", "progress", "row_count", "created_at"]
    list_filter = ["status", "kind"]
    search_fields = ["=id", "owner__username"]
    readonly_fields = [f.name for f in Report._meta.fields]
    show_full_result_count = False

    @admin.display(description="id")
    def short_id(self, report: Report) -> str:
        return str(report.id)[:8]

    @admin.display(description="requested by")
    def requested_by(self, report: Report) -> str:
        if report.owner_id:
            return str(report.owner)
        return format_html("API key {}", report.api_key)

    @admin.display(description="status", ordering="status")
    def status_badge(self, report: Report) -> str:
        return format_html('<span class="buzzer-status buzzer-status-{}">{}</span>', report.status, report.status)

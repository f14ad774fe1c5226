from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from jobs import timefmt
from jobs.services import jobs_for
from orders.models import ApiKey, DailySales, DemoSwitch, Order, OrderItem, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "stock", "active"]
    list_filter = ["active"]
    search_fields = ["sku", "name"]


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0
    can_delete = False
    readonly_fields = ["product", "sku", "name", "quantity", "unit_price"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "email", "status", "priority", "total", "created_at"]
    list_filter = ["status", "priority"]
    search_fields = ["=id", "email"]
    readonly_fields = [
        "id",
        "email",
        "status",
        "priority",
        "total",
        "card_last4",
        "payment_reference",
        "api_key",
        "created_shown",
        "job_timeline",
    ]
    inlines = [OrderItemInline]
    show_full_result_count = False

    @admin.display(description="jobs")
    def job_timeline(self, order: Order) -> str:
        """What ran for this order, when, how often and with what result."""
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td><span class="buzzer-status buzzer-status-{}">{}</span></td>'
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:jobs_job_change", args=[job.pk]),
                    job.actor_name,
                    job.queue_name,
                    job.status,
                    job.status,
                    job.attempts,
                    timefmt.moment(job.enqueued_at, ms=True),
                    timefmt.moment(job.started_at, ms=True),
                    timefmt.duration(job.duration),
                    job.last_error or "",
                )
                for job in jobs_for(order)
            ),
        )
        return format_html(
            '<table id="job-timeline" class="buzzer-table"><tr><th>job</th><th>queue</th><th>status</th>'
            "<th>attempts</th><th>enqueued</th><th>started</th><th>run time</th><th>last error</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="created")
    def created_shown(self, order: Order) -> str:
        return timefmt.moment(order.created_at)

    # An order is a record of a payment: it is read, never edited or deleted here (its
    # jobs and their audit trail hang on it).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


@admin.register(DailySales)
class DailySalesAdmin(admin.ModelAdmin):
    list_display = ["date", "orders", "items", "revenue"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "active", "created_at", "expires_at", "last_used_at"]
    list_filter = ["active"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]


@admin.register(DemoSwitch)
class DemoSwitchAdmin(admin.ModelAdmin):
    list_display = ["name", "on", "changed_at"]
    list_editable = ["on"]

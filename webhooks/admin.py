"""The webhooks console: endpoints (add, pause/resume, rotate, test, reveal the secret,
resend failed deliveries in a time range), deliveries with every attempt (resend), and
the audit log. Every action is a permission-checked POST that reports through
`message_user`; HTML is built with `format_html`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from jobs.admin import ReadOnlyAdminMixin
from jobs.timefmt import absolute, moment, relative_text
from webhooks import registry, services
from webhooks.models import Action, Attempt, Delivery, Endpoint, Event


class EndpointForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=2000,
        assume_scheme="https",
        help_text="Where the events are POSTed, e.g. http://127.0.0.1:9000/hooks for a local receiver "
        "(manage.py webhook_receiver).",
    )
    events = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The event types it receives; none ticked: all of them.",
    )

    class Meta:
        model = Endpoint
        fields = ["url", "description", "events"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [(t, t) for t in registry.types()]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        services.validate_url(url)
        return url

    def save(self, commit: bool = True) -> Endpoint:
        endpoint = super().save(commit=False)
        if not endpoint.secret:
            from webhooks.signing import new_secret

            endpoint.secret = new_secret()
        if commit:
            endpoint.save()
        return endpoint


def _perm(request: HttpRequest, codename: str) -> bool:
    return request.user.has_perm(f"webhooks.{codename}")


def _when(value: Any) -> str:
    """A moment to the second, and how far away it is: "2026-11-30 09:28:06 UTC (in 5 seconds)"."""
    if value is None:
        return "–"
    return format_html("{} ({})", absolute(value), relative_text(value))


def _status(status: str) -> str:
    return format_html('<span class="buzzer-status buzzer-status-{}">{}</span>', status, status)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "description", "enabled", "event_types", "failing_since", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    readonly_fields = ["secret_display", "state", "recent_deliveries"]
    change_form_template = "admin/webhooks/endpoint/change_form.html"

    def get_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> list[str]:
        fields = ["url", "description", "events"]
        return fields if obj is None else [*fields, "state", "secret_display", "recent_deliveries"]

    @admin.display(description="events")
    def event_types(self, endpoint: Endpoint) -> str:
        return ", ".join(endpoint.events) or "all"

    @admin.display(description="state")
    def state(self, endpoint: Endpoint) -> str:
        if endpoint.enabled:
            if endpoint.failing_since:
                return format_html("enabled · failing since {}", _when(endpoint.failing_since))
            return "enabled"
        return format_html("disabled: {}", endpoint.disabled_reason or "–")

    @admin.display(description="signing secret")
    def secret_display(self, endpoint: Endpoint) -> str:
        rotating = ""
        if endpoint.previous_secret and endpoint.previous_secret_expires_at:
            rotating = format_html(" · the previous secret also signs until {}", endpoint.previous_secret_expires_at)
        return format_html("whsec_•••••••• (Reveal shows it){}", rotating)

    @admin.display(description="recent deliveries")
    def recent_deliveries(self, endpoint: Endpoint) -> str:
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:webhooks_delivery_change", args=[d.pk]),
                    d.event.type,
                    _status(d.status),
                    d.attempts,
                    d.last_status_code or "–",
                    _when(d.next_attempt_at),
                    moment(d.created_at),
                )
                for d in endpoint.deliveries.select_related("event").order_by("-created_at")[:20]
            ),
        )
        link = reverse("admin:webhooks_delivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html(
            '<table class="buzzer-table"><tr><th>event</th><th>status</th><th>attempts</th><th>last status</th>'
            '<th>next attempt</th><th>created</th></tr>{}</table><p><a href="{}">All deliveries</a></p>',
            rows,
            link,
        )

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            services._audit(Action.Kind.CREATE, request.user, endpoint=obj)

    def response_add(self, request: HttpRequest, obj: Endpoint, post_url_continue: Any = None) -> HttpResponse:
        self.message_user(
            request,
            format_html("Signing secret of {} (shown once here; Reveal shows it again): {}", obj.url, obj.secret),
            messages.WARNING,
        )
        return super().response_add(request, obj, post_url_continue)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        now = timezone.now()
        extra_context = {
            **(extra_context or {}),
            "can_manage": self.has_change_permission(request),
            "can_reveal": _perm(request, "reveal_secret"),
            "can_resend": _perm(request, "resend_delivery"),
            "resend_since": (now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
            "resend_until": now.strftime("%Y-%m-%d %H:%M"),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<uuid:pk>/pause/", view(self.pause_view), name="webhooks_endpoint_pause"),
            path("<uuid:pk>/rotate/", view(self.rotate_view), name="webhooks_endpoint_rotate"),
            path("<uuid:pk>/test/", view(self.test_view), name="webhooks_endpoint_test"),
            path("<uuid:pk>/reveal/", view(self.reveal_view), name="webhooks_endpoint_reveal"),
            path("<uuid:pk>/resend-failed/", view(self.resend_failed_view), name="webhooks_endpoint_resend_failed"),
            *super().get_urls(),
        ]

    def _back(self, pk: Any) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:webhooks_endpoint_change", args=[pk]))

    def _endpoint(self, request: HttpRequest, pk: Any, codename: str | None = None) -> Endpoint:
        allowed = _perm(request, codename) if codename else self.has_change_permission(request)
        if not allowed:
            raise PermissionDenied
        return get_object_or_404(Endpoint, pk=pk)

    @method_decorator(require_POST)
    def pause_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        endpoint = self._endpoint(request, pk)
        if endpoint.enabled:
            services.pause(endpoint, user=request.user)
            self.message_user(request, format_html("Paused {}: nothing is sent to it.", endpoint.url))
        else:
            services.resume(endpoint, user=request.user)
            self.message_user(request, format_html("Resumed {}.", endpoint.url), messages.SUCCESS)
        return self._back(pk)

    @method_decorator(require_POST)
    def rotate_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        endpoint = self._endpoint(request, pk, "reveal_secret")
        if not self.has_change_permission(request):
            raise PermissionDenied
        secret = services.rotate_secret(endpoint, user=request.user)
        self.message_user(
            request,
            format_html("New secret of {}: {} (the old one keeps signing too for a while).", endpoint.url, secret),
            messages.WARNING,
        )
        return self._back(pk)

    @method_decorator(require_POST)
    def reveal_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        endpoint = self._endpoint(request, pk, "reveal_secret")
        secret = services.reveal_secret(endpoint, user=request.user)
        self.message_user(request, format_html("Signing secret of {}: {}", endpoint.url, secret), messages.WARNING)
        return self._back(pk)

    @method_decorator(require_POST)
    def test_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        endpoint = self._endpoint(request, pk)
        delivery = services.send_test(endpoint, user=request.user)
        link = reverse("admin:webhooks_delivery_change", args=[delivery.pk])
        self.message_user(request, format_html('Test event queued: <a href="{}">its delivery</a>.', link))
        return self._back(pk)

    @method_decorator(require_POST)
    def resend_failed_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        endpoint = self._endpoint(request, pk, "resend_delivery")
        form = ResendRangeForm(request.POST)
        if not form.is_valid():
            reasons = form.errors.get("__all__") or ["give both times as YYYY-MM-DD HH:MM"]
            self.message_user(request, format_html("Not resent: {}", " ".join(reasons)), messages.ERROR)
            return self._back(pk)
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
        count = services.resend_failed(endpoint, since, until, user=request.user)
        self.message_user(request, format_html("Resent {} failed deliveries.", count), messages.SUCCESS)
        return self._back(pk)


class ResendRangeForm(forms.Form):
    since = forms.DateTimeField()
    until = forms.DateTimeField()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("The start must come before the end.")
        return data


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = ["number", "started", "status_code", "latency_ms", "error", "response_excerpt", "manual", "job_link"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["started_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("webhooks.view_delivery")  # the attempts are part of their delivery

    @admin.display(description="started at")
    def started(self, attempt: Attempt) -> str:
        return moment(attempt.started_at)

    @admin.display(description="response (first 1 KB)")
    def response_excerpt(self, attempt: Attempt) -> str:
        return format_html('<pre class="buzzer-pre">{}</pre>', attempt.response) if attempt.response else "–"

    @admin.display(description="job")
    def job_link(self, attempt: Attempt) -> str:
        if attempt.job_id is None:
            return "–"
        return format_html('<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[attempt.job_id]), "job")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "event_type",
        "endpoint",
        "status_badge",
        "attempts",
        "last_status_code",
        "next_attempt",
        "created",
    ]
    list_filter = ["status", "event__type", "endpoint"]
    search_fields = ["=id", "=event__id", "event__object_id"]
    list_select_related = ["event", "endpoint"]
    fields = [
        "event_link",
        "endpoint",
        "status_badge",
        "attempts",
        "next_attempt",
        "last_status_code",
        "last_error",
        "delivered",
        "created",
        "webhook_id",
        "payload",
        "delivery_jobs",
    ]
    readonly_fields = fields
    inlines = [AttemptInline]
    actions = ["resend_selected"]
    show_full_result_count = False
    change_form_template = "admin/webhooks/delivery/change_form.html"

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return _perm(request, "resend_delivery")

    @admin.display(description="event")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.type

    @admin.display(description="status")
    def status_badge(self, delivery: Delivery) -> str:
        return _status(delivery.status)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, delivery: Delivery) -> str:
        return _when(delivery.next_attempt_at)

    @admin.display(description="delivered at", ordering="delivered_at")
    def delivered(self, delivery: Delivery) -> str:
        return moment(delivery.delivered_at)

    @admin.display(description="created at", ordering="created_at")
    def created(self, delivery: Delivery) -> str:
        return moment(delivery.created_at)

    @admin.display(description="event")
    def event_link(self, delivery: Delivery) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:webhooks_event_change", args=[delivery.event_id]), delivery.event
        )

    @admin.display(description="webhook-id")
    def webhook_id(self, delivery: Delivery) -> str:
        return delivery.event.webhook_id

    @admin.display(description="body")
    def payload(self, delivery: Delivery) -> str:
        return format_html('<pre class="buzzer-pre">{}</pre>', services.body_of(delivery.event).decode())

    @admin.display(description="jobs")
    def delivery_jobs(self, delivery: Delivery) -> str:
        """Its job (every attempt of the schedule) and its Resends, each with its state:
        a retrying one with the time of its next attempt."""
        rows = []
        for job in services.delivery_jobs(delivery):
            kind = "Resend" if job.args[1:] == [True] else "delivery"
            if job.status == job.Status.RETRYING and job.due_at:
                state = format_html("retrying · next attempt at {}", _when(job.due_at))
            else:
                state = format_html("{}", job.status)
            rows.append((reverse("admin:jobs_job_change", args=[job.pk]), kind, job.attempts, state))
        return format_html_join("", '<div><a href="{}">{} job</a> · {} attempts · {}</div>', rows) or "–"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        extra_context = {**(extra_context or {}), "can_resend": self.has_resend_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<uuid:pk>/resend/", view(self.resend_view), name="webhooks_delivery_resend"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def resend_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        if not self.has_resend_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(Delivery.objects.select_related("event", "endpoint"), pk=pk)
        services.resend(delivery, user=request.user)
        self.message_user(request, "Resend queued.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:webhooks_delivery_change", args=[pk]))

    @admin.action(description="Resend the selected deliveries", permissions=["resend"])
    def resend_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = 0
        for delivery in queryset.select_related("event", "endpoint"):
            services.resend(delivery, user=request.user)
            count += 1
        self.message_user(request, format_html("Resend queued for {} deliveries.", count), messages.SUCCESS)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["type", "webhook_id", "object_id", "created_at"]
    list_filter = ["type"]
    search_fields = ["=id", "object_id"]
    fields = ["type", "webhook_id", "object_type", "object_id", "created_at", "data_display"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="data")
    def data_display(self, event: Event) -> str:
        return format_html('<pre class="buzzer-pre">{}</pre>', services.body_of(event).decode())


@admin.register(Action)
class ActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "kind", "endpoint", "delivery", "user", "detail"]
    list_filter = ["kind"]

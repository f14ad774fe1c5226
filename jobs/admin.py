from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from jobs.models import Effect, Job

try:  # django-dramatiq's Task admin tracks nothing here: Buzzer's Job does.
    from django_dramatiq.models import Task

    admin.site.unregister(Task)
except (ImportError, admin.sites.NotRegistered):
    pass


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "actor_name", "queue_name", "status", "attempts", "created_at", "finished_at", "owner"]
    list_filter = ["status", "queue_name", "actor_name"]
    search_fields = ["=id", "=object_id", "last_error"]
    readonly_fields = [f.name for f in Job._meta.fields]
    show_full_result_count = False
    date_hierarchy = None

    @admin.display(description="object")
    def owner(self, job: Job) -> str:
        if not job.object_type:
            return ""
        app_label, model = job.object_type.split(".", 1)
        try:
            url = reverse(f"admin:{app_label}_{model}_change", args=[job.object_id])
        except NoReverseMatch:
            return format_html("{} {}", job.object_type, job.object_id)
        return format_html('<a href="{}">{} {}</a>', url, job.object_type, job.object_id)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Effect)
class EffectAdmin(admin.ModelAdmin):
    list_display = ["key", "created_at"]
    search_fields = ["key"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

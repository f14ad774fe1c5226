from django.contrib import admin
from django.urls import include, path

from jobs import views as jobs_views

# JSON for a path under /api/ that matches no route (orders.api.not_found).
handler404 = "orders.api.not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", jobs_views.healthz, name="healthz"),
    path("metrics", jobs_views.metrics_view, name="metrics"),
    path("", include("orders.urls")),
    path("", include("reports.urls")),
]

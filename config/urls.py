from django.contrib import admin
from django.urls import include, path

from jobs import views as jobs_views
from limits import views as limits_views

# The console's lists are wide (a job list has nine columns beside its filters): the
# pages get the screen's width instead of the app list repeated down the left side
# (the breadcrumbs and the admin's home page still lead everywhere).
admin.site.enable_nav_sidebar = False
admin.site.site_header = "Buzzer console"
admin.site.site_title = "Buzzer"

# JSON for a path under /api/ that matches no route (orders.api.not_found).
handler404 = "orders.api.not_found"

urlpatterns = [
    # Both log-in pages behind the log-in limits (limits.views); the rest as Django has them.
    path("admin/login/", limits_views.admin_login),
    path("admin/", admin.site.urls),
    path("accounts/login/", limits_views.login, name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", jobs_views.healthz, name="healthz"),
    path("metrics", jobs_views.metrics_view, name="metrics"),
    path("", include("orders.urls")),
    path("", include("reports.urls")),
]

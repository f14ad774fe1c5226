from django.urls import path

from reports import api, views

app_name = "reports"

urlpatterns = [
    path("reports/", views.report_list, name="list"),
    path("reports/<uuid:report_id>/", views.report_detail, name="detail"),
    path("reports/<uuid:report_id>/status", views.report_status, name="status"),
    path("reports/<uuid:report_id>/cancel", views.report_cancel, name="cancel"),
    path("reports/<uuid:report_id>/download", views.report_download, name="download"),
    path("reports/<uuid:report_id>/shared-download", views.shared_download, name="shared-download"),
    path("api/reports/", api.create_report, name="api-create"),
    path("api/reports/<uuid:report_id>/", api.report_detail, name="api-detail"),
    path("api/reports/<uuid:report_id>/download", api.report_download, name="api-download"),
]

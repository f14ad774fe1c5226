from django.urls import path

from orders import api, openapi, views

app_name = "orders"

urlpatterns = [
    path("", views.shop, name="shop"),
    path("orders/", views.checkout, name="checkout"),
    path("orders/<uuid:order_id>/", views.order_detail, name="detail"),
    path("orders/<uuid:order_id>/status", views.order_status, name="status"),
    path("api/openapi.json", openapi.openapi_view, name="api-openapi"),
    path("api/docs/", openapi.docs_view, name="api-docs"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("api/orders/", api.create_order, name="api-create"),
    path("api/orders/<uuid:order_id>/", api.order_detail, name="api-detail"),
]

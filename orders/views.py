"""The shop's pages: the product list with its checkout form (post/redirect/get, also
on a refusal), and the order's page that follows its jobs, in the customer's words,
until they are done."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_POST

from limits.responses import too_many_requests
from limits.services import checkout_limited
from orders.errors import OrderError
from orders.models import Order, Product
from orders.payments import CARD_DECLINED, CARD_OK, CARD_PROCESSING_ERROR
from orders.progress import order_progress
from orders.services import place_order

SESSION_ORDERS = "buzzer_orders"
TEST_CARDS = [
    (CARD_OK, "4242 4242 4242 4242 (succeeds)"),
    (CARD_DECLINED, "4000 0000 0000 0002 (declined)"),
    (CARD_PROCESSING_ERROR, "4000 0000 0000 0119 (processing error)"),
]


# The checkout form's last refused submission: kept in the session across the redirect
# (post/redirect/get), so the shop shows it again and a reload never re-submits it.
SESSION_CHECKOUT = "buzzer_checkout"


def _shop(request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
    context.setdefault("form", {})
    products = list(Product.objects.filter(active=True))
    quantities = context["form"].get("quantities", {})
    context["products"] = [(product, quantities.get(product.sku, "")) for product in products]
    context["cards"] = TEST_CARDS
    context["priorities"] = Order.Priority.choices
    return render(request, "orders/shop.html", context, status=status)


@require_GET
def shop(request: HttpRequest) -> HttpResponse:
    refused = request.session.pop(SESSION_CHECKOUT, None)
    if isinstance(refused, dict):
        return _shop(request, error=refused.get("error", ""), form=refused.get("form", {}))
    return _shop(request)


def _form_state(post: Any) -> dict[str, Any]:
    """What the customer entered, to show again after a refusal. Only the demo's test
    cards are offered (and kept): no card number a customer typed is stored."""
    card = post.get("card", "")
    priority = post.get("priority", "")
    return {
        "email": post.get("email", "")[:254],
        "card": card if card in dict(TEST_CARDS) else "",
        "priority": priority if priority in Order.Priority.values else "",
        "quantities": {
            name[4:]: value.strip()[:12] for name, value in post.items() if name.startswith("qty-") and value.strip()
        },
    }


def _items_from(post: Any) -> list[dict[str, Any]]:
    """The basket from the form's `qty-<sku>` fields; errors name the product."""
    fields = {name[4:]: value.strip() for name, value in post.items() if name.startswith("qty-") and value.strip()}
    names = dict(Product.objects.filter(sku__in=list(fields)).values_list("sku", "name"))
    items = []
    for sku, value in fields.items():
        product = names.get(sku, sku)
        try:
            quantity = int(value)
        except ValueError:
            raise OrderError("invalid_quantity", f"The quantity of {product} must be a whole number.") from None
        if quantity < 0:
            raise OrderError("invalid_quantity", f"The quantity of {product} cannot be negative.")
        if quantity > settings.ORDER_MAX_QUANTITY:
            raise OrderError(
                "invalid_quantity", f"The quantity of {product} may be at most {settings.ORDER_MAX_QUANTITY}."
            )
        if quantity:
            items.append({"sku": sku, "quantity": quantity})
    return items


@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    limited = checkout_limited(request)
    if limited is not None:
        return too_many_requests(request, limited)
    form = request.POST
    try:
        order = place_order(
            email=form.get("email", ""),
            items=_items_from(form),
            card=form.get("card", ""),
            priority=form.get("priority", Order.Priority.STANDARD),
        )
    except OrderError as exc:
        # Post/redirect/get: the shop shows the error and the form as it was sent.
        request.session[SESSION_CHECKOUT] = {"error": exc.message, "form": _form_state(form)}
        return redirect("orders:shop")
    # The order page is shown only to the browser session that placed it (and staff who may view orders).
    request.session[SESSION_ORDERS] = [*request.session.get(SESSION_ORDERS, [])[-49:], str(order.id)]
    return redirect("orders:detail", order_id=order.id)


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page's <link rel=icon> says. Not a
    permanent redirect: in production the target's name carries its hash, which changes
    with the icon."""
    response = HttpResponseRedirect(static("favicon.svg"))
    patch_cache_control(response, public=True, max_age=86400)
    return response


def _viewable(request: HttpRequest, order_id: Any) -> Order:
    # Staff see any order only with the permission to view orders (as in the admin).
    allowed = str(order_id) in request.session.get(SESSION_ORDERS, []) or request.user.has_perm("orders.view_order")
    order = Order.objects.filter(pk=order_id).first() if allowed else None
    if order is None:
        raise Http404("No such order.")
    return order


@require_GET
def order_detail(request: HttpRequest, order_id: Any) -> HttpResponse:
    order = _viewable(request, order_id)
    progress = order_progress(order, staff=request.user.is_staff)
    context = {
        "order": order,
        "items": order.items.all(),
        "progress": progress,
        "status_url": reverse("orders:status", args=[order.id]),
    }
    return render(request, "orders/order_detail.html", context)


@require_GET
def order_status(request: HttpRequest, order_id: Any) -> HttpResponse:
    """The order page's progress as JSON: what its script polls until every job is final."""
    order = _viewable(request, order_id)
    response = JsonResponse(order_progress(order, staff=request.user.is_staff))
    patch_cache_control(response, private=True, no_store=True)
    return response

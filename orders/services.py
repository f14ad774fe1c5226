"""The shop's business logic: placing an order inline, and the side effects that the
background jobs run afterwards (each at most once per order)."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

import jobs
from jobs.infra import is_database_unavailable
from jobs.models import Job
from jobs.prepared import prepare_insert
from jobs.services import prepare_publish
from orders.errors import ApiKeyExpired, OrderError
from orders.models import ApiKey, DailySales, DemoSwitch, Order, OrderItem, Product, hash_api_key
from orders.payments import Charge, get_gateway

logger = logging.getLogger(__name__)


EMAIL_MAX_LENGTH = Order._meta.get_field("email").max_length


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


def _clean_email(email: Any) -> str:
    if not isinstance(email, str) or not email.strip():
        raise OrderError("invalid_email", "An email address is required.")
    email = email.strip()
    if len(email) > EMAIL_MAX_LENGTH:  # the column's size; the validator alone allows 320
        raise OrderError("invalid_email", f"The email address may be at most {EMAIL_MAX_LENGTH} characters.")
    try:
        validate_email(email)
    except ValidationError:
        raise OrderError("invalid_email", "The email address is not valid.") from None
    return email


def _clean_lines(items: Any) -> list[Line]:
    if not isinstance(items, list) or not items:
        raise OrderError("invalid_items", "An order needs at least one item.")
    if len(items) > settings.ORDER_MAX_ITEMS:
        raise OrderError("too_many_items", f"An order may have at most {settings.ORDER_MAX_ITEMS} items.")
    quantities: dict[str, int] = {}
    for item in items:
        if not isinstance(item, dict):
            raise OrderError("invalid_items", "Each item must be an object with a sku and a quantity.")
        sku, quantity = item.get("sku"), item.get("quantity", 1)
        # NUL: PostgreSQL text cannot hold it (the query itself would fail).
        if not isinstance(sku, str) or not sku.strip() or len(sku) > 32 or "\x00" in sku:
            raise OrderError("invalid_sku", "Each item needs a sku (a short text).")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise OrderError("invalid_quantity", f"The quantity of {sku} must be a whole number.")
        if quantity <= 0:
            raise OrderError("invalid_quantity", f"The quantity of {sku} must be at least 1.")
        total = quantities.get(sku, 0) + quantity
        if total > settings.ORDER_MAX_QUANTITY:
            raise OrderError("invalid_quantity", f"The quantity of {sku} may be at most {settings.ORDER_MAX_QUANTITY}.")
        quantities[sku] = total
    return [Line(sku, quantity) for sku, quantity in quantities.items()]


def _clean_card(card: Any) -> str:
    if not isinstance(card, str):
        raise OrderError("invalid_card", "A card number is required.")
    digits = card.replace(" ", "").replace("-", "")
    # isascii: str.isdigit() is also true for "²" or "١", which no card number contains.
    if not (digits.isascii() and digits.isdigit()) or not 12 <= len(digits) <= 19:
        raise OrderError("invalid_card", "The card number must be 12 to 19 digits.")
    return digits


def _clean_priority(priority: Any) -> str:
    if priority not in Order.Priority.values:
        raise OrderError("invalid_priority", "The priority must be 'standard' or 'premium'.")
    return priority


def issue_api_key(name: str, expires_in_days: int | None = None) -> tuple[ApiKey, str]:
    """A new API key (the row and the raw key, shown once), valid for that many days or for ever."""
    expires_at = None if expires_in_days is None else timezone.now() + timedelta(days=expires_in_days)
    return ApiKey.issue(name, expires_at=expires_at)


def authenticate_api_key(raw: str) -> ApiKey | None:
    """The active key with this raw value, None if there is none; ApiKeyExpired when it is
    past its expiry. Notes when it was used, at most every BUZZER_API_KEY_TOUCH_SECONDS."""
    api_key = ApiKey.objects.filter(key_hash=hash_api_key(raw), active=True).first()
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.is_expired(now):
        assert api_key.expires_at is not None
        raise ApiKeyExpired(
            f"This API key expired on {api_key.expires_at:%Y-%m-%d %H:%M} UTC: ask for a new one "
            "(manage.py create_api_key)."
        )
    touch_api_key(api_key, now)
    return api_key


def touch_api_key(api_key: ApiKey, now: datetime) -> None:
    """Set last_used_at unless it was set within BUZZER_API_KEY_TOUCH_SECONDS: one
    conditional UPDATE a minute per key rather than a write per request (and of two
    processes racing, one writes)."""
    every = timedelta(seconds=settings.BUZZER_API_KEY_TOUCH_SECONDS)
    if api_key.last_used_at is not None and now - api_key.last_used_at < every:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - every)
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def place_order(
    *,
    email: Any,
    items: Any,
    card: Any,
    priority: Any = Order.Priority.STANDARD,
    api_key: ApiKey | None = None,
    on_created: Callable[[Order, list[OrderItem], list[Job]], None] | None = None,
) -> Order:
    """Validate, price, charge and save an order, and publish `order.placed`.

    The charge happens before the write transaction so that no database lock is held
    across the gateway's latency; if saving then fails, the charge is refunded. The
    order, its items and its jobs (the outbox) commit together; `on_created` runs inside
    that transaction (the API stores its idempotent response there). Their INSERTs are
    built before it opens, so that on SQLite the write lock, which every writer waits
    for, is held only while they run.
    """
    email = _clean_email(email)
    lines = _clean_lines(items)
    card = _clean_card(card)
    priority = _clean_priority(priority)

    products = {p.sku: p for p in Product.objects.filter(sku__in=[line.sku for line in lines], active=True)}
    for line in lines:
        product = products.get(line.sku)
        if product is None:
            raise OrderError("unknown_sku", f"There is no product with sku {line.sku}.")
        if product.stock < line.quantity:
            raise OrderError("out_of_stock", f"Only {max(product.stock, 0)} of {product.name} left.", status=409)
    total = sum((products[line.sku].price * line.quantity for line in lines), Decimal("0"))

    order = Order(email=email, total=total, priority=priority, card_last4=card[-4:], api_key=api_key)
    gateway = get_gateway()
    charge = gateway.charge(total, card, reference=str(order.id))
    try:
        order.payment_reference = charge.reference
        items = [
            OrderItem(
                order=order,
                product=products[line.sku],
                sku=line.sku,
                name=products[line.sku].name,
                quantity=line.quantity,
                unit_price=products[line.sku].price,
            )
            for line in lines
        ]
        queue = settings.BUZZER_PREMIUM_QUEUE if priority == Order.Priority.PREMIUM else None
        inserts = [prepare_insert(Order, [order]), prepare_insert(OrderItem, items)]
        placed = prepare_publish("order.placed", obj=order, queue=queue, order_id=str(order.id))
        with transaction.atomic():
            for insert in inserts:
                insert.run()
            written = placed.write()
            if on_created is not None:
                on_created(order, items, written)
    except BaseException as exc:
        if not (is_database_unavailable(exc) and _settle_later(order, charge)):
            gateway.refund(charge)
        raise
    logger.info("Order %s placed: %s, %d lines, %s", order.id, priority, len(lines), total)
    return order


# How long after a lost COMMIT the charge is settled (the job waits longer if the
# database is still away: it cannot fail on that).
SETTLE_DELAY_MS = 5_000


def _settle_later(order: Order, charge: Charge) -> bool:
    """The database went away during the write: the COMMIT may have happened (the server
    committed, the answer was lost) or not. Refunding now could refund an order that
    exists; keeping the charge could keep money for one that does not. A job decides once
    the database answers (`settle_charge`). False when it cannot be sent either."""
    from orders.tasks import settle_charge

    sent = jobs.send_without_outbox(
        settle_charge, str(order.id), charge.reference, str(charge.amount), delay_ms=SETTLE_DELAY_MS
    )
    if sent:
        logger.warning(
            "Order %s: the database went away while saving; charge %s is settled later", order.id, charge.reference
        )
    return sent


def settle_charge(order_id: str, reference: str, amount: str) -> bool:
    """Refund a charge whose order was never saved (keep it when the order exists).
    Returns whether it refunded now."""
    if Order.objects.filter(pk=order_id).exists():
        logger.info("Order %s was saved after all: charge %s stands", order_id, reference)
        return False
    with jobs.once(f"refund:{reference}", external=True) as first:
        if not first:
            return False
        get_gateway().refund(Charge(reference=reference, amount=Decimal(amount)))
    logger.warning("Order %s was not saved: charge %s refunded", order_id, reference)
    return True


def _load(order_id: str) -> Order | None:
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        logger.warning("Order %s no longer exists; nothing to do", order_id)
    return order


def send_confirmation(order_id: str) -> bool:
    """Send the order confirmation email, once per order. Returns whether it was sent now."""
    order = _load(order_id)
    if order is None:
        return False
    key = f"email:order-confirmation:{order.id}"
    # A stable Message-ID: a delivery that died right after the mail server's answer is
    # settled by asking the backend about it, and mail systems can drop a copy.
    message_id = jobs.message_id(key)
    with jobs.once(key, external=True, check=lambda: jobs.email_accepted(message_id)) as first:
        if not first:
            logger.info("Confirmation for order %s was already sent", order.id)
            return False
        if settings.DEMO_FAIL_EMAILS or DemoSwitch.is_on(DemoSwitch.MAIL_OUTAGE):
            # Refused for good, as a 5xx from the mail server would be: straight to the DLQ.
            raise jobs.PermanentError("550 Mailbox unavailable: the demo mail server is in an outage (demo switch)")
        context = {"order": order, "items": list(order.items.all())}
        message = EmailMessage(
            subject=f"Your order {str(order.id)[:8]} is confirmed",
            body=render_to_string("orders/confirmation_email.txt", context),
            to=[order.email],
            headers={"Message-ID": message_id},
        )
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused as exc:  # retrying cannot change the answer
            raise jobs.PermanentError(f"The mail server refused the recipient: {exc.recipients}") from exc
    return True


def update_inventory(order_id: str) -> bool:
    """Take the ordered quantities off stock, once per order."""
    order = _load(order_id)
    if order is None:
        return False
    with jobs.once(f"inventory:order:{order.id}") as first:
        if not first:
            return False
        items = list(order.items.all())
        for item in items:
            Product.objects.filter(pk=item.product_id).update(stock=F("stock") - item.quantity)
    low = Product.objects.filter(
        pk__in=[item.product_id for item in items], stock__lt=settings.LOW_STOCK_THRESHOLD
    ).values_list("sku", "stock")
    for sku, stock in low:
        logger.warning("Low stock: %s has %d left", sku, stock)
    return True


def record_analytics(order_id: str) -> bool:
    """Add the order to the daily sales figures, once per order."""
    order = _load(order_id)
    if order is None:
        return False
    day = timezone.localdate(order.created_at)
    with jobs.once(f"analytics:order:{order.id}") as first:
        if not first:
            return False
        quantity = sum(item.quantity for item in order.items.all())
        DailySales.objects.get_or_create(date=day)
        DailySales.objects.filter(date=day).update(
            orders=F("orders") + 1, items=F("items") + quantity, revenue=F("revenue") + order.total
        )
    return True

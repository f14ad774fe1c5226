import hashlib
import secrets
import uuid
from datetime import datetime
from decimal import Decimal

from django.db import models
from django.utils import timezone


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.IntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class Order(models.Model):
    class Status(models.TextChoices):
        PAID = "paid", "paid"

    class Priority(models.TextChoices):
        STANDARD = "standard", "standard"
        PREMIUM = "premium", "premium"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PAID)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.STANDARD)
    card_last4 = models.CharField(max_length=4, blank=True)
    payment_reference = models.CharField(max_length=64, blank=True)
    api_key = models.ForeignKey("ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order {self.id}"


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_items")
    sku = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku}"

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


class DailySales(models.Model):
    """Sales figures per day, fed by the `record_analytics` job (once per order)."""

    date = models.DateField(unique=True)
    orders = models.PositiveIntegerField(default=0)
    items = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))

    class Meta:
        ordering = ["-date"]
        verbose_name_plural = "daily sales"

    def __str__(self) -> str:
        return f"Sales of {self.date}"


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A client of the JSON API. Only the key's hash is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="After this time the key is refused (401). Empty: it never expires."
    )
    # Written at most every BUZZER_API_KEY_TOUCH_SECONDS (orders.services.authenticate_api_key).
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @classmethod
    def issue(cls, name: str, expires_at: datetime | None = None) -> tuple["ApiKey", str]:
        """Create a key; returns the row and the raw key, which is shown only once."""
        raw = "bz_" + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, prefix=raw[:10], key_hash=hash_api_key(raw), expires_at=expires_at)
        return key, raw


class IdempotencyKey(models.Model):
    """The first response to a request made with an `Idempotency-Key`, for replay."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        DONE = "done", "done"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_per_client")]

    def __str__(self) -> str:
        return self.key


class DemoSwitch(models.Model):
    """Faults an operator can switch on to rehearse the dead-letter queue (the demo's
    mail server refusing every confirmation, say) and off again, without a restart."""

    MAIL_OUTAGE = "mail-outage"

    name = models.CharField(max_length=50, unique=True, choices=[(MAIL_OUTAGE, "Mail server refuses every email")])
    on = models.BooleanField(default=False)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "demo switches"

    def __str__(self) -> str:
        return f"{self.name}: {'on' if self.on else 'off'}"

    @classmethod
    def is_on(cls, name: str) -> bool:
        return cls.objects.filter(name=name, on=True).exists()

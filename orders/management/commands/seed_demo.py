"""Demo data: products (idempotent: running it twice changes nothing)."""

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand

from orders.models import DemoSwitch, Product

PRODUCTS = [
    ("BUZ-001", "Restaurant buzzer", "24.90", 120),
    ("BUZ-002", "Buzzer charging rack", "89.00", 40),
    ("MUG-001", "Buzzer mug", "12.50", 300),
    ("TEE-001", "Buzzer T-shirt", "19.00", 150),
    ("STK-001", "Sticker pack", "3.20", 1000),
    ("CAP-001", "Buzzer cap", "15.00", 8),
]


class Command(BaseCommand):
    help = "Load the demo products (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        for sku, name, price, stock in PRODUCTS:
            _, new = Product.objects.get_or_create(
                sku=sku, defaults={"name": name, "price": Decimal(price), "stock": stock}
            )
            created += new
        DemoSwitch.objects.get_or_create(name=DemoSwitch.MAIL_OUTAGE)  # off until an operator flips it
        self.stdout.write(f"Demo data: {created} products created, {len(PRODUCTS) - created} already there.")

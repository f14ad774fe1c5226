"""Demo data for reports: many random orders over the last days, fast.

    manage.py seed_orders 200000            # 200,000 orders, 1-3 items each, last 90 days

Rows are written with bulk_create in batches, in one transaction per batch: no payment,
no jobs (these are past orders, their side effects long done).
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from orders.models import Order, OrderItem, Product

BATCH = 5_000


class Command(BaseCommand):
    help = "Create N random orders with items over the last --days days (for sales reports)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("orders", type=int, help="how many orders to create")
        parser.add_argument("--days", type=int, default=90, help="spread them over the last DAYS days (default 90)")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for the same data twice")

    def handle(self, *args: Any, **options: Any) -> None:
        count, days = options["orders"], options["days"]
        if count < 1 or days < 1:
            raise CommandError("Give a positive number of orders and of days.")
        if not Product.objects.filter(active=True).exists():
            call_command("seed_demo", stdout=self.stdout)
        products = list(Product.objects.filter(active=True))
        rng = random.Random(options["seed"])  # noqa: S311 - demo data, not secrets
        now = timezone.now()
        span = days * 86_400
        items_total = 0
        for start in range(0, count, BATCH):
            orders, items = [], []
            for _ in range(min(BATCH, count - start)):
                order = Order(
                    id=uuid.UUID(int=rng.getrandbits(128), version=4),
                    email=f"customer{rng.randrange(10_000)}@example.com",
                    created_at=now - timedelta(seconds=rng.randrange(span)),
                    card_last4="4242",
                    total=Decimal("0"),
                )
                for product in rng.sample(products, rng.randint(1, min(3, len(products)))):
                    quantity = rng.randint(1, 4)
                    order.total += product.price * quantity
                    items.append(
                        OrderItem(
                            order=order,
                            product=product,
                            sku=product.sku,
                            name=product.name,
                            quantity=quantity,
                            unit_price=product.price,
                        )
                    )
                orders.append(order)
            with transaction.atomic():
                Order.objects.bulk_create(orders, batch_size=1000)
                OrderItem.objects.bulk_create(items, batch_size=1000)
            items_total += len(items)
            if count > BATCH:
                self.stdout.write(f"  {start + len(orders):,} orders…")
        self.stdout.write(f"Created {count:,} orders with {items_total:,} items over the last {days} days.")

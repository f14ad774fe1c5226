"""Active products whose stock is under a threshold."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet

from orders.models import Product
from reports.kinds import Kind, KindForm, register


class LowStockForm(KindForm):
    threshold = forms.IntegerField(label="Stock under", min_value=1, max_value=1_000_000, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Said with its value (read here, not at import: settings may change under tests).
        shop = settings.LOW_STOCK_THRESHOLD
        self.fields["threshold"].help_text = f"Empty: the shop's threshold, {shop} units."
        self.fields["threshold"].widget.attrs["placeholder"] = str(shop)

    def clean_threshold(self) -> int:
        # Stored explicitly, so that "empty" and the same number are one identical request.
        value = self.cleaned_data.get("threshold")
        return settings.LOW_STOCK_THRESHOLD if value is None else value


def query(parameters: dict[str, Any]) -> QuerySet:
    return (
        Product.objects.filter(active=True, stock__lt=parameters["threshold"])
        .order_by("stock", "sku")
        .values_list("sku", "name", "stock", "price")
    )


register(
    Kind(
        name="low_stock",
        title="Low stock",
        description="Active products with fewer units in stock than the threshold.",
        form=LowStockForm,
        columns=["sku", "product", "stock", "price"],
        query=query,
        order=30,
    )
)

"""What a report kind is: a parameters form and a query whose rows become the CSV."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone


class KindForm(forms.Form):
    """The parameters of a kind. `parameters()` is what the report stores: JSON values,
    the same for the same request (so identical requests can be recognised)."""

    def parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if isinstance(value, (dt.date, dt.datetime)):
                value = value.isoformat()
            elif isinstance(value, Decimal):
                value = str(value)
            values[name] = value
        return values


def date_presets(today: dt.date) -> list[tuple[str, dt.date, dt.date]]:
    """The ranges a date form offers with one click: (label, first day, last day)."""
    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - dt.timedelta(days=1)
    return [
        ("Last 7 days", today - dt.timedelta(days=6), today),
        ("Last month", last_month_end.replace(day=1), last_month_end),
        ("This year", today.replace(month=1, day=1), today),
    ]


class DateRangeForm(KindForm):
    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An unbound form starts on the last 7 days (today in the site's time zone).
        today = timezone.localdate()
        _, start, end = date_presets(today)[0]
        self.fields["start"].initial = start
        self.fields["end"].initial = end
        self.presets = [(label, first.isoformat(), last.isoformat()) for label, first, last in date_presets(today)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError("The end date is before the start date.", code="end_before_start")
            limit = settings.BUZZER_REPORT_MAX_DAYS
            if (end - start).days + 1 > limit:
                raise forms.ValidationError(
                    "The range may cover at most %(limit)d days.", code="range_too_long", params={"limit": limit}
                )
        return cleaned


def day_bounds(parameters: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, day after end 00:00) in the site's time zone, for a date range."""
    zone = timezone.get_current_timezone()
    start = dt.date.fromisoformat(parameters["start"])
    end = dt.date.fromisoformat(parameters["end"]) + dt.timedelta(days=1)
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=zone),
        dt.datetime.combine(end, dt.time.min, tzinfo=zone),
    )


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    description: str
    form: type[KindForm]
    columns: Sequence[str]
    # A `values_list` queryset, ordered; its tuples are written as they come, with no
    # per-row Python on the hot path (the benchmark holds it to a plain csv loop).
    query: Callable[[dict[str, Any]], QuerySet]
    # Optional, per chunk of rows: for values the database cannot give in their final
    # form (SQLite computes decimal arithmetic in floating point).
    convert: Callable[[list[tuple[Any, ...]]], list[Sequence[Any]]] | None = None
    order: int = 100

    def filename(self, parameters: dict[str, Any]) -> str:
        if "start" in parameters and "end" in parameters:
            return f"{self.name}-{parameters['start']}-to-{parameters['end']}.csv"
        return f"{self.name}-{timezone.localdate().isoformat()}.csv"

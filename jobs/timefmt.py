"""One way to show time in the console: moments as "2026-11-29 17:56:05" in the site's
time zone (milliseconds where a job's own timings are shown: a job runs for a few of
them), durations as "8.2 ms" / "1.25 s" / "2 min 5 s", and relative times ("3 minutes
ago") with the moment itself on hover. Every helper returns escaped HTML or plain text,
never a value that needs the template's localisation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

NO_VALUE = "–"


def absolute(value: datetime, ms: bool = False) -> str:
    """The moment in the site's time zone, to the second (or the millisecond)."""
    local = timezone.localtime(value)
    text = f"{local:%Y-%m-%d %H:%M:%S}"
    if ms:
        text += f".{local.microsecond // 1000:03d}"
    return f"{text} {local:%Z}"


def moment(value: datetime | None, ms: bool = False) -> SafeString | str:
    """The moment, with how long ago it was on hover."""
    if value is None:
        return NO_VALUE
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), relative_text(value), absolute(value, ms)
    )


def ago(value: datetime | None, now: datetime | None = None) -> SafeString | str:
    """How long ago ("3 minutes ago", "in 5 minutes"), the moment itself on hover."""
    if value is None:
        return NO_VALUE
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), absolute(value), relative_text(value, now)
    )


def relative_text(value: datetime, now: datetime | None = None) -> str:
    seconds = ((now or timezone.now()) - value).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    text = _largest_unit(abs(seconds))
    return f"{text} ago" if seconds > 0 else f"in {text}"


def _largest_unit(seconds: float) -> str:
    whole = int(seconds)
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if whole >= size:
            count = whole // size
            return f"{count}\xa0{unit}{'' if count == 1 else 's'}"
    return f"{whole}\xa0second{'' if whole == 1 else 's'}"


def duration(seconds: float | None) -> str:
    """8.2 ms · 312 ms · 1.25 s · 42.0 s · 2 min 5 s · 3 h 4 min."""
    if seconds is None:
        return NO_VALUE
    if seconds < 0:
        seconds = 0.0
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}\xa0ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}\xa0ms"
    if seconds < 10:
        return f"{seconds:.2f}\xa0s"
    if seconds < 60:
        return f"{seconds:.1f}\xa0s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}\xa0min {rest}\xa0s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}\xa0h {minutes}\xa0min"


def between(start: datetime | None, end: datetime | None) -> str:
    """The duration from one moment to another ("–" when either is unknown)."""
    if start is None or end is None:
        return NO_VALUE
    return duration((end - start).total_seconds())


def as_text(value: Any) -> str:
    """A moment found in a plain value (a table of rows), else the value as text."""
    return absolute(value) if isinstance(value, datetime) else str(value)

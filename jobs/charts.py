"""Chart geometry for the queue dashboard, from QueueSample rows.

Only numbers are computed here; the template draws the SVG, so every name in it goes
through Django's autoescaping. Samples are grouped by minute in the database (a day of
5-second samples is ~17,000 rows a queue), then into the chart's buckets here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from jobs.models import QueueSample

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 22
PALETTE = ("#2f6fdf", "#e0812c", "#2ca05a", "#c93f3f", "#8757c5", "#8c6d31", "#d36fb2", "#5f6b73")

# (label, span, bucket length)
RANGES = (
    ("last hour", timedelta(hours=1), timedelta(minutes=1)),
    ("last day", timedelta(days=1), timedelta(minutes=15)),
)


@dataclass
class Series:
    name: str
    color: str
    segments: list[str] = field(default_factory=list)  # SVG polyline points, one per unbroken run
    dots: list[tuple[str, str]] = field(default_factory=list)  # lone points (sparse data), drawn as circles
    last: float | None = None
    current: float | None = None  # the value now, as the dashboard's table shows it (depth)
    unit: str = ""

    @property
    def legend(self) -> str:
        """The series' name and the number its legend shows: the current value where the
        table has it (the depth now), else the latest bucket's."""
        if self.current is not None:
            return f"{self.name}: {_format_number(self.current)} now"
        if self.last is not None:
            return f"{self.name}: {_format_number(self.last)}{self.unit} in the latest bucket"
        return self.name


@dataclass
class Gridline:
    y: str  # formatted here: a localized number in an SVG attribute would break it
    label: str


@dataclass
class Chart:
    title: str
    range_label: str
    series: list[Series]
    gridlines: list[Gridline]
    start_label: str
    end_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = HEIGHT - BOTTOM
    label_y: int = HEIGHT - 6
    center_x: int = WIDTH // 2
    label_x: int = LEFT - 4

    @property
    def empty(self) -> bool:
        return not any(s.segments or s.dots for s in self.series)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 < value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _format_number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _geometry(
    title: str, range_label: str, values: dict[str, list[float | None]], start: datetime, end: datetime
) -> Chart:
    buckets = max((len(v) for v in values.values()), default=1)
    top = _nice_ceiling(max((x for v in values.values() for x in v if x is not None), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    series = []
    for index, (name, points) in enumerate(sorted(values.items())):
        line = Series(name=name, color=PALETTE[index % len(PALETTE)])
        run: list[str] = []
        for i, value in enumerate([*points, None]):
            if value is None:
                if len(run) > 1:
                    line.segments.append(" ".join(run))
                elif run:  # a lone point (a sample now and then): a dot big enough to see
                    x_text, _, y_text = run[0].partition(",")
                    line.dots.append((x_text, y_text))
                run = []
                continue
            x = LEFT + (i + 0.5) / buckets * plot_w
            y = TOP + plot_h * (1 - value / top)
            run.append(f"{x:.1f},{y:.1f}")
            line.last = value
        series.append(line)
    gridlines = [Gridline(y=f"{TOP + plot_h * (1 - f):.1f}", label=_format_number(top * f)) for f in (0.0, 0.5, 1.0)]
    local_start, local_end = timezone.localtime(start), timezone.localtime(end)
    fmt = "%H:%M" if end - start <= timedelta(hours=1) else "%a %H:%M"
    return Chart(title, range_label, series, gridlines, local_start.strftime(fmt), local_end.strftime(fmt))


def build_charts(queues: list[str], now: datetime | None = None) -> list[Chart]:
    """Depth and throughput per queue, over the last hour and the last day."""
    now = now or timezone.now()
    charts: list[Chart] = []
    for range_label, span, bucket in RANGES:
        start = now - span
        count = int(span / bucket)
        depth: dict[str, list[float | None]] = {q: [None] * count for q in queues}
        processed: dict[str, list[float | None]] = {q: [None] * count for q in queues}
        minutes = bucket.total_seconds() / 60
        rows = (
            QueueSample.objects.filter(at__gt=start, at__lte=now, queue_name__in=queues)
            .annotate(minute=TruncMinute("at"))
            .order_by()
            .values("queue_name", "minute")
            .annotate(depth=Max("depth"), processed=Sum("processed"))
        )
        sums: dict[tuple[str, int], float] = defaultdict(float)
        for row in rows:
            index = min(count - 1, max(0, int((row["minute"] - start) / bucket)))
            name = row["queue_name"]
            depth[name][index] = max(depth[name][index] or 0, row["depth"])
            sums[(name, index)] += row["processed"] or 0
        for (name, index), total in sums.items():
            processed[name][index] = total / minutes
        charts.append(_geometry("Depth (max per bucket)", range_label, depth, start, now))
        throughput = _geometry("Throughput (jobs per minute)", range_label, processed, start, now)
        for series in throughput.series:
            series.unit = "/min"
        charts.append(throughput)
    return charts


def with_current_depths(charts: list[Chart], depths: dict[str, int]) -> list[Chart]:
    """Label the depth charts' legends with each queue's depth now, the number the
    dashboard's queue table shows (the chart's last bucket is a maximum over a minute or
    a quarter of an hour, which may well differ)."""
    for chart in charts:
        if chart.title.startswith("Depth"):
            for series in chart.series:
                series.current = depths.get(series.name)
    return charts

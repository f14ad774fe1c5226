"""/metrics in Prometheus' text format, built per request from the same snapshot as the
dashboard: a collector over figures already read, in a registry of its own (the global
registry would also export whatever else the process registered, and keep it).

Run time and queue wait are histograms (`_bucket`/`_sum`/`_count` per actor and queue),
counted in Redis since the beginning by every worker: Prometheus sums them across
workers and takes quantiles with histogram_quantile(). The dashboard's last-hour p50/p95
stay on the dashboard (quantiles computed here could not be aggregated)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from jobs import monitoring, stats


@dataclass
class Figures:
    snapshot: monitoring.Snapshot
    totals: dict[tuple[str, str], int]
    open_alerts: int
    histograms: dict[tuple[str, str, str], stats.Histogram]


def read_figures() -> Figures:
    """Read everything /metrics exports (raises redis.RedisError when Redis is down)."""
    from jobs.alerts import open_alerts

    client, namespace = monitoring.redis_connection()
    return Figures(
        snapshot=monitoring.snapshot(client, namespace),
        totals=stats.totals(client, namespace),
        open_alerts=len(open_alerts()),
        histograms=stats.histograms(client, namespace),
    )


HISTOGRAMS = {
    "run": (
        "buzzer_actor_run_time_seconds",
        "Run time of finished job attempts by actor and queue (since counting began).",
    ),
    "wait": (
        "buzzer_actor_queue_wait_seconds",
        "Time job attempts waited in their queue, from the message being ready (sent, or due "
        "after a delay or backoff) to the start, by actor and queue (since counting began).",
    ),
}


class BuzzerCollector(Collector):
    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        snap = self.figures.snapshot
        per_queue = {
            "buzzer_queue_depth": ("Messages waiting in the queue.", lambda q: q.depth),
            "buzzer_queue_oldest_age_seconds": (
                "How long the next message of the queue has waited (0 when empty).",
                lambda q: q.oldest_age or 0.0,
            ),
            "buzzer_queue_in_flight": ("Messages fetched by workers and not yet acknowledged.", lambda q: q.in_flight),
            "buzzer_queue_delayed": ("Messages waiting for their delay (retries in backoff).", lambda q: q.delayed),
            "buzzer_queue_dead_letters": ("Messages in Redis' dead-letter set.", lambda q: q.dead_letters),
            "buzzer_queue_dead_jobs": ("Jobs in the dead-letter queue (database).", lambda q: q.dead_jobs),
        }
        for name, (help_text, value) in per_queue.items():
            family = GaugeMetricFamily(name, help_text, labels=["queue"])
            for queue in snap.queues:
                family.add_metric([queue.name], value(queue))
            yield family

        yield GaugeMetricFamily("buzzer_workers_alive", "Worker processes beating.", value=snap.workers_alive)
        yield GaugeMetricFamily(
            "buzzer_scheduler_alive", "1 when the scheduler beat recently.", value=int(snap.scheduler_alive)
        )
        yield GaugeMetricFamily("buzzer_alerts_open", "Open alerts.", value=self.figures.open_alerts)

        finished = CounterMetricFamily(
            "buzzer_jobs_finished", "Finished job attempts by actor and outcome.", labels=["actor", "status"]
        )
        for (actor_name, status), count in sorted(self.figures.totals.items()):
            finished.add_metric([actor_name, status], count)
        yield finished

        throughput = GaugeMetricFamily(
            "buzzer_actor_throughput_per_minute", "Finished attempts per minute, last hour.", labels=["actor"]
        )
        failure = GaugeMetricFamily(
            "buzzer_actor_failure_ratio", "Failed attempts (retrying or dead) / all, last hour.", labels=["actor"]
        )
        for actor in snap.actors:
            throughput.add_metric([actor.actor_name], actor.throughput)
            failure.add_metric([actor.actor_name], actor.failure_rate)
        yield throughput
        yield failure
        yield from self.histograms()

    def histograms(self) -> Iterator[Metric]:
        for kind, (name, help_text) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, help_text, labels=["actor", "queue"])
            for (entry_kind, actor_name, queue_name), histogram in sorted(self.figures.histograms.items()):
                if entry_kind != kind:
                    continue
                buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
                buckets.append(("+Inf", histogram.count))
                family.add_metric([actor_name, queue_name], buckets, sum_value=histogram.sum)
            yield family


def render(figures: Figures) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BuzzerCollector(figures))
    for collector in extra_collectors():
        registry.register(collector)
    return generate_latest(registry)


# --- Collectors of other apps (BUZZER_METRICS_COLLECTORS) -------------------------------
# Apps that jobs must not import (the rate limits, say) add their series here: the setting
# lists Collector classes by dotted path, each instantiated for one scrape.


def extra_collectors() -> list[Collector]:
    from django.conf import settings
    from django.utils.module_loading import import_string

    return [import_string(path)() for path in getattr(settings, "BUZZER_METRICS_COLLECTORS", [])]


# --- end of the collectors of other apps -------------------------------------------------

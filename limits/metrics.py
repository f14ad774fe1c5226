"""buzzer_rate_limited_total for /metrics (listed in BUZZER_METRICS_COLLECTORS)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from limits import services

logger = logging.getLogger(__name__)


class RateLimitCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "buzzer_rate_limited", "Requests refused with 429 by a rate limit, by limit.", labels=["scope"]
        )
        try:
            totals = services.limited_totals()
        except (redis.RedisError, OSError) as exc:
            logger.warning("Rate-limit counts unavailable: %s", exc)
            totals = {}
        for scope, count in sorted(totals.items()):
            family.add_metric([scope], count)
        yield family

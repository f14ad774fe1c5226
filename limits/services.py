"""Rate limits: fixed windows counted in Redis by django-ratelimit's core.

Each limit has a scope (`login_ip`, `api_orders`, …) whose rate comes from
settings.BUZZER_RATELIMITS ("5/15m": 5 per 15 minutes; empty: no limit). The counters live
in the Django cache `ratelimit`, a Redis cache on REDIS_URL (the suite's own database in
tests). A Redis that does not answer never refuses a request: the limits are skipped (fail
open) and the failure is logged, then Redis is left alone for
BUZZER_RATELIMIT_BACKOFF_SECONDS so that no request waits on it again meanwhile.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from django_ratelimit import ALL
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key, _split_rate, get_usage

logger = logging.getLogger(__name__)

CACHE = "ratelimit"
SCOPES = ("login_ip", "login_username", "api_orders", "checkout_session", "checkout_ip")
# The key a request is counted under: django-ratelimit's "ip" or "post:<field>", or a
# function (group, request) -> str.
Key = str | Callable[[str, HttpRequest], str]

# After Redis failed, the limits are skipped until this time.monotonic().
_redis_refused_until = 0.0


@dataclass(frozen=True)
class Limited:
    """A request over its limit: which limit, and how long until its window ends."""

    scope: str
    retry_after: int


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind a proxy the last address in the header
    named by BUZZER_RATELIMIT_IP_HEADER (the one the nearest proxy wrote, which the client
    cannot forge). django-ratelimit reads it through RATELIMIT_IP_META_KEY."""
    header = settings.BUZZER_RATELIMIT_IP_HEADER
    if header:
        forwarded = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        candidate = forwarded.split(",")[-1].strip()
        if _is_ip(candidate):
            return candidate
    address = request.META.get("REMOTE_ADDR", "")
    return address if _is_ip(address) else "0.0.0.0"  # noqa: S104 - a bucket for requests without an address


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def value_key(value: str) -> Callable[[str, HttpRequest], str]:
    """A key that is this value (an API key's id, a session, a username)."""
    return lambda group, request: value


def hit(request: HttpRequest, scope: str, key: Key) -> Limited | None:
    """Count this request against `scope`; Limited when it is over the limit."""
    usage = _usage(request, scope, key, increment=True)
    if usage is None or usage["count"] <= usage["limit"]:
        return None
    return _limited(request, scope, usage)


def blocked(request: HttpRequest, scope: str, key: Key) -> Limited | None:
    """Limited when `scope` has already counted its limit (of failures) in this window;
    counts nothing."""
    usage = _usage(request, scope, key, increment=False)
    if usage is None or usage["count"] < usage["limit"]:
        return None
    return _limited(request, scope, usage)


def record_failure(request: HttpRequest, scope: str, key: Key) -> None:
    """Count one failure (a failed log-in) against `scope`."""
    _usage(request, scope, key, increment=True)


def _usage(request: HttpRequest, scope: str, key: Key, *, increment: bool) -> dict[str, Any] | None:
    global _redis_refused_until
    rate = settings.BUZZER_RATELIMITS.get(scope)
    if not settings.BUZZER_RATELIMIT_ENABLED or not rate or time.monotonic() < _redis_refused_until:
        return None
    try:
        if increment and callable(key) and isinstance(caches[CACHE], RedisCache):
            return _count(request, f"buzzer.{scope}", key, rate)
        return get_usage(request, group=f"buzzer.{scope}", key=key, rate=rate, increment=increment)
    except (redis.RedisError, OSError) as exc:
        _redis_refused_until = time.monotonic() + settings.BUZZER_RATELIMIT_BACKOFF_SECONDS
        logger.warning(
            "Rate limits are not enforced for %.0f s: Redis does not answer (%s: %s)",
            settings.BUZZER_RATELIMIT_BACKOFF_SECONDS,
            type(exc).__name__,
            exc,
        )
        return None


# INCR, and the window's expiry on its first count: what django-ratelimit's ADD, then
# EXISTS + INCR through Django's cache do in three round trips, in one, atomically.
_INCREMENT = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
_scripts: dict[int, Any] = {}


def _count(request: HttpRequest, group: str, key: Callable[[str, HttpRequest], str], rate: str) -> dict[str, Any]:
    """get_usage(increment=True) for a key function, in one round trip: the same fixed
    window and the same cache key (so `blocked` reads what this counts)."""
    limit, period = _split_rate(rate)
    value = key(group, request)
    window = _get_window(value, period)
    cache = caches[CACHE]
    cache_key = cache.make_and_validate_key(_make_cache_key(group, window, rate, value, ALL))
    pool = cache._cache._get_connection_pool(True)
    increment = _scripts.get(id(pool))
    if increment is None:  # Django's cache builds a client per call; one per pool is enough
        _scripts.clear()
        increment = _scripts[id(pool)] = redis.Redis(connection_pool=pool).register_script(_INCREMENT)
    count = int(increment(keys=[cache_key], args=[period + EXPIRATION_FUDGE]))
    return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": window - int(time.time())}


def _limited(request: HttpRequest, scope: str, usage: dict[str, Any]) -> Limited:
    limited = Limited(scope=scope, retry_after=max(1, int(usage["time_left"])))
    logger.info("Rate limited (%s): %s %s for %d s", scope, request.method, request.path, limited.retry_after)
    count_limited(scope)
    return limited


# --- The limits the views apply ----------------------------------------------------------


def login_blocked(request: HttpRequest, username: str) -> Limited | None:
    """Limited when this username, or this address, failed to log in too often lately."""
    name = _username(username)
    limited = blocked(request, "login_username", value_key(name)) if name else None
    return limited or blocked(request, "login_ip", "ip")


def record_login_failure(request: HttpRequest, username: str) -> None:
    name = _username(username)
    if name:
        record_failure(request, "login_username", value_key(name))
    record_failure(request, "login_ip", "ip")


def _username(username: str) -> str:
    # "Ada" and "ada " are the same target for someone guessing passwords.
    return username.strip().lower()


def checkout_limited(request: HttpRequest) -> Limited | None:
    """Count a checkout submission, per browser session (when it has one) and per address."""
    session_key = request.session.session_key
    limited = hit(request, "checkout_session", value_key(session_key)) if session_key else None
    return limited or hit(request, "checkout_ip", "ip")


def api_orders_limited(request: HttpRequest, api_key_id: int) -> Limited | None:
    """Count an order placed through the API with this key."""
    return hit(request, "api_orders", value_key(f"api-key:{api_key_id}"))


# --- The counter that /metrics exports (buzzer_rate_limited_total) ------------------------


def _counter_key(scope: str) -> str:
    return f"limited:{scope}"


def count_limited(scope: str) -> None:
    """One more request refused by `scope`, in Redis so that every process adds up."""
    cache = caches[CACHE]
    try:
        cache.add(_counter_key(scope), 0, timeout=None)
        cache.incr(_counter_key(scope))
    except (redis.RedisError, OSError, ValueError) as exc:  # ValueError: evicted between add and incr
        logger.warning("Could not count a rate-limited request (%s): %s", scope, exc)


def limited_totals() -> dict[str, int]:
    """Requests refused so far, by scope (0 for a scope that never refused one)."""
    found = caches[CACHE].get_many([_counter_key(scope) for scope in SCOPES])
    return {scope: int(found.get(_counter_key(scope), 0)) for scope in SCOPES}
